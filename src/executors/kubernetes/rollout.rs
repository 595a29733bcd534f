//! Waiting for a rollout to complete, the way `kubectl rollout status` and
//! `kubectl argo rollouts status` decide it, so that a restart or rollback
//! succeeds only once the new pods serve.
//!
//! A Deployment is complete when the controller has observed its latest
//! spec (`status.observedGeneration >= metadata.generation`) and every
//! replica is updated and available (`updatedReplicas`, `replicas` and
//! `availableReplicas` all equal `spec.replicas`); it has failed when its
//! `Progressing` condition says `ProgressDeadlineExceeded`. An Argo Rollout
//! is complete when its `status.phase` is `Healthy` for the observed
//! generation, and has failed when the phase is `Degraded`.

use super::names::shown;
use super::Api;
use crate::executors::step::StepError;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every replica runs the current template.
    Complete(String),
    /// Still rolling out: what it waits for.
    Waiting(String),
    /// It will not complete on its own.
    Failed(String),
}

/// How long a step waits for its rollout and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutWait {
    /// Wait for the rollout to complete before the step succeeds.
    pub enabled: bool,
    /// Between two reads of the workload, in milliseconds.
    pub poll_ms: u64,
}

impl Default for RolloutWait {
    fn default() -> Self {
        RolloutWait {
            enabled: true,
            poll_ms: 2_000,
        }
    }
}

fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// A generation as the API writes it: a number for Deployments, a string
/// holding one for Argo Rollouts' `status.observedGeneration`.
fn generation(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// Where the Deployment `d` stands (kubectl's `DeploymentStatusViewer`).
pub fn deployment_progress(d: &Value) -> Progress {
    let status = &d["status"];
    let wanted = generation(&d["metadata"]["generation"]).unwrap_or(0);
    let observed = generation(&status["observedGeneration"]).unwrap_or(0);
    if observed < wanted {
        return Progress::Waiting(format!(
            "waiting for the controller to observe generation {wanted} (observed {observed})"
        ));
    }
    let progressing = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"));
    if let Some(c) = progressing.filter(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Progress::Failed(format!(
            "progress deadline exceeded: {}",
            shown(c["message"].as_str().unwrap_or("no message"))
        ));
    }
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = count(&status["updatedReplicas"]);
    let total = count(&status["replicas"]);
    let available = count(&status["availableReplicas"]);
    if updated < replicas {
        Progress::Waiting(format!("{updated} of {replicas} replicas updated"))
    } else if total > updated {
        Progress::Waiting(format!(
            "{} old replicas are pending termination",
            total - updated
        ))
    } else if available < updated {
        Progress::Waiting(format!(
            "{available} of {updated} updated replicas available"
        ))
    } else {
        Progress::Complete(format!(
            "{updated} of {replicas} replicas updated and available"
        ))
    }
}

/// Where the Argo Rollout `r` stands (the plugin's `status` command).
pub fn rollout_progress(r: &Value) -> Progress {
    let status = &r["status"];
    let wanted = generation(&r["metadata"]["generation"]).unwrap_or(0);
    let observed = generation(&status["observedGeneration"]).unwrap_or(0);
    if observed < wanted {
        return Progress::Waiting(format!(
            "waiting for the controller to observe generation {wanted} (observed {observed})"
        ));
    }
    let message = shown(status["message"].as_str().unwrap_or(""));
    match status["phase"].as_str().unwrap_or("") {
        "Healthy" => Progress::Complete(format!(
            "healthy, {} of {} replicas available",
            count(&status["availableReplicas"]),
            r["spec"]["replicas"].as_i64().unwrap_or(1)
        )),
        "Degraded" => Progress::Failed(format!("degraded: {message}")),
        "" => Progress::Waiting("no phase reported yet".into()),
        phase => Progress::Waiting(format!("{}: {message}", shown(phase))),
    }
}

/// Reads the workload at `path` until `progress` says it is complete or
/// failed, or `budget` runs out. `Ok` carries the completion message; a
/// failure or running out of time is a permanent error (another attempt
/// would roll back or restart again), saying what was last seen.
pub async fn wait_for(
    api: &Api<'_>,
    path: &[&str],
    kind: &str,
    progress: fn(&Value) -> Progress,
    poll: Duration,
    budget: Duration,
) -> Result<String, StepError> {
    let started = Instant::now();
    loop {
        let waiting = match api.get(path, &format!("reading the {kind}")).await {
            Ok(object) => match progress(&object) {
                Progress::Complete(done) => return Ok(done),
                Progress::Failed(why) => {
                    return Err(StepError::permanent(format!("the rollout failed: {why}")))
                }
                Progress::Waiting(what) => what,
            },
            // A blip of the API server: look again at the next poll.
            Err(e) if e.retryable => e.detail,
            Err(e) => return Err(StepError::permanent(e.detail)),
        };
        let elapsed = started.elapsed();
        if elapsed + poll > budget {
            return Err(StepError::permanent(format!(
                "the rollout did not complete within {:.1} s: {waiting}",
                budget.as_secs_f64()
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, observed: i64, replicas: i64, status: Value) -> Value {
        let mut status = status;
        status["observedGeneration"] = json!(observed);
        json!({"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status})
    }

    /// The cases of kubectl's `DeploymentStatusViewer`, in its order.
    #[test]
    fn deployment_progress_follows_kubectl_rollout_status() {
        let full = json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert!(
            matches!(deployment_progress(&deployment(5, 4, 3, full.clone())), Progress::Waiting(w) if w.contains("observe generation 5"))
        );
        assert!(matches!(
            deployment_progress(&deployment(5, 5, 3, full)),
            Progress::Complete(_)
        ));
        let stuck = json!({"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
            "conditions": [{"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"checkout-5c7d9f6b8d\" has timed out progressing."}]});
        assert!(
            matches!(deployment_progress(&deployment(5, 5, 3, stuck)), Progress::Failed(f) if f.contains("has timed out progressing"))
        );
        let cases = [
            (
                json!({"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
                "1 of 3 replicas updated",
            ),
            (
                json!({"replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
                "1 old replicas are pending termination",
            ),
            (
                json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
                "2 of 3 updated replicas available",
            ),
        ];
        for (status, waiting) in cases {
            assert_eq!(
                deployment_progress(&deployment(5, 5, 3, status)),
                Progress::Waiting(waiting.into())
            );
        }
    }

    /// Argo Rollouts writes `observedGeneration` as a string and reports a phase.
    #[test]
    fn rollout_progress_reads_the_phase_of_the_observed_generation() {
        let r = |observed: &str, phase: &str| {
            json!({"metadata": {"generation": 8}, "spec": {"replicas": 2},
            "status": {"observedGeneration": observed, "phase": phase, "message": "RolloutAborted: aborted", "availableReplicas": 2}})
        };
        assert!(matches!(
            rollout_progress(&r("7", "Healthy")),
            Progress::Waiting(_)
        ));
        assert!(
            matches!(rollout_progress(&r("8", "Healthy")), Progress::Complete(c) if c.contains("2 of 2"))
        );
        assert!(matches!(
            rollout_progress(&r("8", "Progressing")),
            Progress::Waiting(_)
        ));
        assert!(matches!(
            rollout_progress(&r("8", "Paused")),
            Progress::Waiting(_)
        ));
        assert!(
            matches!(rollout_progress(&r("8", "Degraded")), Progress::Failed(f) if f.contains("aborted"))
        );
    }
}
