//! Seeded synthetic inputs for benchmarks: a CI/application log corpus of
//! ~200-byte lines and a large rule pack. Deterministic: the same seed gives
//! the same bytes on every machine, so numbers compare across runs.
//!
//! Regenerate standalone with `cargo bench --bench categorize -- --list` (the
//! bench builds them at start); nothing is written to disk.
//!
//! Each bench uses part of this module.
#![allow(dead_code)]

/// splitmix64: tiny, seedable, good enough to shuffle words.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SERVICES: &[&str] = &[
    "checkout",
    "payments",
    "search",
    "auth",
    "inventory",
    "gateway",
    "billing",
    "reports",
    "frontend",
    "worker",
];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
const STEPS: &[&str] = &[
    "Run npm ci",
    "Run cargo test --locked",
    "Build image",
    "Push image to registry",
    "helm upgrade --install",
    "Run migrations",
    "Run unit tests",
    "Lint",
    "Deploy to staging",
    "Smoke test",
];
const WORDS: &[&str] = &[
    "request",
    "handled",
    "user",
    "session",
    "cache",
    "hit",
    "miss",
    "order",
    "queue",
    "message",
    "consumer",
    "batch",
    "commit",
    "latency",
    "upstream",
    "retry",
    "pool",
    "connection",
    "worker",
    "job",
    "artifact",
    "layer",
    "digest",
    "manifest",
    "release",
    "revision",
    "replica",
    "rollout",
    "probe",
    "endpoint",
    "token",
    "config",
    "feature",
    "flag",
    "metric",
    "span",
    "trace",
    "shard",
    "partition",
    "offset",
];

/// Real failure wording from the fixtures, mixed into the corpus.
const FAILURES: &[&str] = &[
    "Memory cgroup out of memory: Kill process 1012 (heapster) score 1035 or sacrifice child",
    "dial tcp 10.96.0.1:443: connect: network is unreachable",
    "alembic.util.exc.CommandError: Target database is not up to date.",
    "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
    "ERROR: Could not find a version that satisfies the requirement left-pad==9.9 (from versions: none)",
    "npm error code ERESOLVE npm error ERESOLVE unable to resolve dependency tree",
    "x509: certificate has expired or is not yet valid: current time is after 2025-11-28T23:59:59Z",
    "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
    "Back-off restarting failed container checkout in pod checkout-7d9f8b6c5-x2x9q",
    "Error: INSTALLATION FAILED: validation: chart.metadata.type must be application or library",
    "INFO: task docker:20744 blocked for more than 120 seconds.",
];

/// `lines` log lines of about 200 bytes; one in `failure_every` carries real failure text.
pub fn ci_corpus(seed: u64, lines: usize, failure_every: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..lines)
        .map(|i| {
            let mut line = format!(
                "2025-11-29T07:{:02}:{:02}.{:03}Z {} {} [{}] step=\"{}\" ",
                rng.below(60),
                rng.below(60),
                rng.below(1000),
                rng.pick(LEVELS),
                rng.pick(SERVICES),
                rng.next() % 100_000,
                rng.pick(STEPS),
            );
            if failure_every > 0 && i % failure_every == 0 {
                line.push_str(rng.pick(FAILURES));
            }
            while line.len() < 200 {
                line.push_str(rng.pick(WORDS));
                line.push(if rng.below(4) == 0 { '=' } else { ' ' });
                if rng.below(5) == 0 {
                    line.push_str(&format!("{} ", rng.next() % 10_000));
                }
            }
            line
        })
        .collect()
}

const VOCAB: &[&str] = &[
    "failed",
    "error",
    "unable",
    "cannot",
    "refused",
    "denied",
    "missing",
    "invalid",
    "exceeded",
    "timeout",
    "mismatch",
    "corrupt",
    "unreachable",
    "rejected",
    "aborted",
    "panic",
    "fatal",
    "broken",
    "expired",
    "conflict",
    "quota",
    "limit",
    "lock",
    "schema",
    "migration",
    "secret",
    "certificate",
    "registry",
    "image",
    "volume",
    "mount",
    "socket",
    "handshake",
    "resolver",
    "gateway",
    "driver",
    "plugin",
    "module",
    "package",
    "checksum",
];
const TYPES: &[&str] = &[
    "infrastructure",
    "configuration",
    "dependency",
    "resource",
    "application",
    "data",
    "security",
    "network",
    "timing",
    "human_error",
];

/// A pack of `rules` synthetic typed rules (three literal phrases each) in the
/// rule-pack YAML format, for measuring how matching scales.
pub fn big_pack(seed: u64, rules: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut yaml = String::from("version: 1\nrules:\n");
    for i in 0..rules {
        let phrases: Vec<String> = (0..3)
            .map(|_| {
                format!(
                    "{} {} {}{}",
                    rng.pick(VOCAB),
                    rng.pick(WORDS),
                    rng.pick(VOCAB),
                    i % 97
                )
            })
            .collect();
        yaml.push_str(&format!(
            "  - {{id: synthetic.{i}, type: {}, keywords: [\"{}\", \"{}\", \"{}\"], weight: {}}}\n",
            rng.pick(TYPES),
            phrases[0],
            phrases[1],
            phrases[2],
            1 + rng.below(3)
        ));
    }
    yaml
}

/// One raw log record as a shipper would write it to `medic.logs.raw`.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// `service/environment` for plain-text lines; shippers' JSON has none.
    pub key: Option<String>,
    /// The record value.
    pub value: Vec<u8>,
    /// Whether the line carries failure text.
    pub failure: bool,
    /// Byte offset of the 14-character `@timestamp` (`1764400000.000`) in a
    /// JSON record, so a paced producer can stamp the send time in place.
    pub timestamp_at: Option<usize>,
}

const ENVIRONMENTS: &[&str] = &["production", "staging", "development"];

/// Service and environment of deployment `k`: `checkout-0/production`, ...
pub fn deployment(k: usize) -> (String, &'static str) {
    (
        format!("{}-{}", SERVICES[k % SERVICES.len()], k / SERVICES.len()),
        ENVIRONMENTS[(k / SERVICES.len()) % ENVIRONMENTS.len()],
    )
}

/// `records` raw log records of `deployments` deployments: ~200-byte CI and
/// application lines, a `failure_share` of them carrying one of the real
/// failure lines in `failures`, a `json_share` of them wrapped in Fluent
/// Bit's JSON (Kubernetes metadata naming the deployment) and the rest plain
/// text keyed by `service/environment`.
pub fn raw_logs(
    seed: u64,
    records: usize,
    deployments: usize,
    failure_share: f64,
    json_share: f64,
    failures: &[String],
) -> Vec<RawRecord> {
    let mut rng = Rng::new(seed);
    let unit = |rng: &mut Rng| (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    (0..records)
        .map(|_| {
            let (service, environment) = deployment(rng.below(deployments.max(1)));
            let failure = !failures.is_empty() && unit(&mut rng) < failure_share;
            let json = unit(&mut rng) < json_share;
            let (minute, second, milli) = (rng.below(60), rng.below(60), rng.below(1000));
            let level = if failure { "ERROR" } else { rng.pick(LEVELS) };
            let number = rng.next() % 100_000;
            // Healthy lines skip the "Lint" step, as when the results in
            // benches/README.md were taken: a bare "lint" opened a failure
            // then (application.lint-format now wants failure wording).
            let step = loop {
                let step = rng.pick(STEPS);
                if step != "Lint" {
                    break step;
                }
            };
            let mut line = format!(
                "2025-11-29T07:{minute:02}:{second:02}.{milli:03}Z {level} {service} [{number}] step=\"{step}\" "
            );
            if failure {
                let text = &failures[rng.below(failures.len())];
                line.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
                line.push(' ');
            }
            while line.len() < 200 {
                line.push_str(rng.pick(WORDS));
                line.push(if rng.below(4) == 0 { '=' } else { ' ' });
                if rng.below(5) == 0 {
                    line.push_str(&format!("{} ", rng.next() % 10_000));
                }
            }
            if json {
                let head = r#"{"@timestamp":"#;
                let value = format!(
                    r#"{head}1764400000.000,"log":{},"stream":"{}","kubernetes":{{"pod_name":"{service}-7d9f8b6c5-x2x9q","namespace_name":"{environment}","container_name":"{service}","host":"node-{}"}}}}"#,
                    serde_json::Value::String(format!("{line}\n")),
                    if failure { "stderr" } else { "stdout" },
                    rng.below(8),
                );
                RawRecord {
                    key: None,
                    value: value.into_bytes(),
                    failure,
                    timestamp_at: Some(head.len()),
                }
            } else {
                RawRecord {
                    key: Some(format!("{service}/{environment}")),
                    value: line.into_bytes(),
                    failure,
                    timestamp_at: None,
                }
            }
        })
        .collect()
}
