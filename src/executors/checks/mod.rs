//! The `checks` executor: `run_health_check` steps evaluated against real
//! signals, the analysis Argo Rollouts and Flagger users expect.
//!
//! A step names what it checks as the strategy's condition or wait node wrote
//! it: a health check (`check: readiness`) or a metric with a threshold
//! (`metric: upstream_error_rate, below: 1.0`). Each name is configured here:
//! a health check as an HTTP probe ([`probe`]) or as a Prometheus query with
//! its own threshold, a metric as a PromQL query whose threshold the tree
//! gives ([`prometheus`]).
//!
//! Healthy is `Ok`. Unhealthy is a permanent error saying what was seen, so
//! the orchestrator takes the tree's unhealthy branch (`on_false`,
//! `if_unhealthy`) or, for a wait, looks again at its next poll. No data is
//! *inconclusive*: unhealthy unless the check says `on_no_data: healthy` —
//! a recovery is never called verified on a signal nobody measured. A check
//! that cannot be evaluated (Prometheus unreachable, 5xx) is a transient
//! error, which the router tries again.

pub mod probe;
pub mod prometheus;

use self::probe::{Probe, ProbeConfig};
use self::prometheus::{Prometheus, PrometheusConfig, QueryCheck, QueryConfig, Threshold};
use super::step::{StepError, StepExecutor, StepRequest, StepResult};
use super::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `orchestrate.executors.checks` section.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// The Prometheus server that query checks and metrics ask.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
    /// Health checks by the name the trees use (`readiness`,
    /// `data-integrity`, `authentication`).
    #[serde(default)]
    pub health_checks: BTreeMap<String, HealthCheckConfig>,
    /// Metrics by the name the trees use (`upstream_error_rate`,
    /// `replication_lag_seconds`): the query; the threshold comes from the
    /// tree's `below`/`above` (or, when the tree gives none, from here).
    #[serde(default)]
    pub metrics: BTreeMap<String, QueryConfig>,
}

/// How one health check is evaluated: exactly one of `http` and `prometheus`.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// An HTTP probe: status, body match, latency, consecutive successes.
    #[serde(default)]
    pub http: Option<ProbeConfig>,
    /// A PromQL query and its threshold.
    #[serde(default)]
    pub prometheus: Option<QueryConfig>,
}

/// What no data means for a query check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// Inconclusive counts as unhealthy (the default).
    #[default]
    Unhealthy,
    /// Inconclusive counts as healthy (a metric that is absent when all is well).
    Healthy,
}

/// A configured health check; a query's threshold is its own.
enum Check {
    Probe(Probe),
    Query(QueryCheck, Threshold),
}

/// What one step checks, and against which threshold.
enum Resolved<'a> {
    Probe(&'a Probe),
    Query(&'a QueryCheck, Threshold),
}

/// Carries out `run_health_check` against HTTP endpoints and Prometheus.
pub struct ChecksExecutor {
    health_checks: BTreeMap<String, Check>,
    metrics: BTreeMap<String, QueryCheck>,
}

impl ChecksExecutor {
    /// Builds the executor, checking every probe URL, query template and
    /// threshold; errors name the field.
    pub fn new(config: &ChecksConfig) -> Result<ChecksExecutor, String> {
        if config.health_checks.is_empty() && config.metrics.is_empty() {
            return Err("configures no health_checks and no metrics".into());
        }
        let prometheus = config
            .prometheus
            .as_ref()
            .map(|p| Prometheus::new(p).map(Arc::new))
            .transpose()?;
        let needs_prometheus = |field: &str| {
            prometheus.clone().ok_or_else(|| {
                format!("{field} is a Prometheus query, but checks.prometheus is not configured")
            })
        };
        let mut health_checks = BTreeMap::new();
        for (name, check) in &config.health_checks {
            let field = format!("checks.health_checks.{name}");
            let check = match (&check.http, &check.prometheus) {
                (Some(p), None) => {
                    Check::Probe(Probe::new(name, p).map_err(|e| format!("{field}.http: {e}"))?)
                }
                (Some(_), Some(_)) | (None, None) => {
                    return Err(format!(
                        "{field}: give exactly one of `http` and `prometheus`"
                    ))
                }
                (None, Some(q)) => {
                    let client = needs_prometheus(&field)?;
                    let check = QueryCheck::new(name, q, client, &format!("{field}.prometheus"))?;
                    let threshold = check.threshold.ok_or_else(|| {
                        format!("{field}.prometheus: a health check needs `below` or `above`")
                    })?;
                    Check::Query(check, threshold)
                }
            };
            health_checks.insert(name.clone(), check);
        }
        let mut metrics = BTreeMap::new();
        for (name, q) in &config.metrics {
            let field = format!("checks.metrics.{name}");
            let client = needs_prometheus(&field)?;
            metrics.insert(name.clone(), QueryCheck::new(name, q, client, &field)?);
        }
        Ok(ChecksExecutor {
            health_checks,
            metrics,
        })
    }

    /// The threshold a metric step asks for: the step's `below`/`above`,
    /// else the metric's configured one.
    fn threshold(
        step: &BTreeMap<String, String>,
        configured: Option<Threshold>,
    ) -> Result<Threshold, String> {
        let number = |name: &str| {
            step.get(name)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| format!("{name} {v:?} is not a number"))
                })
                .transpose()
        };
        let (below, above) = (number("below")?, number("above")?);
        if below.is_some() || above.is_some() {
            return Ok(Threshold { below, above });
        }
        configured.ok_or_else(|| "the step gives no `below` or `above`, nor does the metric".into())
    }

    fn known<V>(names: &BTreeMap<String, V>) -> String {
        if names.is_empty() {
            "none".into()
        } else {
            names.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// What the step's parameters (`metric` with `below`/`above`, or
    /// `check`) ask for, as configured.
    fn resolve(&self, params: &BTreeMap<String, String>) -> Result<Resolved<'_>, String> {
        if let Some(name) = params.get("metric") {
            let metric = self.metrics.get(name).ok_or_else(|| {
                format!(
                    "metric {name:?} is not configured under orchestrate.executors.checks.metrics (configured: {})",
                    Self::known(&self.metrics)
                )
            })?;
            return Ok(Resolved::Query(
                metric,
                Self::threshold(params, metric.threshold)?,
            ));
        }
        let name = params
            .get("check")
            .ok_or("the step names no health check (`check`) and no metric (`metric`)")?;
        match self.health_checks.get(name) {
            Some(Check::Probe(p)) => Ok(Resolved::Probe(p)),
            Some(Check::Query(q, t)) => Ok(Resolved::Query(q, *t)),
            None => Err(format!(
                "health check {name:?} is not configured under orchestrate.executors.checks.health_checks (configured: {})",
                Self::known(&self.health_checks)
            )),
        }
    }
}

impl StepExecutor for ChecksExecutor {
    fn kind(&self) -> &'static str {
        "checks"
    }

    fn supports(&self, action: &str) -> bool {
        action == "run_health_check"
    }

    fn check(&self, _action: &str, params: &BTreeMap<String, String>) -> Result<(), String> {
        self.resolve(params).map(|_| ())
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            match self
                .resolve(&request.params)
                .map_err(StepError::permanent)?
            {
                Resolved::Probe(p) => p.run(request).await,
                Resolved::Query(q, threshold) => q.run(request, threshold).await,
            }
        })
    }
}

impl std::fmt::Debug for ChecksExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChecksExecutor")
            .field(
                "health_checks",
                &self.health_checks.keys().collect::<Vec<_>>(),
            )
            .field("metrics", &self.metrics.keys().collect::<Vec<_>>())
            .finish()
    }
}
