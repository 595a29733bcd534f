//! GitLab CI: `Pipeline Hook`, `Job Hook` (`build` objects), `Deployment Hook`.

use super::{req, s, t, Delivery, NormalizeError};
use crate::domain::{CiEvent, CiPlatform, CiStatus};
use serde_json::Value;

/// `object_kind`s GitLab sends that medic accepts without producing anything.
const KNOWN_KINDS: &[&str] = &[
    "push",
    "tag_push",
    "issue",
    "work_item",
    "note",
    "merge_request",
    "wiki_page",
    "release",
    "feature_flag",
    "emoji",
    "access_token",
    "member",
    "project",
    "subgroup",
    "vulnerability",
];

fn status(s: Option<&str>) -> CiStatus {
    match s {
        Some("success") => CiStatus::Success,
        Some("failed") => CiStatus::Failure,
        Some("canceled" | "cancelled") => CiStatus::Cancelled,
        Some("running") => CiStatus::Running,
        Some(
            "created" | "pending" | "waiting_for_resource" | "preparing" | "scheduled" | "manual",
        ) => CiStatus::Queued,
        Some("skipped") => CiStatus::Skipped,
        _ => CiStatus::Unknown,
    }
}

pub(super) fn normalize(v: &Value, d: &Delivery<'_>) -> Result<Option<CiEvent>, NormalizeError> {
    let kind = s(v, "/object_kind").unwrap_or_default();
    let service = |event: &str| {
        s(v, "/project/path_with_namespace")
            .and_then(|p| p.rsplit('/').next().map(str::to_string))
            .or_else(|| s(v, "/project/name"))
            .or_else(|| s(v, "/project_name"))
            .ok_or(NormalizeError::Missing {
                event: event.to_string(),
                field: "/project/name",
            })
    };
    let event = match kind.as_str() {
        "pipeline" => {
            let a = v
                .pointer("/object_attributes")
                .ok_or(NormalizeError::Missing {
                    event: kind.clone(),
                    field: "/object_attributes",
                })?;
            let id = req(a, "/id", &kind)?;
            let builds = v
                .pointer("/builds")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let failed: Vec<&Value> = builds
                .iter()
                .filter(|b| b["status"].as_str() == Some("failed"))
                .collect();
            // A pipeline deploys where its failed (or else any) build's environment points.
            let environment = failed
                .iter()
                .copied()
                .chain(builds.iter())
                .find_map(|b| s(b, "/environment/name"))
                .unwrap_or_else(|| "ci".into());
            let reasons: Vec<String> = failed
                .iter()
                .filter_map(|b| s(b, "/failure_reason"))
                .collect();
            CiEvent {
                id: d.delivery_id.map(str::to_string).unwrap_or_else(|| {
                    format!(
                        "gitlab/pipeline/{id}/{}",
                        s(a, "/status").unwrap_or_default()
                    )
                }),
                platform: CiPlatform::GitlabCi,
                event_type: "Pipeline Hook".into(),
                status: status(a["status"].as_str()),
                service: service(&kind)?,
                environment,
                pipeline: s(a, "/name").unwrap_or_else(|| format!("pipeline {id}")),
                job: None,
                run_id: id,
                run_attempt: 1,
                commit_sha: s(a, "/sha"),
                branch: s(a, "/ref"),
                url: s(a, "/url"),
                actor: s(v, "/user/username"),
                failure_reason: (!reasons.is_empty()).then(|| reasons.join(", ")),
                failed_steps: failed.iter().filter_map(|b| s(b, "/name")).collect(),
                log_excerpt: None,
                started_at: t(a, "/created_at"),
                finished_at: t(a, "/finished_at"),
                received_at: d.received_at,
                repository: s(v, "/project/id").or_else(|| s(v, "/project_id")),
            }
        }
        "build" => {
            let id = req(v, "/build_id", &kind)?;
            CiEvent {
                id: d.delivery_id.map(str::to_string).unwrap_or_else(|| {
                    format!(
                        "gitlab/job/{id}/{}",
                        s(v, "/build_status").unwrap_or_default()
                    )
                }),
                platform: CiPlatform::GitlabCi,
                event_type: "Job Hook".into(),
                status: status(v["build_status"].as_str()),
                service: service(&kind)?,
                environment: s(v, "/environment/name").unwrap_or_else(|| "ci".into()),
                pipeline: s(v, "/pipeline_id")
                    .map(|p| format!("pipeline {p}"))
                    .unwrap_or_else(|| "pipeline".into()),
                job: s(v, "/build_name"),
                run_id: id,
                run_attempt: 1,
                commit_sha: s(v, "/sha"),
                branch: s(v, "/ref"),
                url: None,
                actor: s(v, "/user/username"),
                failure_reason: s(v, "/build_failure_reason").filter(|r| {
                    r != "unknown_failure" || v["build_status"].as_str() == Some("failed")
                }),
                failed_steps: Vec::new(),
                log_excerpt: None,
                started_at: t(v, "/build_started_at"),
                finished_at: t(v, "/build_finished_at"),
                received_at: d.received_at,
                repository: s(v, "/project/id").or_else(|| s(v, "/project_id")),
            }
        }
        "deployment" => {
            let id = req(v, "/deployment_id", &kind)?;
            CiEvent {
                id: d.delivery_id.map(str::to_string).unwrap_or_else(|| {
                    format!(
                        "gitlab/deployment/{id}/{}",
                        s(v, "/status").unwrap_or_default()
                    )
                }),
                platform: CiPlatform::GitlabCi,
                event_type: "Deployment Hook".into(),
                status: status(v["status"].as_str()),
                service: service(&kind)?,
                environment: s(v, "/environment").unwrap_or_else(|| "ci".into()),
                pipeline: "deployment".into(),
                job: s(v, "/deployable_id").map(|j| format!("job {j}")),
                run_id: id,
                run_attempt: 1,
                commit_sha: s(v, "/short_sha"),
                branch: s(v, "/ref"),
                url: s(v, "/deployable_url"),
                actor: s(v, "/user/username"),
                failure_reason: None,
                failed_steps: Vec::new(),
                log_excerpt: None,
                started_at: None,
                finished_at: t(v, "/status_changed_at"),
                received_at: d.received_at,
                repository: s(v, "/project/id").or_else(|| s(v, "/project_id")),
            }
        }
        known if KNOWN_KINDS.contains(&known) => return Ok(None),
        // System hooks (project_create, user_add_to_team, repository_update,
        // ...) name themselves in `event_name` and carry no `object_kind`.
        "" if s(v, "/event_name").is_some() => return Ok(None),
        "" => {
            return Err(NormalizeError::Missing {
                event: "gitlab".into(),
                field: "/object_kind",
            })
        }
        other => return Err(NormalizeError::UnknownEvent(other.to_string())),
    };
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::domain::CiStatus;

    #[test]
    fn the_derived_failed_pipeline_names_its_failed_job_and_environment() {
        let body = include_bytes!("../../demo/ci/gitlab-pipeline-failed.derived.json");
        let e = normalize(CiPlatform::GitlabCi, body, &Delivery::default())
            .expect("ok")
            .expect("event");
        assert_eq!(e.status, CiStatus::Failure);
        assert_eq!(e.service, "gitlab-test");
        assert_eq!(e.environment, "production");
        assert_eq!(e.failed_steps, vec!["production".to_string()]);
        assert_eq!(e.failure_reason.as_deref(), Some("script_failure"));
    }
}
