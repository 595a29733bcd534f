//! CircleCI outbound webhooks: `workflow-completed`, `job-completed`.

use super::{req, s, t, Delivery, NormalizeError};
use crate::domain::{CiEvent, CiPlatform, CiStatus};
use serde_json::Value;

fn status(s: Option<&str>) -> CiStatus {
    match s {
        Some("success") => CiStatus::Success,
        Some("failed" | "error" | "failing" | "infrastructure_fail") => CiStatus::Failure,
        Some("canceled" | "cancelled") => CiStatus::Cancelled,
        Some("timedout") => CiStatus::TimedOut,
        Some("running") => CiStatus::Running,
        Some("on_hold" | "not_run" | "blocked" | "queued") => CiStatus::Queued,
        _ => CiStatus::Unknown,
    }
}

pub(super) fn normalize(v: &Value, d: &Delivery<'_>) -> Result<Option<CiEvent>, NormalizeError> {
    let kind = d
        .event
        .map(str::to_string)
        .or_else(|| s(v, "/type"))
        .unwrap_or_default();
    let (status_text, job) = match kind.as_str() {
        "workflow-completed" => (s(v, "/workflow/status"), None),
        "job-completed" => (s(v, "/job/status"), s(v, "/job/name")),
        "ping" => return Ok(None),
        "" => {
            return Err(NormalizeError::Missing {
                event: "circleci".into(),
                field: "/type",
            })
        }
        other => return Err(NormalizeError::UnknownEvent(other.to_string())),
    };
    let id = req(v, "/id", &kind)?;
    let st = status(status_text.as_deref());
    Ok(Some(CiEvent {
        id: d
            .delivery_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("circleci/{id}")),
        platform: CiPlatform::Circleci,
        event_type: kind.clone(),
        status: st,
        service: req(v, "/project/name", &kind)?,
        environment: "ci".into(),
        pipeline: s(v, "/workflow/name")
            .or_else(|| s(v, "/pipeline/number").map(|n| format!("pipeline {n}")))
            .unwrap_or_else(|| "workflow".into()),
        job: job.clone(),
        run_id: s(v, "/workflow/id")
            .or_else(|| s(v, "/job/id"))
            .or_else(|| s(v, "/pipeline/id"))
            .ok_or(NormalizeError::Missing {
                event: kind.clone(),
                field: "/workflow/id",
            })?,
        run_attempt: 1,
        commit_sha: s(v, "/pipeline/vcs/revision"),
        branch: s(v, "/pipeline/vcs/branch"),
        url: s(v, "/workflow/url"),
        actor: s(v, "/pipeline/trigger/actor/login"),
        failure_reason: (st == CiStatus::Failure).then(|| status_text.unwrap_or_default()),
        failed_steps: if st == CiStatus::Failure {
            job.into_iter().collect()
        } else {
            Vec::new()
        },
        log_excerpt: None,
        started_at: t(v, "/workflow/created_at").or_else(|| t(v, "/job/started_at")),
        finished_at: t(v, "/workflow/stopped_at")
            .or_else(|| t(v, "/job/stopped_at"))
            .or_else(|| t(v, "/happened_at")),
        received_at: d.received_at,
        repository: s(v, "/project/slug"),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::domain::CiStatus;

    #[test]
    fn the_failed_workflow_fixture() {
        let body = include_bytes!("../../demo/ci/circleci-workflow-completed-failed.json");
        let e = normalize(CiPlatform::Circleci, body, &Delivery::default())
            .expect("ok")
            .expect("event");
        assert_eq!(e.status, CiStatus::Failure);
        assert_eq!(e.service, "hello-world");
        assert_eq!(e.pipeline, "build");
    }
}
