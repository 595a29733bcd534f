//! Jenkins Notification plugin: one JSON object per build phase (QUEUED,
//! STARTED, COMPLETED, FINALIZED). Only COMPLETED carries the result; the
//! other phases are known but unused.

use super::{s, Delivery, NormalizeError};
use crate::domain::{CiEvent, CiPlatform, CiStatus};
use serde_json::Value;

pub(super) fn normalize(v: &Value, d: &Delivery<'_>) -> Result<Option<CiEvent>, NormalizeError> {
    let event = "jenkins notification";
    let missing = |field: &'static str| NormalizeError::Missing {
        event: event.into(),
        field,
    };
    let name = s(v, "/name").ok_or_else(|| missing("/name"))?;
    let build = v.pointer("/build").ok_or_else(|| missing("/build"))?;
    let number = s(build, "/number").ok_or_else(|| missing("/build/number"))?;
    let phase = s(build, "/phase").ok_or_else(|| missing("/build/phase"))?;
    match phase.as_str() {
        "COMPLETED" => {}
        "QUEUED" | "STARTED" | "FINALIZED" => return Ok(None),
        other => return Err(NormalizeError::UnknownEvent(format!("phase {other}"))),
    }
    let result = s(build, "/status").unwrap_or_default();
    let status = match result.as_str() {
        "SUCCESS" => CiStatus::Success,
        "FAILURE" | "UNSTABLE" => CiStatus::Failure,
        "ABORTED" => CiStatus::Cancelled,
        "NOT_BUILT" => CiStatus::Skipped,
        _ => CiStatus::Unknown,
    };
    // A job "team/checkout/deploy-production" or with a parameter DEPLOY_ENV names the environment.
    let environment = [
        "/build/parameters/DEPLOY_ENV",
        "/build/parameters/ENVIRONMENT",
        "/build/parameters/environment",
    ]
    .iter()
    .find_map(|p| s(v, p))
    .unwrap_or_else(|| "ci".into());
    let repository = s(build, "/scm/url").and_then(|u| {
        u.trim_end_matches('/')
            .trim_end_matches(".git")
            .rsplit(['/', ':'])
            .next()
            .map(str::to_string)
    });
    Ok(Some(CiEvent {
        id: d
            .delivery_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("jenkins/{name}/{number}")),
        platform: CiPlatform::Jenkins,
        event_type: format!("build {}", phase.to_ascii_lowercase()),
        status,
        service: repository.unwrap_or_else(|| name.clone()),
        environment,
        pipeline: name,
        job: Some(format!("#{number}")),
        run_id: number,
        run_attempt: 1,
        commit_sha: s(build, "/scm/commit"),
        branch: s(build, "/scm/branch"),
        url: s(build, "/full_url"),
        actor: None,
        failure_reason: (status == CiStatus::Failure).then_some(result),
        failed_steps: Vec::new(),
        log_excerpt: s(build, "/log"),
        started_at: None,
        finished_at: None,
        received_at: d.received_at,
        repository: None,
    }))
}
