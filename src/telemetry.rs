//! Prometheus metrics: one recorder per process, rendered on `/metrics`.
//!
//! Handles are looked up once per label set and cached, so recording a
//! record costs an atomic add, not a registry lookup. Label values are
//! bounded: stage names and topic names (from configuration), never
//! deployment keys or recovery ids.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `medic_records_consumed_total` | `stage`, `topic` | input records handed to the stage |
//! | `medic_records_produced_total` | `stage`, `topic` | records the stage produced |
//! | `medic_records_deadlettered_total` | `stage`, `topic` | input records sent to the dead-letter topic |
//! | `medic_processing_seconds` | `stage` | time the stage core spent on one record (histogram) |
//! | `medic_failures_total` | `type`, `severity` | categorized failures produced |
//! | `medic_recoveries_total` | `strategy`, `outcome` | recovery outcomes produced |
//! | `medic_time_to_recover_seconds` | | first signal to outcome, succeeded recoveries (histogram) |
//! | `medic_executor_calls_total` | `kind`, `result` | recovery-step attempts: succeeded, retried, failed |
//! | `medic_notifications_total` | `sink`, `result` | notification and commit-status deliveries |
//! | `medic_bridge_requests_total` | `platform`, `result` | webhook requests (the bridge) |

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use std::sync::OnceLock;
use std::time::Duration;

/// The `metrics` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` listener of processes that do not run the
    /// bridge (`medic run <stage>`); `medic run all` and `medic bridge` serve
    /// `/metrics` on the bridge's address. Empty turns it off.
    pub listen: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some("0.0.0.0:9464".into()),
        }
    }
}

/// Every metric medic exports (histograms also as `_bucket`, `_sum`, `_count`).
pub const METRIC_NAMES: &[&str] = &[
    "medic_records_consumed_total",
    "medic_records_produced_total",
    "medic_records_deadlettered_total",
    "medic_processing_seconds",
    "medic_failures_total",
    "medic_recoveries_total",
    "medic_time_to_recover_seconds",
    "medic_executor_calls_total",
    "medic_notifications_total",
    "medic_bridge_requests_total",
    "medic_consumer_lag",
];

/// Names the recovery the record in hand is about on the record's span
/// (`recovery`), so every log line written while handling it carries it.
pub fn record_recovery(recovery_id: &str) {
    tracing::Span::current().record("recovery", recovery_id);
}

/// Sets `medic_consumer_lag{stage, topic, partition}` (a gauge; partitions
/// are few and fixed, so the label set stays bounded).
pub fn consumer_lag(stage: &'static str, topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(
        "medic_consumer_lag",
        "stage" => stage,
        "topic" => topic.to_string(),
        "partition" => partition.to_string()
    )
    .set(lag as f64);
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once) and returns its handle;
/// `None` when another recorder was installed first. A background thread
/// runs histogram upkeep every 10 s, so memory stays flat when nobody scrapes.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
                    5.0,
                ])
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("medic-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(10));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let handle = install();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                match handle {
                    Some(h) => (StatusCode::OK, h.render()).into_response(),
                    None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The metrics of one stage runner, with cached handles.
pub struct StageMetrics {
    stage: &'static str,
    // A stage reads and writes a handful of topics: a short list beats hashing.
    consumed: Vec<(String, Counter)>,
    produced: Vec<(String, Counter)>,
    deadlettered: Vec<(String, Counter)>,
    processing: Histogram,
}

impl StageMetrics {
    /// Metrics of `stage`.
    pub fn new(stage: &'static str) -> StageMetrics {
        StageMetrics {
            stage,
            consumed: Vec::new(),
            produced: Vec::new(),
            deadlettered: Vec::new(),
            processing: metrics::histogram!("medic_processing_seconds", "stage" => stage),
        }
    }

    fn counter<'a>(
        stage: &'static str,
        cache: &'a mut Vec<(String, Counter)>,
        name: &'static str,
        topic: &str,
    ) -> &'a Counter {
        let i = match cache.iter().position(|(t, _)| t == topic) {
            Some(i) => i,
            None => {
                let c = metrics::counter!(name, "stage" => stage, "topic" => topic.to_string());
                cache.push((topic.to_string(), c));
                cache.len() - 1
            }
        };
        &cache[i].1
    }

    /// One input record from `topic`.
    pub fn consumed(&mut self, topic: &str) {
        Self::counter(
            self.stage,
            &mut self.consumed,
            "medic_records_consumed_total",
            topic,
        )
        .increment(1);
    }

    /// One record produced, counted also by what it says.
    pub fn produced(&mut self, out: &crate::stages::OutputRecord) {
        use crate::stages::Observation;
        Self::counter(
            self.stage,
            &mut self.produced,
            "medic_records_produced_total",
            &out.topic,
        )
        .increment(1);
        match &out.observation {
            None => {}
            Some(Observation::Failure {
                failure_type,
                severity,
            }) => metrics::counter!(
                "medic_failures_total",
                "type" => failure_type.as_str(),
                "severity" => severity.as_str()
            )
            .increment(1),
            Some(Observation::Recovery {
                strategy,
                outcome,
                time_to_recover_ms,
            }) => {
                metrics::counter!(
                    "medic_recoveries_total",
                    "strategy" => strategy.clone(),
                    "outcome" => outcome.as_str()
                )
                .increment(1);
                if let Some(ms) = time_to_recover_ms {
                    metrics::histogram!("medic_time_to_recover_seconds")
                        .record(*ms as f64 / 1000.0);
                }
            }
        }
    }

    /// One input record from `topic` dead-lettered.
    pub fn deadlettered(&mut self, topic: &str) {
        Self::counter(
            self.stage,
            &mut self.deadlettered,
            "medic_records_deadlettered_total",
            topic,
        )
        .increment(1);
    }

    /// Time the stage core spent on one record.
    pub fn processed(&self, took: Duration) {
        self.processing.record(took.as_secs_f64());
    }
}
