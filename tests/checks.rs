//! Health checks against real signals: HTTP probes against a scripted local
//! server, and Prometheus queries against a real Prometheus (Debian's
//! `prometheus`, installed by `.ci/run`) scraping a fixture exporter — on
//! their own, at start (`check-config` refuses a tree's check nobody
//! configured), and in whole recoveries through the orchestrate stage.

mod common;

use common::prometheus::{self, Exposition, Prometheus};
use common::*;
use medic::domain::*;
use medic::executors::checks::{ChecksConfig, ChecksExecutor};
use medic::executors::step::{StepExecutor, StepRequest};
use medic::stages::StageName;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

fn request(service: &str, params: &[(&str, &str)]) -> StepRequest {
    StepRequest {
        idempotency_key: "r-1/3".into(),
        recovery_id: "r-1".into(),
        deployment_key: format!("{service}/staging"),
        service: service.into(),
        environment: "staging".into(),
        action: "run_health_check".into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ci: None,
        context: None,
        timeout: Duration::from_secs(20),
    }
}

fn checks(yaml: &str) -> ChecksExecutor {
    let config: ChecksConfig = serde_yaml_ng::from_str(yaml).expect("checks config");
    ChecksExecutor::new(&config).expect("checks executor")
}

/// An HTTP probe is healthy after `successes` good answers in a row (a bad
/// answer between resets the count), unhealthy after `failures` bad ones; a body
/// without the expected text is a bad answer. Scripted local server.
#[test]
fn http_probes_count_good_and_bad_answers_in_a_row() {
    let good = (200, "{\"status\":\"ok\"}");
    let (url, seen) = common::http::server_answering(vec![
        (503, "starting"),
        good,
        (200, "warming up"),
        good,
        good,
    ]);
    let probe = checks(&format!(
        "health_checks:\n  readiness:\n    http: {{url: \"{url}/ready/{{service}}\", body_contains: '\"status\":\"ok\"', successes: 2, failures: 2, interval_ms: 10}}\n"
    ));
    let done =
        block_on(probe.run(&request("checkout", &[("check", "readiness")]))).expect("healthy");
    assert!(
        done.detail
            .starts_with("readiness healthy: 2 good answer(s) in a row"),
        "{}",
        done.detail
    );
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.len(), 5, "a bad answer resets the good ones");
    assert!(seen
        .iter()
        .all(|(h, _)| h[0] == "GET /hooks/medic/ready/checkout HTTP/1.1"));

    let (url, _) = common::http::server_answering(vec![(200, "ok"), (500, "down"), (500, "down")]);
    let probe = checks(&format!(
        "health_checks:\n  readiness:\n    http: {{url: \"{url}/ready\", status: [200], successes: 3, failures: 2, interval_ms: 10}}\n"
    ));
    let e = block_on(probe.run(&request("checkout", &[("check", "readiness")])))
        .expect_err("unhealthy");
    assert!(!e.retryable, "an unhealthy verdict is not retried");
    assert!(
        e.detail
            .contains("readiness unhealthy: 2 bad answer(s) in a row; last: GET 127.0.0.1:")
            && e.detail.contains("HTTP 500"),
        "{}",
        e.detail
    );

    // Nothing listens: the service is not serving.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let probe = checks(&format!(
        "health_checks:\n  readiness:\n    http: {{url: \"http://127.0.0.1:{port}/ready\", failures: 1, interval_ms: 10}}\n"
    ));
    let e =
        block_on(probe.run(&request("checkout", &[("check", "readiness")]))).expect_err("refused");
    assert!(e.detail.contains("readiness unhealthy"), "{}", e.detail);
}

/// Checks and metrics the trees name must be configured, and a Prometheus
/// check needs a Prometheus server: refused at start, naming the field.
#[test]
fn unknown_checks_and_bad_queries_fail_at_start() {
    let c = checks(
        "prometheus: {url: \"http://127.0.0.1:9\"}\nmetrics:\n  upstream_error_rate: {query: \"x\"}\n",
    );
    let params = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(c
        .check(
            "run_health_check",
            &params(&[("metric", "upstream_error_rate"), ("below", "1")])
        )
        .is_ok());
    let e = c
        .check("run_health_check", &params(&[("check", "readiness")]))
        .expect_err("readiness not configured");
    assert!(e.contains("health check \"readiness\" is not configured under orchestrate.executors.checks.health_checks (configured: none)"), "{e}");
    let e = c
        .check(
            "run_health_check",
            &params(&[("metric", "upstream_error_rate")]),
        )
        .expect_err("no threshold");
    assert!(e.contains("no `below` or `above`"), "{e}");
    let e = c
        .check(
            "run_health_check",
            &params(&[("metric", "replication_lag_seconds"), ("below", "5")]),
        )
        .expect_err("metric not configured");
    assert!(e.contains("configured: upstream_error_rate"), "{e}");

    for (yaml, why) in [
        (
            "metrics:\n  lag: {query: \"x\"}\n",
            "checks.metrics.lag is a Prometheus query, but checks.prometheus is not configured",
        ),
        (
            "prometheus: {url: \"ftp://x\"}\nmetrics:\n  lag: {query: \"x\"}\n",
            "http or https",
        ),
        (
            "prometheus: {url: \"http://x\"}\nmetrics:\n  lag: {query: \"up{nope}\"}\n",
            "unknown slot {nope}",
        ),
        (
            "prometheus: {url: \"http://x\"}\nhealth_checks:\n  integrity:\n    prometheus: {query: \"x\"}\n",
            "a health check needs `below` or `above`",
        ),
        (
            "health_checks:\n  readiness:\n    http: {url: \"http://{service}.example/ready\"}\n",
            "slots are only allowed in the path and query",
        ),
        ("{}", "configures no health_checks and no metrics"),
    ] {
        let config: ChecksConfig = serde_yaml_ng::from_str(yaml).expect(yaml);
        let e = ChecksExecutor::new(&config).expect_err(yaml);
        assert!(e.contains(why), "{yaml}: {e}");
    }
}

/// Exporter text: checkout is healthy (0.2 % upstream errors), payments is
/// not (7.5 %); a replication lag for the database tree's wait.
const FIXTURE: &str = "\
# HELP medic_fixture_upstream_error_rate Share of failed upstream calls, in percent.
# TYPE medic_fixture_upstream_error_rate gauge
medic_fixture_upstream_error_rate{service=\"checkout\",environment=\"staging\"} 0.2
medic_fixture_upstream_error_rate{service=\"payments\",environment=\"staging\"} 7.5
# HELP medic_fixture_replication_lag_seconds Replica lag.
# TYPE medic_fixture_replication_lag_seconds gauge
medic_fixture_replication_lag_seconds{service=\"checkout\",environment=\"staging\"} 2
";

const ERROR_RATE: &str =
    "medic_fixture_upstream_error_rate{service=\\\"{service}\\\",environment=\\\"{environment}\\\"}";

/// A Prometheus scraping the fixture exporter, with data for every series;
/// `None` (the test is skipped) when no `prometheus` binary is installed.
fn prometheus(name: &str) -> Option<(Prometheus, Exposition)> {
    let Some(binary) = prometheus::binary() else {
        eprintln!("no prometheus binary (apt-get install prometheus): skipping {name}");
        return None;
    };
    let text: Exposition = Arc::new(Mutex::new(FIXTURE.to_string()));
    let target = prometheus::exporter(text.clone());
    let p = Prometheus::start(binary, &target).expect("prometheus starts");
    assert!(
        p.wait_for_data(
            "medic_fixture_upstream_error_rate{service=\"payments\"}",
            Duration::from_secs(30)
        ),
        "prometheus scraped the exporter"
    );
    Some((p, text))
}

/// Instant queries judged against the tree's threshold; a series nobody
/// exports is inconclusive and counts as unhealthy unless `on_no_data:
/// healthy`; a query Prometheus rejects is a permanent error with its
/// reason; `for_secs` needs data over the whole window.
#[test]
fn prometheus_queries_decide_healthy_unhealthy_and_inconclusive() {
    let Some((p, _text)) = prometheus("prometheus_queries_decide") else {
        return;
    };
    let c = checks(&format!(
        "prometheus: {{url: \"{}\"}}\n\
         metrics:\n  upstream_error_rate: {{query: \"{ERROR_RATE}\"}}\n  \
         lenient: {{query: \"{ERROR_RATE}\", on_no_data: healthy}}\n  \
         broken: {{query: \"sum(\"}}\n  \
         steady: {{query: \"{ERROR_RATE}\", for_secs: 3, step_secs: 1}}\n  \
         forever: {{query: \"{ERROR_RATE}\", for_secs: 3600}}\n",
        p.url
    ));
    let below_one = |service: &str, metric: &str| {
        block_on(c.run(&request(service, &[("metric", metric), ("below", "1.0")])))
    };
    let ok = below_one("checkout", "upstream_error_rate").expect("checkout is healthy");
    assert_eq!(
        ok.detail,
        "upstream_error_rate below 1: 1 sample(s) of 1 series, all 0.2"
    );
    let bad = below_one("payments", "upstream_error_rate").expect_err("payments is not");
    assert!(!bad.retryable);
    assert!(
        bad.detail.starts_with("upstream_error_rate not below 1: {")
            && bad.detail.contains("service=\"payments\"")
            && bad.detail.ends_with("is 7.5, not below 1"),
        "{}",
        bad.detail
    );
    let none = below_one("inventory", "upstream_error_rate").expect_err("no data");
    assert_eq!(
        none.detail,
        "upstream_error_rate inconclusive: the query returned no data; counted as unhealthy (on_no_data)"
    );
    assert!(below_one("inventory", "lenient").is_ok());
    let broken = below_one("checkout", "broken").expect_err("bad query");
    assert!(
        !broken.retryable,
        "Prometheus answers 400: {}",
        broken.detail
    );
    assert!(
        broken.detail.starts_with("Prometheus query: HTTP 400: ")
            && broken.detail.contains("parse error"),
        "{}",
        broken.detail
    );
    // The exporter has been scraped for a few seconds by now: wait for 4.
    std::thread::sleep(Duration::from_secs(4));
    let steady = below_one("checkout", "steady").expect("steady over 3 s");
    assert!(
        steady.detail.starts_with("steady below 1 over 3 s: "),
        "{}",
        steady.detail
    );
    let short = below_one("checkout", "forever").expect_err("an hour of data is not there");
    assert!(
        short
            .detail
            .contains("forever inconclusive: data only from"),
        "{}",
        short.detail
    );
}

/// Whole recoveries of a connectivity failure (network_recovery tree as
/// shipped): `reachable` (`upstream_error_rate below 1.0`) is a real
/// Prometheus query. checkout's upstream recovered: the recovery succeeds
/// and the check is not simulated. payments' did not: the tree's unhealthy
/// branch escalates, and the escalate step pages on-call through a PagerDuty
/// channel (a scripted server following the Events API v2). The contain
/// steps and notifications are simulated on purpose.
#[test]
fn a_recovery_is_verified_or_escalated_by_a_real_prometheus_query() {
    let Some((p, _text)) = prometheus("a_recovery_is_verified") else {
        return;
    };
    let (pagerduty, pages) = common::http::server_answering(vec![(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"medic/payments/staging"}"#,
    )]);
    let mut c = embedded("checks-e2e");
    c.config.orchestrate.dry_run = serde_yaml_ng::from_str(
        "[notify, enable_circuit_breaker, disable_circuit_breaker, clear_cache, shift_traffic, retry_deployment]",
    )
    .expect("dry_run list");
    c.config.notify.channels = serde_yaml_ng::from_str(&format!(
        "[{{name: oncall, kind: pagerduty, url: \"{pagerduty}\", key: R0UT1NGKEY0123456789abcdefABCDEF}}]"
    ))
    .expect("channels");
    c.config.orchestrate.executors = serde_yaml_ng::from_str(&format!(
        "routes: {{run_health_check: checks, escalate: channels}}\n\
         channels: {{escalate: [oncall]}}\n\
         checks:\n  prometheus: {{url: \"{}\"}}\n  \
         metrics:\n    upstream_error_rate: {{query: \"{ERROR_RATE}\"}}\n",
        p.url
    ))
    .expect("executors config");
    let (executor, decide) = executors_and_decide(&c);
    for service in ["checkout", "payments"] {
        let mut failure: CategorizedFailure =
            serde_json::from_str(include_str!("../schemas/examples/CategorizedFailure.json"))
                .expect("example");
        failure.failure_type = FailureType::Network;
        failure.transient = false;
        failure.service = service.into();
        failure.environment = "staging".into();
        failure.deployment_key = format!("{service}/staging");
        let plan = decide.plan(&failure, 1);
        assert_eq!(plan.strategy, "network_recovery");
        c.produce_avro(&c.topics.plans, &plan.deployment_key, &plan);
    }
    let (running, _) = c.start_one(StageName::Orchestrate, executor);
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 2, LONG);
    drop(running);

    let of = |service: &str| {
        outcomes
            .iter()
            .find(|o| o.deployment_key == format!("{service}/staging"))
            .unwrap_or_else(|| panic!("an outcome for {service}: {outcomes:?}"))
    };
    let healthy = of("checkout");
    assert_eq!(healthy.outcome, Outcome::Succeeded, "{}", healthy.detail);
    assert!(healthy.actions.contains(&"run_health_check".to_string()));
    assert!(
        !healthy
            .simulated_steps
            .contains(&"run_health_check".to_string()),
        "the check really ran: {:?}",
        healthy.simulated_steps
    );
    let at_end = |o: &RecoveryOutcome| o.metrics.as_ref().and_then(|m| m.error_rate_at_end);
    assert_eq!(
        at_end(healthy),
        Some(0.2),
        "the error rate the last check measured"
    );
    let unhealthy = of("payments");
    assert_eq!(unhealthy.outcome, Outcome::Failed, "{}", unhealthy.detail);
    assert_eq!(at_end(unhealthy), Some(7.5), "still high when it escalated");
    assert!(
        unhealthy.detail.contains("network on-call paged"),
        "{}",
        unhealthy.detail
    );
    assert!(unhealthy.actions.contains(&"escalate".to_string()));
    assert!(
        !unhealthy.simulated_steps.contains(&"escalate".to_string()),
        "the escalation really went out: {:?}",
        unhealthy.simulated_steps
    );
    // The escalate step paged on-call through PagerDuty's Events API.
    let pages = pages.lock().expect("pages").clone();
    assert_eq!(pages.len(), 1, "one page, for payments only");
    let event: serde_json::Value = serde_json::from_str(&pages[0].1).expect("JSON");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], "medic/payments/staging");
    assert_eq!(event["payload"]["class"], "network");
    assert!(
        event["payload"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("hands the recovery of payments/staging to network (page)")),
        "{event}"
    );
}
