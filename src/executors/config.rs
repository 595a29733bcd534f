//! The `orchestrate.executors` section: where each recovery action is routed.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Recovery-step executors: one kind per action, retries, and each kind's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorsConfig {
    /// Action → executor kind: `dry_run`, `http`, `command`, `github`,
    /// `gitlab`, `kubernetes`, `argo_rollouts`, `checks` or `channels`. Checked at start: the kind
    /// must be configured below and support the action.
    pub routes: BTreeMap<String, String>,
    /// The kind for actions without a route.
    pub default: String,
    /// Attempts per step (timeouts, connection errors, 429 and 5xx are retried).
    pub attempts: u32,
    /// Wait before the second attempt, doubled after each, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Longest wait between attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Configured HTTP requests per action.
    pub http: Option<crate::executors::http::HttpConfig>,
    /// Configured programs per action (argv, never a shell).
    pub command: Option<crate::executors::command::CommandConfig>,
    /// GitHub Actions: re-run failed jobs, cancel runs, deployment statuses.
    pub github: Option<crate::executors::github::GithubConfig>,
    /// GitLab CI: retry jobs or pipelines, cancel pipelines.
    pub gitlab: Option<crate::executors::gitlab::GitlabConfig>,
    /// Kubernetes Deployments: rollout restart, undo, scale.
    pub kubernetes: Option<crate::executors::kubernetes::KubernetesConfig>,
    /// Argo Rollouts: abort and undo, retry.
    pub argo_rollouts: Option<crate::executors::kubernetes::KubernetesConfig>,
    /// Health checks and metrics for `run_health_check`: HTTP probes and
    /// Prometheus queries.
    pub checks: Option<crate::executors::checks::ChecksConfig>,
    /// `escalate` and `notify` steps on notification channels: action →
    /// names of `notify.channels` (`escalate: [oncall, ops-slack]`).
    pub channels: Option<BTreeMap<String, Vec<String>>>,
}

impl Default for ExecutorsConfig {
    fn default() -> Self {
        ExecutorsConfig {
            routes: BTreeMap::new(),
            default: "dry_run".into(),
            attempts: 3,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 30_000,
            http: None,
            command: None,
            github: None,
            gitlab: None,
            kubernetes: None,
            argo_rollouts: None,
            checks: None,
            channels: None,
        }
    }
}
