//! The `medic` binary as an operator uses it.

mod common;

use common::*;
use medic::domain::*;
use medic::stages::StageName;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(90);

fn medic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medic"))
}

#[test]
fn a_bad_config_file_stops_medic_with_file_line_and_field() {
    let dir = std::env::temp_dir().join(unique_prefix("cfg"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("medic.yaml");
    std::fs::write(
        &file,
        "kafka:\n  topic_prefix: medic\ndelivery:\n  mode: sometimes\n",
    )
    .expect("write");
    let out = medic()
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4: delivery.mode: unknown variant `sometimes`",
            file.display()
        )),
        "{stderr}"
    );

    let ok = medic().arg("check-config").output().expect("runs");
    assert!(ok.status.success(), "defaults are valid");

    // Executor routes are checked at start too.
    for (yaml, error) in [
        (
            "orchestrate:\n  executors:\n    routes: {restart_service: kubernetes}\n",
            "orchestrate.executors.routes.restart_service: executor 'kubernetes' is not configured (configured: dry_run)",
        ),
        (
            "orchestrate:\n  executors:\n    routes: {restart_service: github}\n    github: {token: \"${env:MEDIC_TEST_GH_TOKEN}\"}\n",
            "orchestrate.executors.routes: executor github cannot carry out restart_service",
        ),
        (
            "orchestrate:\n  executors:\n    routes: {reboot_everything: dry_run}\n",
            "orchestrate.executors.routes: 'reboot_everything' is not an action medic knows",
        ),
        (
            "orchestrate:\n  executors:\n    github: {token: ghp_written_in_the_file}\n",
            "orchestrate.executors.github.token: secrets must not be written in the config file",
        ),
    ] {
        std::fs::write(&file, yaml).expect("write");
        let out = medic()
            .arg("check-config")
            .arg("--config")
            .arg(&file)
            .env("MEDIC_TEST_GH_TOKEN", "t0ken")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}");
        assert!(stderr.contains(error), "{yaml}: {stderr}");
    }
}

/// With dry run off, `check-config` (and `medic run`) refuses a policy that
/// would simulate anything without saying so: it names each action no
/// executor carries out, with every strategy and node that reaches it, and
/// runs each step's parameters past the executor it is routed to.
#[test]
fn check_config_with_dry_run_off_names_what_would_not_really_run() {
    let dir = std::env::temp_dir().join(unique_prefix("routing"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("medic.yaml");
    let check = |yaml: &str| {
        std::fs::write(&file, yaml).expect("write");
        let out = medic()
            .arg("check-config")
            .arg("--config")
            .arg(&file)
            .env("MEDIC_TEST_KUBE_TOKEN", "t0ken")
            .output()
            .expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, stderr) = check("orchestrate:\n  dry_run: false\n");
    assert!(!ok);
    for unrouted in [
        "orchestrate.dry_run is false, but the recovery policy cannot run as configured",
        "rollback_deployment has no executor (reached by ",
        "application_recovery.rollback, ",
        "configuration_fix.revert",
        "database_recovery.rollback_migration",
        "run_health_check has no executor (reached by",
        "network_recovery.reachable",
        "escalate has no executor",
        "disable_readonly_mode has no executor (reached by database_recovery.protect.cleanup)",
    ] {
        assert!(stderr.contains(unrouted), "{unrouted}: {stderr}");
    }

    // Everything but the rollback simulated on purpose; the rollback goes
    // to Kubernetes, which accepts the trees' `to_revision: previous`.
    let others: Vec<&str> = medic::stages::decide::policy::ACTIONS
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| *a != "rollback_deployment")
        .collect();
    let routed = format!(
        "orchestrate:\n  dry_run: [{}]\n  executors:\n    routes: {{rollback_deployment: kubernetes}}\n    \
         kubernetes: {{api_server: \"https://127.0.0.1:6443\", token: \"${{env:MEDIC_TEST_KUBE_TOKEN}}\"}}\n",
        others.join(", ")
    );
    let (ok, stdout, stderr) = check(&routed);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("dry_run=[clear_cache, "), "{stdout}");

    // A revision the executor cannot read fails here, not during an incident.
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        medic::stages::decide::policy::DEFAULT_POLICY
            .replace("to_revision: previous", "to_revision: last-good"),
    )
    .expect("write");
    let (ok, _, stderr) = check(&format!(
        "{routed}decide:\n  policy_files: [\"{}\"]\n",
        policy.display()
    ));
    assert!(!ok);
    assert!(
        stderr.contains("strategy application_recovery node rollback: rollback_deployment on the kubernetes executor: to_revision \"last-good\" is neither `previous` nor a revision number"),
        "{stderr}"
    );

    let (ok, _, stderr) =
        check("orchestrate:\n  dry_run: [shift_trafic]\n  executors: {default: dry_run}\n");
    assert!(!ok);
    assert!(
        stderr.contains("orchestrate.dry_run: 'shift_trafic' is not an action medic knows"),
        "{stderr}"
    );
}

/// The shipped example with dry run off routes every action the built-in
/// trees can reach: `check-config` passes on it and reports `dry_run=false`.
/// Outside a pod the Kubernetes section points at an explicit API server
/// instead of the in-cluster service account; nothing else is changed.
#[test]
fn the_production_example_config_passes_check_config_with_dry_run_off() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/medic.production.example.yaml"),
    )
    .expect("example");
    let in_cluster = "kubernetes: {in_cluster: true,";
    assert!(example.contains(in_cluster));
    let outside = example.replace(
        in_cluster,
        "kubernetes: {api_server: \"https://127.0.0.1:6443\", token: \"${env:MEDIC_TEST_KUBE_TOKEN}\",",
    );
    let dir = std::env::temp_dir().join(unique_prefix("production-example"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("medic.yaml");
    std::fs::write(&file, outside).expect("write");
    let out = medic()
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .envs([
            ("MEDIC_TEST_KUBE_TOKEN", "t0ken"),
            ("MEDIC_BROKERS", "127.0.0.1:9092"),
            ("GITHUB_TOKEN", "ghp_example"),
            (
                "MEDIC_SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T000/B000/XXXX",
            ),
            (
                "MEDIC_PAGERDUTY_ROUTING_KEY",
                "R0UT1NGKEY0123456789abcdefABCDEF",
            ),
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("dry_run=false"), "{stdout}");
}
/// `medic run all` on its embedded cluster: prints where the cluster listens,
/// logs JSON with the record's span (deployment key, stage, topic, offset)
/// when asked to, and stops cleanly on SIGTERM.
#[test]
fn run_all_on_the_embedded_cluster_logs_json_and_stops_cleanly_on_sigterm() {
    let mut child = medic()
        .args(["run", "all", "--log-format", "json"])
        .env("RUST_LOG", "info,medic::kafka::runner=debug")
        .env("MEDIC_BRIDGE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let brokers = first
        .strip_prefix("embedded Kafka cluster listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .trim()
        .to_string();
    let stderr = child.stderr.take().expect("stderr");
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    // A record categorize cannot decode: dead-lettered, with a warning.
    let producer: rdkafka::producer::FutureProducer = medic::kafka::ClientSettings::new(brokers)
        .producer(medic::config::DeliveryMode::AtLeastOnce, None)
        .create()
        .expect("producer");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(
        producer.send(
            rdkafka::producer::FutureRecord::to("medic.signals")
                .key("cart/staging")
                .payload(&b"\x00not avro"[..]),
            Duration::from_secs(10),
        ),
    )
    .expect("produced");
    std::thread::sleep(Duration::from_secs(4));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "medic did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    drop(lines);

    let logs: Vec<serde_json::Value> = logs
        .join()
        .expect("stderr")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "stage started"
                && l["fields"]["stage"] == "categorize"),
        "{logs:#?}"
    );
    let dead = logs
        .iter()
        .find(|l| l["fields"]["message"] == "dead-lettering record")
        .unwrap_or_else(|| panic!("{logs:#?}"));
    assert_eq!(dead["level"], "WARN");
    assert_eq!(dead["span"]["name"], "record");
    assert_eq!(dead["span"]["deployment"], "cart/staging");
    assert_eq!(dead["span"]["topic"], "medic.signals");
}

#[test]
fn a_production_recovery_waits_for_medic_approve_and_records_the_approver() {
    let c = embedded("approve");
    c.produce(
        &c.topics.logs_raw,
        Some("checkout/production"),
        b"panic: runtime error: invalid memory address or nil pointer dereference",
    );
    let running = c.start(&StageName::ALL);

    let mut waiting = None;
    assert!(
        wait_until(LONG, || {
            let states: Vec<RecoveryState> = c.read(&c.topics.state, 1, Duration::from_secs(2));
            waiting = states
                .into_iter()
                .find(|s| s.status == RecoveryStatus::AwaitingApproval);
            waiting.is_some()
        }),
        "no recovery waits for approval"
    );
    let recovery = waiting.expect("state").recovery_id;
    let nothing: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, Duration::from_secs(2));
    assert!(nothing.is_empty(), "nothing runs before the approval");

    let out = medic()
        .args([
            "approve",
            &recovery,
            "--by",
            "alice",
            "--comment",
            "checked the dashboards",
        ])
        .args([
            "--brokers",
            &c.settings.brokers,
            "--topic-prefix",
            &c.topics.prefix,
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("approved {recovery} as alice")
    );

    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].outcome, Outcome::Succeeded);
    let audit: Vec<AuditRecord> = c.read(&c.topics.audit, 1, LONG);
    let approved = audit
        .iter()
        .find(|a| a.event == AuditEvent::Approved)
        .expect("approval audited");
    assert_eq!(
        (approved.actor.as_str(), approved.detail.as_str()),
        ("alice", "checked the dashboards")
    );
    let notes: Vec<NotificationRecord> = c.read(&c.topics.notifications, 2, LONG);
    assert!(
        notes
            .iter()
            .any(|n| n.trigger == NotificationTrigger::ApprovalNeeded),
        "people were told"
    );
    drop(running);

    let stats = |extra: &[&str]| {
        let out = medic()
            .args(["stats", "--json", "--brokers", &c.settings.brokers])
            .args(["--topic-prefix", &c.topics.prefix])
            .args(extra)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    // A dry run says nothing about whether the strategy works.
    let honest = stats(&[]);
    assert_eq!(
        (honest["recoveries"].clone(), honest["simulated"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(honest["success_rate"], serde_json::Value::Null, "{honest}");
    let stats = stats(&["--include-simulated"]);
    assert_eq!(stats["recoveries"], 1);
    assert_eq!(stats["manual_interventions"], 1, "alice approved it");
    assert_eq!(stats["success_rate"], 1.0);
    assert_eq!(
        stats["zero_downtime_rate"], 0.0,
        "the recovery rolled back: service was interrupted"
    );
    assert_eq!(stats["failures_prevented"], 1, "no CI run had reported it");
    assert!(stats["mean_time_to_recover_secs"].as_f64().is_some());
    assert!(stats["mean_recovery_duration_secs"].as_f64().is_some());
    assert!(
        stats["people_acted"].as_u64().is_some_and(|n| n >= 1),
        "alice approved: {stats}"
    );
    let recent = medic()
        .args(["stats", "--json", "--brokers", &c.settings.brokers])
        .args(["--topic-prefix", &c.topics.prefix])
        .args(["--include-simulated", "--since", "1h"])
        .output()
        .expect("runs");
    let recent: serde_json::Value = serde_json::from_slice(&recent.stdout).expect("JSON");
    assert_eq!(recent["recoveries"], 1, "it ended within the hour");
    let bad = medic()
        .args(["stats", "--since", "a week"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a window such as 30m, 1h, 24h or 7d")
    );
}

#[test]
fn strategies_list_and_simulate_read_the_cluster() {
    let c = embedded("learned");
    let prefix = c.config.kafka.topic_prefix.clone();
    for (key, failed) in [("checkout/staging", 2), ("search/staging", 1)] {
        let stats = StrategyStats {
            deployment_key: key.into(),
            counts: [(
                "application_recovery/application".to_string(),
                StrategyCount {
                    succeeded: 0,
                    failed,
                },
            )]
            .into(),
            recent_outcomes: vec![],
            updated_at: 1,
        };
        c.produce_avro(&c.topics.decide_stats, key, &stats);
    }
    let out = medic()
        .args(["strategies", "list", "--brokers", &c.settings.brokers])
        .args(["--topic-prefix", &prefix])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("application_recovery"))
        .expect("row");
    assert!(row.contains(" 0.75 ") && row.contains(" 0/3 "), "{row}");
    assert!(
        text.contains("  for application") && text.contains("0/3") && text.contains("0.58"),
        "three failures across two deployments: (0.75 x 10) / 13 = 0.58\n{text}"
    );

    let failure: CategorizedFailure =
        serde_json::from_str(include_str!("../schemas/examples/CategorizedFailure.json"))
            .expect("example");
    let mut app = failure.clone();
    app.failure_type = FailureType::Application;
    c.produce_avro(&c.topics.failures, &failure.deployment_key, &failure);
    c.produce_avro(&c.topics.failures, &app.deployment_key, &app);
    let out = medic()
        .args(["simulate", "--policy", "tests/data/simulate/policy-next"])
        .args(["--brokers", &c.settings.brokers, "--topic-prefix", &prefix])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("2 inputs: 2 failures, 0 matched no rule, 0 unreadable\n"),
        "{text}"
    );
    assert!(
        text.contains("1 of 2 plans would change: 1 another gate, 1 other actions"),
        "{text}"
    );
    // A time range of the topic: both failures began on 2025-11-29.
    let out = medic()
        .args(["simulate", "--policy", "tests/data/simulate/policy-next"])
        .args(["--brokers", &c.settings.brokers, "--topic-prefix", &prefix])
        .args(["--since", "2025-11-30T00:00:00Z"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("0 inputs: 0 failures"), "{text}");
}

/// `medic categorize --input` reads what log shippers already put in Kafka:
/// Fluent Bit's `log`, Vector's `message` with Kubernetes metadata, Filebeat's
/// `@metadata` records and medic's own objects, unknown fields ignored; a
/// record with no text gets an error line, and the others still get results.
#[test]
fn categorize_input_reads_shipper_records_as_ingest_does() {
    let records = [
            r#"{"log":"dial tcp 10.0.0.7:5432: connect: connection refused\n","stream":"stderr","time":"2026-12-04T10:00:00Z","kubernetes":{"pod_name":"checkout-7d9f8b6c5-x2x9q","namespace_name":"production"}}"#,
            r#"{"message":"Error: INSTALLATION FAILED: another operation (install/upgrade/rollback) is in progress","kubernetes":{"pod_namespace":"staging"},"source_type":"kubernetes_logs"}"#,
            r#"{"@timestamp":"2026-12-04T10:00:00Z","@metadata":{"beat":"filebeat"},"message":"java.lang.OutOfMemoryError: Java heap space","host":{"name":"n1"}}"#,
            r#"{"message":"x509: certificate has expired or is not yet valid","environment":"production"}"#,
            r#"{"stream":"stdout","time":"2026-12-04T10:00:00Z"}"#,
    ]
    .join("\n");
    let mut child = medic()
        .args(["categorize", "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(records.as_bytes())
        .expect("writes");
    let out = child.wait_with_output().expect("exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let types: Vec<&str> = rows
        .iter()
        .map(|r| r["failure_type"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        types,
        ["network", "human_error", "resource", "security", "-"]
    );
    assert!(
        rows[4]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no message text")),
        "{}",
        rows[4]
    );
}
