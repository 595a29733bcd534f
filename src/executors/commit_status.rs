//! Commit statuses on GitHub and GitLab: medic tells the commit page what it
//! is doing about the failure.
//!
//! * GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}` with
//!   `Authorization: Bearer`, `Accept: application/vnd.github+json`,
//!   `X-GitHub-Api-Version: 2022-11-28`, body `{state, target_url, description, context}`.
//! * GitLab: `POST {api}/projects/{id}/statuses/{sha}` with `PRIVATE-TOKEN`,
//!   body `{state, name, target_url, description}`.
//!
//! Repository, project and commit come from webhook payloads: they are
//! checked against what the platforms allow and added as escaped path
//! segments, never pasted into the URL.

use super::{BoxFuture, Executor};
use crate::domain::CiPlatform;
use crate::stages::{CommitState, EffectRequest, EffectResult};
use serde_json::json;
use std::time::Duration;

/// Context name shown on the commit page.
pub const CONTEXT: &str = "medic";

/// One platform's API.
#[derive(Debug, Clone)]
pub struct StatusTarget {
    /// API base URL, e.g. `https://api.github.com`.
    pub api_url: reqwest::Url,
    /// Access token.
    pub token: String,
}

/// Writes commit statuses to the configured platforms.
pub struct CommitStatusSink {
    client: reqwest::Client,
    github: Option<StatusTarget>,
    gitlab: Option<StatusTarget>,
}

use super::outbound::{
    github_repo as valid_github_repo, gitlab_project as valid_gitlab_project, valid_sha,
};

impl CommitStatusSink {
    /// A sink for the targets that have a token.
    pub fn new(
        github: Option<StatusTarget>,
        gitlab: Option<StatusTarget>,
        timeout: Duration,
    ) -> Result<Self, String> {
        // Never follow a redirect: it would carry the token elsewhere.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(CommitStatusSink {
            client,
            github,
            gitlab,
        })
    }

    /// Platforms this sink can write to.
    pub fn platforms(&self) -> Vec<CiPlatform> {
        let mut p = Vec::new();
        if self.github.is_some() {
            p.push(CiPlatform::GithubActions);
        }
        if self.gitlab.is_some() {
            p.push(CiPlatform::GitlabCi);
        }
        p
    }

    fn request(&self, request: &EffectRequest) -> Result<reqwest::RequestBuilder, String> {
        let EffectRequest::CommitStatus {
            platform,
            repository,
            sha,
            state,
            description,
            target_url,
            ..
        } = request
        else {
            return Err("not a commit status".into());
        };
        if !valid_sha(sha) {
            return Err(format!("'{sha}' is not a commit sha"));
        }
        let description: String = description.chars().take(140).collect();
        let url = |target: &StatusTarget, segments: &[&str]| -> Result<reqwest::Url, String> {
            let mut url = target.api_url.clone();
            url.path_segments_mut()
                .map_err(|_| "the API URL cannot take a path".to_string())?
                .pop_if_empty()
                .extend(segments);
            Ok(url)
        };
        match platform {
            CiPlatform::GithubActions => {
                let target = self.github.as_ref().ok_or("no GitHub token configured")?;
                let (owner, name) = valid_github_repo(repository)
                    .ok_or_else(|| format!("'{repository}' is not owner/repo"))?;
                let state = match state {
                    CommitState::Pending => "pending",
                    CommitState::Success => "success",
                    CommitState::Failure => "failure",
                };
                let mut body =
                    json!({"state": state, "description": description, "context": CONTEXT});
                if let Some(link) = target_url {
                    body["target_url"] = json!(link);
                }
                Ok(self
                    .client
                    .post(url(target, &["repos", owner, name, "statuses", sha])?)
                    .bearer_auth(&target.token)
                    .header("Accept", "application/vnd.github+json")
                    .header("X-GitHub-Api-Version", "2022-11-28")
                    .header("Content-Type", "application/json")
                    .body(body.to_string()))
            }
            CiPlatform::GitlabCi => {
                let target = self.gitlab.as_ref().ok_or("no GitLab token configured")?;
                if !valid_gitlab_project(repository) {
                    return Err(format!("'{repository}' is not a GitLab project id or path"));
                }
                let state = match state {
                    CommitState::Pending => "running",
                    CommitState::Success => "success",
                    CommitState::Failure => "failed",
                };
                let mut body = json!({"state": state, "description": description, "name": CONTEXT});
                if let Some(link) = target_url {
                    body["target_url"] = json!(link);
                }
                Ok(self
                    .client
                    .post(url(target, &["projects", repository, "statuses", sha])?)
                    .header("PRIVATE-TOKEN", &target.token)
                    .header("Content-Type", "application/json")
                    .body(body.to_string()))
            }
            other => Err(format!("commit statuses are not supported for {other}")),
        }
    }
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
            };
            let builder = match self.request(request) {
                Ok(b) => b,
                Err(e) => return fail(e, None, 0),
            };
            match builder.send().await {
                Ok(response) if response.status().is_success() => EffectResult {
                    idempotency_key: key.clone(),
                    success: true,
                    detail: format!("HTTP {}", response.status()),
                    attempts: 1,
                    http_status: Some(response.status().as_u16()),
                    retries: Vec::new(),
                },
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
