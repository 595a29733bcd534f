//! medic's own signed format, for any CI system without a native integration:
//! a `CiEvent` as JSON without `platform` and `received_at`.
//!
//! ```json
//! {"id": "build-4711", "event_type": "pipeline", "status": "failure",
//!  "service": "checkout", "environment": "production", "pipeline": "deploy",
//!  "run_id": "4711", "failure_reason": "helm upgrade failed",
//!  "log_excerpt": "Error: UPGRADE FAILED: ..."}
//! ```

use super::{Delivery, NormalizeError};
use crate::domain::{CiEvent, CiPlatform, CiStatus, Millis};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericEvent {
    id: String,
    #[serde(default = "pipeline")]
    event_type: String,
    status: CiStatus,
    service: String,
    #[serde(default = "ci")]
    environment: String,
    #[serde(default = "pipeline")]
    pipeline: String,
    #[serde(default)]
    job: Option<String>,
    run_id: String,
    #[serde(default = "one")]
    run_attempt: i32,
    #[serde(default)]
    commit_sha: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    failure_reason: Option<String>,
    #[serde(default)]
    failed_steps: Vec<String>,
    #[serde(default)]
    log_excerpt: Option<String>,
    #[serde(default)]
    started_at: Option<Millis>,
    #[serde(default)]
    finished_at: Option<Millis>,
    #[serde(default)]
    repository: Option<String>,
}

fn pipeline() -> String {
    "pipeline".into()
}

fn ci() -> String {
    "ci".into()
}

fn one() -> i32 {
    1
}

pub(super) fn normalize(v: &Value, d: &Delivery<'_>) -> Result<Option<CiEvent>, NormalizeError> {
    let g: GenericEvent =
        serde_json::from_value(v.clone()).map_err(|e| NormalizeError::Invalid(e.to_string()))?;
    if g.service.trim().is_empty() || g.id.trim().is_empty() {
        return Err(NormalizeError::Invalid(
            "id and service must not be empty".into(),
        ));
    }
    Ok(Some(CiEvent {
        id: d.delivery_id.map(str::to_string).unwrap_or(g.id),
        platform: CiPlatform::Generic,
        event_type: g.event_type,
        status: g.status,
        service: g.service,
        environment: g.environment,
        pipeline: g.pipeline,
        job: g.job,
        run_id: g.run_id,
        run_attempt: g.run_attempt,
        commit_sha: g.commit_sha,
        branch: g.branch,
        url: g.url,
        actor: g.actor,
        failure_reason: g.failure_reason,
        failed_steps: g.failed_steps,
        log_excerpt: g.log_excerpt,
        started_at: g.started_at,
        finished_at: g.finished_at,
        received_at: d.received_at,
        repository: g.repository,
    }))
}
