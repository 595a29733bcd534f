//! The GitHub step executor: acts on the GitHub Actions run behind a failure
//! through GitHub's REST API.
//!
//! | operation | request | success |
//! |---|---|---|
//! | `rerun_failed_jobs` | `POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs` | 201 |
//! | `cancel_run` | `POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel` | 202 |
//! | `deployment_status` | `POST /repos/{owner}/{repo}/deployments`, then `POST /repos/{owner}/{repo}/deployments/{id}/statuses` | 201, 201 |
//!
//! Every request carries `Authorization: Bearer <token>`,
//! `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`,
//! `User-Agent: medic` and the step's `Idempotency-Key`. Owner, repository,
//! run id and commit come from the CI run of the failure (webhook payloads):
//! each is checked against what GitHub allows and added as an escaped path
//! segment. A failure that did not come from GitHub Actions fails the step
//! permanently.
//!
//! `deployment_status` makes two requests; when the second fails and the
//! step is retried, the retry creates a new deployment (GitHub has no way to
//! look up the first by the idempotency key).

use super::outbound::{self, github_repo, shown, valid_id, valid_sha};
use super::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use super::BoxFuture;
use crate::domain::CiRef;
use serde_json::json;
use std::collections::BTreeMap;

/// A GitHub operation an action can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GithubOperation {
    /// Re-run the failed jobs of the workflow run (and the jobs that depend on them).
    RerunFailedJobs,
    /// Cancel the workflow run.
    CancelRun,
    /// Create a deployment for the commit and give it a status (param
    /// `state`, `failure` by default; param `description` optional).
    DeploymentStatus,
}

impl GithubOperation {
    fn describe(self) -> &'static str {
        match self {
            GithubOperation::RerunFailedJobs => "re-run failed jobs",
            GithubOperation::CancelRun => "cancel run",
            GithubOperation::DeploymentStatus => "deployment status",
        }
    }
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

fn default_operations() -> BTreeMap<String, GithubOperation> {
    BTreeMap::from([(
        "retry_deployment".to_string(),
        GithubOperation::RerunFailedJobs,
    )])
}

/// Configuration of the GitHub executor.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// REST API base URL; `https://api.github.com` by default, e.g.
    /// `https://github.example.com/api/v3` for GitHub Enterprise Server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Token (fine-grained: Actions read/write, Deployments read/write),
    /// already resolved from the environment or a file.
    #[serde(default)]
    pub token: String,
    /// Action → operation; `{retry_deployment: rerun_failed_jobs}` by default.
    #[serde(default = "default_operations")]
    pub operations: BTreeMap<String, GithubOperation>,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: default_api_url(),
            token: String::new(),
            operations: default_operations(),
        }
    }
}

impl std::fmt::Debug for GithubConfig {
    /// The token is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConfig")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("operations", &self.operations)
            .finish()
    }
}

/// Deployment states GitHub accepts for a deployment status.
pub const DEPLOYMENT_STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

/// Carries out recovery steps on GitHub Actions runs.
pub struct GithubExecutor {
    client: reqwest::Client,
    api_url: reqwest::Url,
    token: String,
    operations: BTreeMap<String, GithubOperation>,
}

/// The run's repository, checked.
fn repository(ci: &CiRef) -> Result<(&str, &str), StepError> {
    let repo = ci
        .repository
        .as_deref()
        .ok_or_else(|| StepError::permanent("the GitHub run has no repository"))?;
    github_repo(repo).ok_or_else(|| {
        StepError::permanent(format!("repository {} is not owner/name", shown(repo)))
    })
}

fn run_id(ci: &CiRef) -> Result<&str, StepError> {
    let id = ci
        .run_id
        .as_deref()
        .ok_or_else(|| StepError::permanent("the GitHub run has no run id"))?;
    if valid_id(id) {
        Ok(id)
    } else {
        Err(StepError::permanent(format!(
            "run id {} is not a number",
            shown(id)
        )))
    }
}

fn commit(ci: &CiRef) -> Result<&str, StepError> {
    let sha = ci
        .commit_sha
        .as_deref()
        .ok_or_else(|| StepError::permanent("the GitHub run has no commit"))?;
    if valid_sha(sha) {
        Ok(sha)
    } else {
        Err(StepError::permanent(format!(
            "commit {} is not a sha",
            shown(sha)
        )))
    }
}

/// At most `max` characters of `text`.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl GithubExecutor {
    /// An executor for `config`; fails, naming the field, on an invalid API
    /// URL or a missing token.
    pub fn new(config: &GithubConfig) -> Result<Self, String> {
        let api_url = outbound::api_url(&config.api_url, "github.api_url")?;
        outbound::check_token(&config.token, "github.token")?;
        if config.operations.is_empty() {
            return Err("github.operations: no action is mapped to an operation".into());
        }
        Ok(GithubExecutor {
            client: outbound::client("medic")?,
            api_url,
            token: config.token.clone(),
            operations: config.operations.clone(),
        })
    }

    fn post(
        &self,
        request: &StepRequest,
        segments: &[&str],
    ) -> Result<reqwest::RequestBuilder, StepError> {
        let url = outbound::join(&self.api_url, segments)?;
        let key = reqwest::header::HeaderValue::from_str(&request.idempotency_key)
            .map_err(|_| StepError::permanent("the idempotency key cannot go into a header"))?;
        Ok(self
            .client
            .post(url)
            .timeout(request.timeout)
            .bearer_auth(&self.token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("Idempotency-Key", key))
    }

    fn json(builder: reqwest::RequestBuilder, body: &serde_json::Value) -> reqwest::RequestBuilder {
        builder
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }

    async fn run_operation(&self, operation: GithubOperation, request: &StepRequest) -> StepResult {
        let ci = outbound::ci_run(request, "github_actions", "GitHub Actions")?;
        let (owner, repo) = repository(ci)?;
        match operation {
            GithubOperation::RerunFailedJobs | GithubOperation::CancelRun => {
                let run = run_id(ci)?;
                let verb = match operation {
                    GithubOperation::RerunFailedJobs => "rerun-failed-jobs",
                    _ => "cancel",
                };
                let builder = self.post(
                    request,
                    &["repos", owner, repo, "actions", "runs", run, verb],
                )?;
                let what = format!("{} of {owner}/{repo} run {run}", operation.describe());
                let (status, _) = outbound::send(builder, &what).await?;
                Ok(StepDone {
                    detail: format!("{what}: HTTP {status}"),
                    http_status: Some(status),
                    observed: None,
                })
            }
            GithubOperation::DeploymentStatus => {
                let sha = commit(ci)?;
                let state = request
                    .params
                    .get("state")
                    .map(String::as_str)
                    .unwrap_or("failure");
                if !DEPLOYMENT_STATES.contains(&state) {
                    return Err(StepError::permanent(format!(
                        "state {} is not a GitHub deployment state ({})",
                        shown(state),
                        DEPLOYMENT_STATES.join(", ")
                    )));
                }
                let environment = cut(&request.environment, 255);
                let description = cut(&format!("medic recovery {}", request.recovery_id), 140);
                let create = json!({
                    "ref": sha,
                    "environment": environment,
                    "auto_merge": false,
                    "required_contexts": [],
                    "description": description,
                });
                let builder = Self::json(
                    self.post(request, &["repos", owner, repo, "deployments"])?,
                    &create,
                );
                let what = format!("create deployment of {owner}/{repo} at {sha}");
                let (status, body) = outbound::send(builder, &what).await?;
                let id = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                    .ok_or_else(|| {
                        StepError {
                            retryable: false,
                            detail: format!(
                                "{what}: HTTP {status} without a deployment id (GitHub may have merged the default branch instead)"
                            ),
                            http_status: Some(status),
                            observed: None,
                        }
                    })?
                    .to_string();
                let status_description = request
                    .params
                    .get("description")
                    .map(|d| cut(d, 140))
                    .unwrap_or_else(|| description.clone());
                let body = json!({
                    "state": state,
                    "description": status_description,
                    "environment": environment,
                });
                let builder = Self::json(
                    self.post(
                        request,
                        &["repos", owner, repo, "deployments", &id, "statuses"],
                    )?,
                    &body,
                );
                let what = format!("{state} status on deployment {id} of {owner}/{repo}");
                let (status, _) = outbound::send(builder, &what).await?;
                Ok(StepDone {
                    detail: format!("{what}: HTTP {status}"),
                    http_status: Some(status),
                    observed: None,
                })
            }
        }
    }
}

impl StepExecutor for GithubExecutor {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn supports(&self, action: &str) -> bool {
        self.operations.contains_key(action)
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            match self.operations.get(&request.action) {
                Some(operation) => self.run_operation(*operation, request).await,
                None => Err(StepError::permanent(format!(
                    "no GitHub operation for {}",
                    shown(&request.action)
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_at_start() {
        let config: GithubConfig =
            serde_yaml_ng::from_str("token: t\n").expect("defaults fill the rest");
        assert_eq!(config.api_url, "https://api.github.com");
        assert_eq!(
            config.operations.get("retry_deployment"),
            Some(&GithubOperation::RerunFailedJobs)
        );
        assert!(GithubExecutor::new(&config).is_ok());
        let e = GithubExecutor::new(&GithubConfig::default())
            .err()
            .unwrap_or_default();
        assert!(e.contains("github.token"), "{e}");
        let bad = GithubConfig {
            api_url: "ftp://x".into(),
            ..config.clone()
        };
        assert!(GithubExecutor::new(&bad).is_err());
        assert!(serde_yaml_ng::from_str::<GithubConfig>("token: t\nextra: 1\n").is_err());
        assert!(serde_yaml_ng::from_str::<GithubConfig>(
            "token: t\noperations: {rollback_deployment: delete_repo}\n"
        )
        .is_err());
        let debug = format!(
            "{:?}",
            GithubConfig {
                token: "ghp_secret".into(),
                ..config
            }
        );
        assert!(!debug.contains("ghp_secret"), "{debug}");
    }
}
