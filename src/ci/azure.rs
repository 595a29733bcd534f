//! Azure DevOps service hooks: `build.complete`, release deployment and
//! abandonment events; git and pull-request events are known but unused.

use super::{s, t, Delivery, NormalizeError};
use crate::domain::{CiEvent, CiPlatform, CiStatus};
use serde_json::Value;

/// Event types medic accepts without producing anything.
const UNUSED: &[&str] = &[
    "git.push",
    "git.pullrequest.created",
    "git.pullrequest.updated",
    "git.pullrequest.merged",
    "workitem.created",
    "workitem.updated",
    "workitem.commented",
    "ms.vss-release.release-created-event",
    "ms.vss-release.deployment-started-event",
    "ms.vss-release.deployment-approval-pending-event",
    "build.started",
];

fn status(s: Option<&str>) -> CiStatus {
    match s.map(str::to_ascii_lowercase).as_deref() {
        Some("succeeded") => CiStatus::Success,
        Some("failed" | "partiallysucceeded" | "rejected") => CiStatus::Failure,
        Some("canceled" | "cancelled" | "abandoned") => CiStatus::Cancelled,
        Some("inprogress" | "in_progress") => CiStatus::Running,
        Some("notstarted" | "queued" | "scheduled" | "pending" | "active") => CiStatus::Queued,
        Some("skipped") => CiStatus::Skipped,
        _ => CiStatus::Unknown,
    }
}

fn base(v: &Value, d: &Delivery<'_>, event: &str, id: String) -> CiEvent {
    CiEvent {
        id: d.delivery_id.map(str::to_string).unwrap_or(id),
        platform: CiPlatform::AzureDevops,
        event_type: event.to_string(),
        status: CiStatus::Unknown,
        service: String::new(),
        environment: "ci".into(),
        pipeline: String::new(),
        job: None,
        run_id: String::new(),
        run_attempt: 1,
        commit_sha: None,
        branch: None,
        url: None,
        actor: None,
        failure_reason: None,
        failed_steps: Vec::new(),
        log_excerpt: s(v, "/message/text"),
        started_at: None,
        finished_at: None,
        received_at: d.received_at,
        repository: s(v, "/resource/repository/id"),
    }
}

pub(super) fn normalize(v: &Value, d: &Delivery<'_>) -> Result<Option<CiEvent>, NormalizeError> {
    let event = s(v, "/eventType").ok_or(NormalizeError::Missing {
        event: "azure-devops".into(),
        field: "/eventType",
    })?;
    let notification = s(v, "/id").unwrap_or_default();
    let resource = || {
        v.pointer("/resource").ok_or(NormalizeError::Missing {
            event: event.clone(),
            field: "/resource",
        })
    };
    let e = match event.as_str() {
        "build.complete" => {
            let r = resource()?;
            let id = s(r, "/id").ok_or(NormalizeError::Missing {
                event: event.clone(),
                field: "/resource/id",
            })?;
            let number = s(r, "/buildNumber").unwrap_or_else(|| id.clone());
            let mut e = base(v, d, &event, format!("azure/build/{id}/{notification}"));
            // The current Build resource says `status: completed` and puts
            // the verdict in `result`; older hooks put the verdict in `status`.
            let verdict = s(r, "/result").or_else(|| s(r, "/status"));
            e.status = status(verdict.as_deref());
            // The build definition names the pipeline; old payloads only carry
            // the build number, "<definition>_<date>.<n>".
            let definition = s(r, "/definition/name")
                .unwrap_or_else(|| number.split('_').next().unwrap_or(&number).to_string());
            e.service = s(r, "/repository/name").unwrap_or_else(|| definition.clone());
            e.pipeline = definition;
            e.job = Some(number);
            e.run_id = id;
            e.url = s(r, "/_links/web/href").or_else(|| s(r, "/url"));
            e.actor =
                s(r, "/lastChangedBy/displayName").or_else(|| s(r, "/requestedFor/displayName"));
            // "LG:refs/heads/main:600c52d2..." = source branch and commit.
            if let Some(version) = s(r, "/sourceGetVersion") {
                let mut parts = version.splitn(3, ':');
                if let (Some(_), Some(branch), Some(sha)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    e.branch = Some(branch.to_string());
                    e.commit_sha = Some(sha.to_string());
                }
            }
            e.commit_sha = s(r, "/sourceVersion").or(e.commit_sha);
            e.branch = s(r, "/sourceBranch").or(e.branch);
            e.started_at = t(r, "/startTime");
            e.finished_at = t(r, "/finishTime");
            e.failure_reason = (e.status == CiStatus::Failure).then(|| verdict.unwrap_or_default());
            e
        }
        "ms.vss-release.deployment-completed-event"
        | "ms.vss-release.release-abandoned-event"
        | "ms.vss-release.deployment-approval-completed-event" => {
            let r = resource()?;
            let release = r
                .pointer("/release")
                .or_else(|| r.pointer("/deployment/release"))
                .ok_or(NormalizeError::Missing {
                    event: event.clone(),
                    field: "/resource/release",
                })?;
            let id = s(release, "/id").ok_or(NormalizeError::Missing {
                event: event.clone(),
                field: "/resource/release/id",
            })?;
            let mut e = base(v, d, &event, format!("azure/release/{id}/{notification}"));
            let environments = release
                .pointer("/environments")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let environment = r
                .pointer("/environment")
                .or_else(|| r.pointer("/approval/releaseEnvironment"))
                .or_else(|| {
                    environments
                        .iter()
                        .find(|e| status(e["status"].as_str()) != CiStatus::Success)
                })
                .or_else(|| environments.first());
            e.environment = environment
                .and_then(|env| s(env, "/name"))
                .unwrap_or_else(|| "ci".into());
            e.status = match event.as_str() {
                "ms.vss-release.release-abandoned-event" => CiStatus::Cancelled,
                "ms.vss-release.deployment-approval-completed-event" => {
                    match r.pointer("/approval/status").and_then(Value::as_str) {
                        Some("rejected") => CiStatus::Cancelled,
                        _ => CiStatus::Success,
                    }
                }
                _ => status(environment.and_then(|env| env["status"].as_str())),
            };
            let definition =
                s(release, "/releaseDefinition/name").unwrap_or_else(|| "release".into());
            e.service = s(r, "/project/name")
                .or_else(|| s(v, "/resourceContainers/project/name"))
                .unwrap_or_else(|| definition.clone());
            e.service = release
                .pointer("/artifacts")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|a| s(a, "/definitionReference/definition/name"))
                .unwrap_or(e.service);
            e.pipeline = definition;
            e.job = s(release, "/name");
            e.run_id = id;
            e.url = s(release, "/_links/web/href").or_else(|| s(release, "/url"));
            e.actor = s(release, "/modifiedBy/displayName")
                .or_else(|| s(r, "/approval/approvedBy/displayName"));
            e.failure_reason = match e.status {
                CiStatus::Cancelled => Some(
                    s(release, "/comment")
                        .or_else(|| s(r, "/approval/comments"))
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(|| "release abandoned or approval rejected".into()),
                ),
                CiStatus::Failure => Some("deployment failed".into()),
                _ => None,
            };
            e.finished_at = t(release, "/modifiedOn");
            e
        }
        known if UNUSED.contains(&known) => return Ok(None),
        other => return Err(NormalizeError::UnknownEvent(other.to_string())),
    };
    if e.service.is_empty() {
        return Err(NormalizeError::Missing {
            event,
            field: "/resource (no repository, definition or project name)",
        });
    }
    Ok(Some(e))
}
