//! `/metrics` after an end-to-end run on the embedded cluster: the series a
//! dashboard needs, with the counts of what went through.

mod common;

use common::*;
use medic::domain::*;
use medic::stages::StageName;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

/// The value of the series `name{labels}` in Prometheus text, if present.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find(|l| {
            let rest = &l[name.len()..];
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_what_each_stage_consumed_produced_and_dead_lettered() {
    medic::telemetry::install();
    let mut c = embedded("metrics");
    // Statistics (consumer lag) every half second instead of every 10 s.
    c.settings
        .consumer_properties
        .insert("statistics.interval.ms".into(), "500".into());
    for _ in 0..5 {
        c.produce(
            &c.topics.logs_raw,
            Some("cart/staging"),
            b"Last State: Terminated  Reason: OOMKilled  Exit Code: 137",
        );
    }
    c.produce(&c.topics.failures, Some("cart/staging"), b"\x00not avro");
    let running = c.start(&StageName::ALL);
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    assert_eq!(outcomes.len(), 1);
    // Scrape over HTTP, as Prometheus would.
    let listener = c
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    c.runtime
        .spawn(medic::telemetry::serve(listener, std::future::pending()));
    let text = c.runtime.block_on(async {
        reqwest::get(&url)
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    });
    drop(running);

    let t = &c.topics;
    let consumed = |stage: &str, topic: &str| {
        value(
            &text,
            "medic_records_consumed_total",
            &[("stage", stage), ("topic", topic)],
        )
    };
    assert_eq!(consumed("ingest", &t.logs_raw), Some(5.0), "{text}");
    assert_eq!(consumed("categorize", &t.signals), Some(5.0));
    assert_eq!(
        consumed("decide", &t.failures),
        Some(2.0),
        "one failure and the poison record"
    );
    assert_eq!(consumed("orchestrate", &t.plans), Some(1.0));
    assert_eq!(
        value(
            &text,
            "medic_records_produced_total",
            &[("stage", "ingest"), ("topic", &t.signals)]
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            &text,
            "medic_records_produced_total",
            &[("stage", "orchestrate"), ("topic", &t.outcomes)]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "medic_records_deadlettered_total",
            &[("stage", "decide"), ("topic", &t.failures)]
        ),
        Some(1.0)
    );
    // What the records said.
    assert_eq!(
        value(&text, "medic_failures_total", &[("type", "resource")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "medic_recoveries_total",
            &[("strategy", "resource_recovery"), ("outcome", "succeeded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "medic_time_to_recover_seconds_count", &[]),
        Some(1.0)
    );
    let calls = value(
        &text,
        "medic_executor_calls_total",
        &[("kind", "dry_run"), ("result", "succeeded")],
    );
    assert!(
        calls.is_some_and(|n| n >= 3.0),
        "every step of the recovery: {calls:?}"
    );
    // Everything consumed: ingest's partitions of the raw topic have no lag.
    let lag = value(
        &text,
        "medic_consumer_lag",
        &[
            ("stage", "ingest"),
            ("topic", &t.logs_raw),
            ("partition", "0"),
        ],
    );
    assert_eq!(lag, Some(0.0), "{text}");
    // The list the dashboard is checked against is complete.
    let exported: std::collections::BTreeSet<String> = medic::telemetry::METRIC_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let scraped = names(&text);
    let missing: Vec<&String> = scraped.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "exported but not in METRIC_NAMES: {missing:?}"
    );
    // Every record processed was timed.
    let timed = value(
        &text,
        "medic_processing_seconds_count",
        &[("stage", "ingest")],
    )
    .expect("histogram");
    assert!(timed >= 5.0, "{timed}");
    assert!(
        text.contains("medic_processing_seconds_bucket{stage=\"ingest\",le=\"0.001\"}"),
        "histogram buckets"
    );
}

/// Metric names in a text: `medic_...` identifiers, histogram suffixes removed.
fn names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("medic_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        out.insert(base);
    }
    out
}

#[test]
fn the_dashboard_and_prometheus_config_use_only_exported_metrics() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/medic.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push_str(target["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    let used = names(&exprs);
    let exported: std::collections::BTreeSet<String> = medic::telemetry::METRIC_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics medic does not export: {unknown:?}"
    );
    let unused: Vec<&String> = exported.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "exported metrics missing from the dashboard: {unused:?}"
    );

    let prometheus: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/prometheus.yml")).expect("prometheus.yml"),
    )
    .expect("prometheus.yml is YAML");
    let jobs: Vec<&str> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .filter_map(|j| j["job_name"].as_str())
        .collect();
    assert_eq!(jobs, ["medic-stages", "medic-bridge"]);

    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{root}/docker-compose.yml")).expect("compose"),
    )
    .expect("docker-compose.yml is YAML");
    for service in [
        "kafka",
        "topics",
        "ingest",
        "categorize",
        "decide",
        "orchestrate",
        "notify",
        "bridge",
        "prometheus",
        "grafana",
    ] {
        assert!(
            !compose["services"][service].is_null(),
            "compose has no {service}"
        );
    }
}
