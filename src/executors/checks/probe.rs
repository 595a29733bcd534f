//! An HTTP health probe: `GET` a URL until it has answered well `successes`
//! times in a row (healthy) or badly `failures` times in a row (unhealthy),
//! `interval_ms` apart — Kubernetes' success and failure thresholds.
//!
//! An answer is good when its status is one of `status` (any 2xx when not
//! set), its body contains `body_contains` (when set) and it came within
//! `max_latency_ms` (when set). No answer (refused, reset, timed out) is a
//! bad answer: the service is not serving. The request is built by the HTTP
//! executor's templates, so `{service}` and `{environment}` are escaped for
//! their place in the URL and headers exactly as there, and redirects are
//! never followed.

use crate::executors::http::{HttpActionConfig, HttpConfig, HttpExecutor, HttpMethod};
use crate::executors::outbound;
use crate::executors::step::{StepDone, StepError, StepRequest, StepResult};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One probe's settings.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// `http://` or `https://` URL; slots (`{service}`, `{environment}`, …)
    /// only in the path and query, as for the HTTP executor.
    pub url: String,
    /// Extra headers (name → value template), e.g. `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Statuses that count as healthy; any 2xx when empty.
    #[serde(default)]
    pub status: Vec<u16>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Slowest answer that counts as healthy, in milliseconds.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
    /// Good answers in a row that make the check healthy.
    #[serde(default = "one")]
    pub successes: u32,
    /// Bad answers in a row that make it unhealthy.
    #[serde(default = "three")]
    pub failures: u32,
    /// Between two requests, in milliseconds.
    #[serde(default = "two_seconds")]
    pub interval_ms: u64,
    /// Longest one request may take, in milliseconds.
    #[serde(default = "ten_seconds")]
    pub timeout_ms: u64,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn two_seconds() -> u64 {
    2_000
}
fn ten_seconds() -> u64 {
    10_000
}

impl std::fmt::Debug for ProbeConfig {
    /// Header values may be credentials: only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeConfig")
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("status", &self.status)
            .field("body_contains", &self.body_contains)
            .field("max_latency_ms", &self.max_latency_ms)
            .field("successes", &self.successes)
            .field("failures", &self.failures)
            .field("interval_ms", &self.interval_ms)
            .finish()
    }
}

/// A probe, built and checked.
pub struct Probe {
    name: String,
    http: HttpExecutor,
    config: ProbeConfig,
}

/// What one request showed.
struct Answer {
    good: bool,
    what: String,
}

impl Probe {
    /// Builds the probe called `name` (the health check's name).
    pub fn new(name: &str, config: &ProbeConfig) -> Result<Probe, String> {
        if config.successes == 0 || config.failures == 0 {
            return Err("successes and failures must be at least 1".into());
        }
        if let Some(bad) = config.status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(format!("status {bad} is not an HTTP status"));
        }
        let template = HttpActionConfig {
            method: HttpMethod::Get,
            url: config.url.clone(),
            headers: config.headers.clone(),
            body: None,
            hmac_secret: None,
        };
        let http = HttpExecutor::new(&HttpConfig {
            actions: BTreeMap::from([(name.to_string(), template)]),
        })?;
        Ok(Probe {
            name: name.to_string(),
            http,
            config: config.clone(),
        })
    }

    async fn ask(&self, request: &StepRequest) -> Result<Answer, StepError> {
        let (builder, what) = self.http.prepare(&self.name, request)?;
        let builder = builder.timeout(Duration::from_millis(self.config.timeout_ms));
        let started = Instant::now();
        let answer = outbound::fetch(builder, &what).await;
        let ms = started.elapsed().as_millis();
        let (status, body) = match answer {
            Ok(a) => a,
            // No answer: the service does not serve.
            Err(e) => {
                return Ok(Answer {
                    good: false,
                    what: e.detail,
                })
            }
        };
        let mut what = format!("{what}: HTTP {status} in {ms} ms");
        let status_ok = if self.config.status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.config.status.contains(&status)
        };
        let body_ok = self.config.body_contains.as_ref().is_none_or(|needle| {
            let found = String::from_utf8_lossy(&body).contains(needle.as_str());
            if !found {
                what.push_str(&format!(", body without {needle:?}"));
            }
            found
        });
        let fast = self.config.max_latency_ms.is_none_or(|max| {
            let ok = ms <= u128::from(max);
            if !ok {
                what.push_str(&format!(" (slower than {max} ms)"));
            }
            ok
        });
        Ok(Answer {
            good: status_ok && body_ok && fast,
            what,
        })
    }

    /// Probes until the thresholds decide, within the step's budget.
    pub async fn run(&self, request: &StepRequest) -> StepResult {
        let budget = request.budget();
        let started = Instant::now();
        let interval = Duration::from_millis(self.config.interval_ms);
        let (mut good, mut bad, mut asked) = (0u32, 0u32, 0u32);
        loop {
            let answer = self.ask(request).await?;
            asked += 1;
            if answer.good {
                good += 1;
                bad = 0;
            } else {
                bad += 1;
                good = 0;
            }
            if good >= self.config.successes {
                return Ok(StepDone {
                    detail: format!(
                        "{} healthy: {good} good answer(s) in a row ({})",
                        self.name, answer.what
                    ),
                    http_status: None,
                    observed: None,
                });
            }
            if bad >= self.config.failures {
                return Err(StepError::permanent(format!(
                    "{} unhealthy: {bad} bad answer(s) in a row; last: {}",
                    self.name, answer.what
                )));
            }
            if started.elapsed() + interval > budget {
                return Err(StepError::permanent(format!(
                    "{} inconclusive: {asked} answer(s) in {:.1} s did not reach {} good or {} bad in a row; last: {}",
                    self.name,
                    budget.as_secs_f64(),
                    self.config.successes,
                    self.config.failures,
                    answer.what
                )));
            }
            tokio::time::sleep(interval).await;
        }
    }
}
