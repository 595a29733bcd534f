//! What medic writes back to the CI run behind a failure.
//!
//! * GitHub: a commit status, `POST {api}/repos/{owner}/{repo}/statuses/{sha}`
//!   with `Authorization: Bearer`, `Accept: application/vnd.github+json`,
//!   `X-GitHub-Api-Version: 2022-11-28`, body `{state, target_url, description, context}`.
//! * GitLab: a commit status, `POST {api}/projects/{id}/statuses/{sha}` with
//!   `PRIVATE-TOKEN`, body `{state, name, target_url, description}`.
//! * Jenkins: the build description ([`jenkins`]).
//! * Azure DevOps: build tags ([`azure`]).
//!
//! Each carries the failure type, the action taken, whether to retry the
//! deployment and the recommendations, as far as the platform's space allows
//! (a commit status line is 140 characters). Repository, project, job and
//! commit come from webhook payloads: they are checked against what the
//! platforms allow and added as path segments, never pasted into the URL,
//! and requests go only to the configured API, whatever host a payload names.

pub mod azure;
mod build_path;
pub mod jenkins;

use super::{BoxFuture, Executor};
use crate::domain::{CiPlatform, CiRef};
use crate::stages::notify::StatusReport;
use crate::stages::{CommitState, EffectRequest, EffectResult};
use serde_json::json;
use std::time::Duration;

/// Context name shown on the commit page.
pub const CONTEXT: &str = "medic";

/// Characters of a commit status description, at most (GitHub's limit).
pub const DESCRIPTION_LIMIT: usize = 140;

/// One platform's API.
#[derive(Debug, Clone)]
pub struct StatusTarget {
    /// API base URL, e.g. `https://api.github.com`, a Jenkins root or an
    /// Azure DevOps organization URL.
    pub api_url: reqwest::Url,
    /// Access token (Jenkins: the user's API token; Azure DevOps: a personal
    /// access token).
    pub token: String,
    /// Jenkins: the user the API token belongs to.
    pub user: Option<String>,
}

/// The platforms medic writes back to, each with its API when configured.
#[derive(Debug, Clone, Default)]
pub struct StatusTargets {
    /// Commit statuses on GitHub.
    pub github: Option<StatusTarget>,
    /// Commit statuses on GitLab.
    pub gitlab: Option<StatusTarget>,
    /// Build descriptions on Jenkins.
    pub jenkins: Option<StatusTarget>,
    /// Build tags on Azure DevOps.
    pub azure_devops: Option<StatusTarget>,
}

/// Writes statuses to the configured platforms.
pub struct CommitStatusSink {
    client: reqwest::Client,
    targets: StatusTargets,
}

use super::outbound::{
    github_repo as valid_github_repo, gitlab_project as valid_gitlab_project, valid_sha,
};

impl CommitStatusSink {
    /// A sink for the targets that have a token.
    pub fn new(targets: StatusTargets, timeout: Duration) -> Result<Self, String> {
        // Never follow a redirect: it would carry the token elsewhere.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(CommitStatusSink { client, targets })
    }

    fn request(&self, request: &EffectRequest) -> Result<reqwest::RequestBuilder, String> {
        let EffectRequest::CommitStatus {
            platform,
            ci,
            state,
            report,
            ..
        } = request
        else {
            return Err("not a commit status".into());
        };
        match platform {
            CiPlatform::GithubActions => self.github(
                configured(&self.targets.github, "GitHub")?,
                ci,
                *state,
                report,
            ),
            CiPlatform::GitlabCi => self.gitlab(
                configured(&self.targets.gitlab, "GitLab")?,
                ci,
                *state,
                report,
            ),
            CiPlatform::Jenkins => jenkins::request(
                &self.client,
                configured(&self.targets.jenkins, "Jenkins")?,
                ci,
                report,
            ),
            CiPlatform::AzureDevops => azure::request(
                &self.client,
                configured(&self.targets.azure_devops, "Azure DevOps")?,
                ci,
                *state,
                report,
            ),
            other => Err(format!("statuses are not supported for {other}")),
        }
    }

    fn github(
        &self,
        target: &StatusTarget,
        ci: &CiRef,
        state: CommitState,
        report: &StatusReport,
    ) -> Result<reqwest::RequestBuilder, String> {
        let (repository, sha) = repository_and_sha(ci)?;
        let (owner, name) = valid_github_repo(repository)
            .ok_or_else(|| format!("'{repository}' is not owner/repo"))?;
        let state = match state {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
        };
        let body = status_body(state, "context", report);
        Ok(self
            .client
            .post(segments(target, &["repos", owner, name, "statuses", sha])?)
            .bearer_auth(&target.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("Content-Type", "application/json")
            .body(body.to_string()))
    }

    fn gitlab(
        &self,
        target: &StatusTarget,
        ci: &CiRef,
        state: CommitState,
        report: &StatusReport,
    ) -> Result<reqwest::RequestBuilder, String> {
        let (repository, sha) = repository_and_sha(ci)?;
        if !valid_gitlab_project(repository) {
            return Err(format!("'{repository}' is not a GitLab project id or path"));
        }
        let state = match state {
            CommitState::Pending => "running",
            CommitState::Success => "success",
            CommitState::Failure => "failed",
        };
        let body = status_body(state, "name", report);
        Ok(self
            .client
            .post(segments(
                target,
                &["projects", repository, "statuses", sha],
            )?)
            .header("PRIVATE-TOKEN", &target.token)
            .header("Content-Type", "application/json")
            .body(body.to_string()))
    }
}

/// A commit status body: `state`, the one-line description, medic's name
/// under `name_field` (`context` on GitHub, `name` on GitLab), the link.
fn status_body(state: &str, name_field: &str, report: &StatusReport) -> serde_json::Value {
    let mut body = json!({
        "state": state,
        "description": report.line(DESCRIPTION_LIMIT),
        name_field: CONTEXT,
    });
    if let Some(link) = &report.target_url {
        body["target_url"] = json!(link);
    }
    body
}

/// The target of a platform, or why there is none.
fn configured<'a>(
    target: &'a Option<StatusTarget>,
    name: &str,
) -> Result<&'a StatusTarget, String> {
    target
        .as_ref()
        .ok_or_else(|| format!("no {name} token configured"))
}

/// The repository and a checked commit sha of `ci`.
fn repository_and_sha(ci: &CiRef) -> Result<(&str, &str), String> {
    let repository = ci
        .repository
        .as_deref()
        .ok_or("the CI run names no repository")?;
    let sha = ci
        .commit_sha
        .as_deref()
        .ok_or("the CI run names no commit")?;
    if !valid_sha(sha) {
        return Err(format!("'{sha}' is not a commit sha"));
    }
    Ok((repository, sha))
}

/// The target's API URL with `segments` appended, each escaped.
fn segments(target: &StatusTarget, segments: &[&str]) -> Result<reqwest::Url, String> {
    super::outbound::join(&target.api_url, segments).map_err(|e| e.detail)
}

impl Executor for CommitStatusSink {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        Box::pin(async move {
            let key = request.key().to_string();
            let fail = |detail: String, status: Option<u16>, attempts: u32| EffectResult {
                idempotency_key: key.clone(),
                success: false,
                detail,
                attempts,
                http_status: status,
                retries: Vec::new(),
                observed: None,
            };
            let builder = match self.request(request) {
                Ok(b) => b,
                Err(e) => return fail(e, None, 0),
            };
            let jenkins = matches!(
                request,
                EffectRequest::CommitStatus {
                    platform: CiPlatform::Jenkins,
                    ..
                }
            );
            match builder.send().await {
                Ok(response)
                    if response.status().is_success()
                        || (jenkins && jenkins::redirect_to_build(&response)) =>
                {
                    EffectResult {
                        idempotency_key: key.clone(),
                        success: true,
                        detail: format!("HTTP {}", response.status()),
                        attempts: 1,
                        http_status: Some(response.status().as_u16()),
                        retries: Vec::new(),
                        observed: None,
                    }
                }
                Ok(response) => fail(
                    format!("HTTP {}", response.status()),
                    Some(response.status().as_u16()),
                    1,
                ),
                Err(e) => fail(format!("request failed: {e}"), None, 1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parts_from_payloads_are_checked() {
        assert!(valid_sha("3484a3fb816e0859fd6e1cea078d76385ff50625"));
        assert!(!valid_sha("3484a3f/../../admin"));
        assert_eq!(
            valid_github_repo("Codertocat/Hello-World"),
            Some(("Codertocat", "Hello-World"))
        );
        for bad in ["a/b/c", "../x", "owner/..", "own er/x", "owner/x?y=1"] {
            assert_eq!(valid_github_repo(bad), None, "{bad}");
        }
        assert!(valid_gitlab_project("1") && valid_gitlab_project("gitlab-org/gitlab-test"));
        assert!(!valid_gitlab_project("a/../b") && !valid_gitlab_project("a?b"));
    }
}
