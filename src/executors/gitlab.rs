//! The GitLab step executor: acts on the GitLab CI pipeline or job behind a
//! failure through GitLab's REST API (v4).
//!
//! | operation | request |
//! |---|---|
//! | `retry` | `POST /projects/{id}/jobs/{job_id}/retry` when the failure names a job, else `POST /projects/{id}/pipelines/{pipeline_id}/retry` |
//! | `cancel` | `POST /projects/{id}/pipelines/{pipeline_id}/cancel` |
//!
//! Every request carries `PRIVATE-TOKEN` and the step's `Idempotency-Key`.
//! The project (a numeric id or a `group/sub/project` path) is one URL-encoded
//! path segment (`/` becomes `%2F`), as GitLab documents; pipeline and job ids
//! must be numbers. A failure that did not come from GitLab CI fails the step
//! permanently.

use super::outbound::{self, gitlab_project, shown, valid_id};
use super::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use super::BoxFuture;
use std::collections::BTreeMap;

/// A GitLab operation an action can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitlabOperation {
    /// Retry the failed job, or the pipeline's failed jobs when no job is named.
    Retry,
    /// Cancel the pipeline's running jobs.
    Cancel,
}

fn default_api_url() -> String {
    "https://gitlab.com/api/v4".into()
}

fn default_operations() -> BTreeMap<String, GitlabOperation> {
    BTreeMap::from([("retry_deployment".to_string(), GitlabOperation::Retry)])
}

/// Configuration of the GitLab executor.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabConfig {
    /// REST API base URL, `https://gitlab.com/api/v4` by default.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Access token (scope `api`), already resolved from the environment or a file.
    #[serde(default)]
    pub token: String,
    /// Action → operation; `{retry_deployment: retry}` by default.
    #[serde(default = "default_operations")]
    pub operations: BTreeMap<String, GitlabOperation>,
}

impl Default for GitlabConfig {
    fn default() -> Self {
        GitlabConfig {
            api_url: default_api_url(),
            token: String::new(),
            operations: default_operations(),
        }
    }
}

impl std::fmt::Debug for GitlabConfig {
    /// The token is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitlabConfig")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("operations", &self.operations)
            .finish()
    }
}

/// Carries out recovery steps on GitLab CI pipelines and jobs.
pub struct GitlabExecutor {
    client: reqwest::Client,
    api_url: reqwest::Url,
    token: String,
    operations: BTreeMap<String, GitlabOperation>,
}

fn id<'a>(value: Option<&'a String>, what: &str) -> Result<&'a str, StepError> {
    let value =
        value.ok_or_else(|| StepError::permanent(format!("the GitLab failure has no {what}")))?;
    if valid_id(value) {
        Ok(value)
    } else {
        Err(StepError::permanent(format!(
            "{what} {} is not a number",
            shown(value)
        )))
    }
}

impl GitlabExecutor {
    /// An executor for `config`; fails, naming the field, on an invalid API
    /// URL or a missing token.
    pub fn new(config: &GitlabConfig) -> Result<Self, String> {
        let api_url = outbound::api_url(&config.api_url, "gitlab.api_url")?;
        outbound::check_token(&config.token, "gitlab.token")?;
        if config.operations.is_empty() {
            return Err("gitlab.operations: no action is mapped to an operation".into());
        }
        Ok(GitlabExecutor {
            client: outbound::client(concat!("medic/", env!("CARGO_PKG_VERSION")))?,
            api_url,
            token: config.token.clone(),
            operations: config.operations.clone(),
        })
    }

    async fn run_operation(&self, operation: GitlabOperation, request: &StepRequest) -> StepResult {
        let ci = outbound::ci_run(request, "gitlab_ci", "GitLab CI")?;
        let project = ci
            .repository
            .as_deref()
            .ok_or_else(|| StepError::permanent("the GitLab failure has no project"))?;
        if !gitlab_project(project) {
            return Err(StepError::permanent(format!(
                "project {} is not a GitLab project id or path",
                shown(project)
            )));
        }
        let (segments, what) = match (operation, ci.job_id.as_ref()) {
            (GitlabOperation::Retry, Some(job)) => {
                let job = id(Some(job), "job id")?;
                (
                    vec!["projects", project, "jobs", job, "retry"],
                    format!("retry job {job} of project {project}"),
                )
            }
            (GitlabOperation::Retry, None) => {
                let pipeline = id(ci.run_id.as_ref(), "pipeline id")?;
                (
                    vec!["projects", project, "pipelines", pipeline, "retry"],
                    format!("retry pipeline {pipeline} of project {project}"),
                )
            }
            (GitlabOperation::Cancel, _) => {
                let pipeline = id(ci.run_id.as_ref(), "pipeline id")?;
                (
                    vec!["projects", project, "pipelines", pipeline, "cancel"],
                    format!("cancel pipeline {pipeline} of project {project}"),
                )
            }
        };
        let url = outbound::join(&self.api_url, &segments)?;
        let key = reqwest::header::HeaderValue::from_str(&request.idempotency_key)
            .map_err(|_| StepError::permanent("the idempotency key cannot go into a header"))?;
        let builder = self
            .client
            .post(url)
            .timeout(request.timeout)
            .header("PRIVATE-TOKEN", &self.token)
            .header("Idempotency-Key", key);
        let (status, _) = outbound::send(builder, &what).await?;
        Ok(StepDone {
            detail: format!("{what}: HTTP {status}"),
            http_status: Some(status),
            observed: None,
        })
    }
}

impl StepExecutor for GitlabExecutor {
    fn kind(&self) -> &'static str {
        "gitlab"
    }

    fn supports(&self, action: &str) -> bool {
        self.operations.contains_key(action)
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            match self.operations.get(&request.action) {
                Some(operation) => self.run_operation(*operation, request).await,
                None => Err(StepError::permanent(format!(
                    "no GitLab operation for {}",
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
        let config: GitlabConfig =
            serde_yaml_ng::from_str("token: glpat-x\n").expect("defaults fill the rest");
        assert_eq!(config.api_url, "https://gitlab.com/api/v4");
        assert_eq!(
            config.operations.get("retry_deployment"),
            Some(&GitlabOperation::Retry)
        );
        assert!(GitlabExecutor::new(&config).is_ok());
        let e = GitlabExecutor::new(&GitlabConfig::default())
            .err()
            .unwrap_or_default();
        assert!(e.contains("gitlab.token"), "{e}");
        let with_query = GitlabConfig {
            api_url: "https://gitlab.example/api/v4?x=1".into(),
            ..config.clone()
        };
        assert!(GitlabExecutor::new(&with_query).is_err());
        let debug = format!(
            "{:?}",
            GitlabConfig {
                token: "glpat-secret".into(),
                ..config
            }
        );
        assert!(!debug.contains("glpat-secret"), "{debug}");
    }
}
