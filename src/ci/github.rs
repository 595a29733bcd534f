//! GitHub Actions: `workflow_job`, `workflow_run`, `check_run`, `deployment_status`.

use super::{req, s, t, Delivery, NormalizeError};
use crate::domain::{CiEvent, CiPlatform, CiStatus};
use serde_json::Value;

/// Every webhook event GitHub sends; those without a branch above are
/// accepted and not produced.
const KNOWN_EVENTS: &[&str] = &[
    "branch_protection_configuration",
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "code_scanning_alert",
    "commit_comment",
    "create",
    "custom_property",
    "custom_property_values",
    "delete",
    "dependabot_alert",
    "deploy_key",
    "deployment",
    "deployment_protection_rule",
    "deployment_review",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "github_app_authorization",
    "gollum",
    "installation",
    "installation_repositories",
    "installation_target",
    "issue_comment",
    "issues",
    "label",
    "marketplace_purchase",
    "member",
    "membership",
    "merge_group",
    "meta",
    "milestone",
    "org_block",
    "organization",
    "package",
    "page_build",
    "personal_access_token_request",
    "ping",
    "project",
    "project_card",
    "project_column",
    "projects_v2",
    "projects_v2_item",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "registry_package",
    "release",
    "repository",
    "repository_advisory",
    "repository_dispatch",
    "repository_import",
    "repository_ruleset",
    "repository_vulnerability_alert",
    "secret_scanning_alert",
    "secret_scanning_alert_location",
    "security_advisory",
    "security_and_analysis",
    "sponsorship",
    "star",
    "status",
    "sub_issues",
    "team",
    "team_add",
    "watch",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

fn status(status: Option<&str>, conclusion: Option<&str>) -> CiStatus {
    match (status, conclusion) {
        (_, Some("success" | "neutral")) => CiStatus::Success,
        (_, Some("failure" | "startup_failure" | "action_required" | "error")) => CiStatus::Failure,
        (_, Some("cancelled")) => CiStatus::Cancelled,
        (_, Some("timed_out")) => CiStatus::TimedOut,
        (_, Some("skipped" | "stale")) => CiStatus::Skipped,
        (Some("queued" | "waiting" | "pending" | "requested"), _) => CiStatus::Queued,
        (Some("in_progress"), _) => CiStatus::Running,
        _ => CiStatus::Unknown,
    }
}

pub(super) fn normalize(v: &Value, d: &Delivery<'_>) -> Result<Option<CiEvent>, NormalizeError> {
    let event = d.event.map(str::to_string).unwrap_or_else(|| {
        // Without the header, recognise the payload by its main object.
        [
            "workflow_job",
            "workflow_run",
            "check_run",
            "deployment_status",
        ]
        .into_iter()
        .find(|k| v.get(k).is_some())
        .unwrap_or("unknown")
        .to_string()
    });
    let repo = || req(v, "/repository/name", &event);
    let base = |id: String,
                status: CiStatus,
                pipeline: String,
                run_id: String|
     -> Result<CiEvent, NormalizeError> {
        Ok(CiEvent {
            id: d.delivery_id.map(str::to_string).unwrap_or(id),
            platform: CiPlatform::GithubActions,
            event_type: event.clone(),
            status,
            service: repo()?,
            environment: "ci".into(),
            pipeline,
            job: None,
            run_id,
            run_attempt: 1,
            commit_sha: None,
            branch: None,
            url: None,
            actor: s(v, "/sender/login"),
            repository: s(v, "/repository/full_name"),
            failure_reason: None,
            failed_steps: Vec::new(),
            log_excerpt: None,
            started_at: None,
            finished_at: None,
            received_at: d.received_at,
        })
    };
    let e = match event.as_str() {
        "workflow_job" => {
            let j = v.pointer("/workflow_job").ok_or(NormalizeError::Missing {
                event: event.clone(),
                field: "/workflow_job",
            })?;
            let run_id = req(j, "/run_id", &event)?;
            let attempt = j
                .pointer("/run_attempt")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let job_id = req(j, "/id", &event)?;
            let mut e = base(
                format!("github/job/{job_id}/{attempt}"),
                status(j["status"].as_str(), j["conclusion"].as_str()),
                s(j, "/workflow_name").unwrap_or_else(|| "workflow".into()),
                run_id,
            )?;
            e.job = s(j, "/name");
            e.run_attempt = attempt as i32;
            e.commit_sha = s(j, "/head_sha");
            e.branch = s(j, "/head_branch");
            e.url = s(j, "/html_url");
            e.started_at = t(j, "/started_at");
            e.finished_at = t(j, "/completed_at");
            e.failed_steps = j
                .pointer("/steps")
                .and_then(Value::as_array)
                .map(|steps| {
                    steps
                        .iter()
                        .filter(|st| {
                            matches!(
                                st["conclusion"].as_str(),
                                Some("failure" | "timed_out" | "cancelled")
                            )
                        })
                        .filter_map(|st| st["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            e
        }
        "workflow_run" => {
            let r = v.pointer("/workflow_run").ok_or(NormalizeError::Missing {
                event: event.clone(),
                field: "/workflow_run",
            })?;
            let run_id = req(r, "/id", &event)?;
            let attempt = r
                .pointer("/run_attempt")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let mut e = base(
                format!("github/run/{run_id}/{attempt}"),
                status(r["status"].as_str(), r["conclusion"].as_str()),
                s(r, "/name").unwrap_or_else(|| "workflow".into()),
                run_id,
            )?;
            e.run_attempt = attempt as i32;
            e.commit_sha = s(r, "/head_sha");
            e.branch = s(r, "/head_branch");
            e.url = s(r, "/html_url");
            e.started_at = t(r, "/run_started_at");
            e.finished_at = t(r, "/updated_at");
            e
        }
        "check_run" => {
            let c = v.pointer("/check_run").ok_or(NormalizeError::Missing {
                event: event.clone(),
                field: "/check_run",
            })?;
            let id = req(c, "/id", &event)?;
            let mut e = base(
                format!("github/check/{id}"),
                status(c["status"].as_str(), c["conclusion"].as_str()),
                s(c, "/name").unwrap_or_else(|| "check".into()),
                id,
            )?;
            e.commit_sha = s(c, "/head_sha");
            e.url = s(c, "/html_url");
            e.started_at = t(c, "/started_at");
            e.finished_at = t(c, "/completed_at");
            e.log_excerpt = s(c, "/output/summary");
            e
        }
        "deployment_status" => {
            let ds = v
                .pointer("/deployment_status")
                .ok_or(NormalizeError::Missing {
                    event: event.clone(),
                    field: "/deployment_status",
                })?;
            let id = req(ds, "/id", &event)?;
            let state = ds["state"].as_str();
            let st = match state {
                Some("success") => CiStatus::Success,
                Some("failure" | "error") => CiStatus::Failure,
                Some("in_progress") => CiStatus::Running,
                Some("queued" | "pending") => CiStatus::Queued,
                Some("inactive") => CiStatus::Skipped,
                _ => CiStatus::Unknown,
            };
            let mut e = base(
                format!("github/deployment_status/{id}"),
                st,
                "deployment".into(),
                s(v, "/deployment/id").unwrap_or(id),
            )?;
            e.environment = s(ds, "/environment")
                .or_else(|| s(v, "/deployment/environment"))
                .unwrap_or_else(|| "ci".into());
            e.commit_sha = s(v, "/deployment/sha");
            e.branch = s(v, "/deployment/ref");
            e.url = s(ds, "/target_url").or_else(|| s(ds, "/log_url"));
            e.log_excerpt = s(ds, "/description");
            e.finished_at = t(ds, "/updated_at");
            e
        }
        "check_suite" => {
            let c = v.pointer("/check_suite").ok_or(NormalizeError::Missing {
                event: event.clone(),
                field: "/check_suite",
            })?;
            let id = req(c, "/id", &event)?;
            let mut e = base(
                format!(
                    "github/check_suite/{id}/{}",
                    s(c, "/status").unwrap_or_default()
                ),
                status(c["status"].as_str(), c["conclusion"].as_str()),
                s(c, "/app/name").unwrap_or_else(|| "check suite".into()),
                id,
            )?;
            e.commit_sha = s(c, "/head_sha");
            e.branch = s(c, "/head_branch");
            e.started_at = t(c, "/created_at");
            e.finished_at = t(c, "/updated_at");
            e
        }
        "status" => {
            let id = req(v, "/id", &event)?;
            let st = match v["state"].as_str() {
                Some("success") => CiStatus::Success,
                Some("failure" | "error") => CiStatus::Failure,
                Some("pending") => CiStatus::Running,
                _ => CiStatus::Unknown,
            };
            let mut e = base(
                format!("github/status/{id}"),
                st,
                s(v, "/context").unwrap_or_else(|| "status".into()),
                id,
            )?;
            e.commit_sha = s(v, "/sha");
            e.url = s(v, "/target_url");
            e.log_excerpt = s(v, "/description");
            e.failure_reason =
                (st == CiStatus::Failure).then(|| s(v, "/state").unwrap_or_default());
            e.finished_at = t(v, "/updated_at");
            e
        }
        known if KNOWN_EVENTS.contains(&known) => return Ok(None),
        "unknown" if v.get("zen").is_some() => return Ok(None),
        other => return Err(NormalizeError::UnknownEvent(other.to_string())),
    };
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn the_failed_workflow_job_fixture() {
        let body = include_bytes!("../../demo/ci/github-workflow_job-failure.json");
        let d = Delivery {
            event: Some("workflow_job"),
            delivery_id: None,
            received_at: 1,
        };
        let e = normalize(CiPlatform::GithubActions, body, &d)
            .expect("ok")
            .expect("event");
        assert_eq!(e.status, crate::domain::CiStatus::Failure);
        assert_eq!(e.service, "Hello-World");
        assert_eq!(e.pipeline, "CodeQL");
        assert_eq!(e.job.as_deref(), Some("linters"));
        assert_eq!(
            e.failed_steps,
            vec!["Run yarn run format-check".to_string()]
        );
        assert_eq!(e.id, "github/job/289782451/1");
        assert_eq!(e.finished_at, Some(1_628_159_896_000));
    }

    #[test]
    fn a_job_without_its_object_is_a_clear_error() {
        let d = Delivery {
            event: Some("workflow_job"),
            delivery_id: None,
            received_at: 1,
        };
        let err =
            normalize(CiPlatform::GithubActions, br#"{"action":"completed"}"#, &d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workflow_job: missing or invalid field /workflow_job"
        );
    }
}
