//! Recovery steps on Argo Rollouts (`argoproj.io/v1alpha1` `rollouts`), with
//! the requests the `kubectl argo rollouts` plugin sends.
//!
//! * `rollback_deployment` — `abort`, then `undo`:
//!   1. abort: a JSON merge patch `{"status":{"abort":true}}` on the
//!      rollout's `status` subresource; when that subresource answers 404
//!      the plugin patches the rollout itself, and so does medic. The
//!      controller then moves traffic and replicas back to the stable
//!      ReplicaSet, but `spec.template` still holds the failed version.
//!   2. undo: read the rollout, list the ReplicaSets its selector matches
//!      and it controls, take the one with the highest
//!      `rollout.argoproj.io/revision` below the rollout's own (or the
//!      `to_revision` parameter's), and replace `/spec/template` with that
//!      ReplicaSet's template minus its `rollouts-pod-template-hash` label
//!      (a JSON patch with that one operation, as the plugin sends; unlike
//!      kubectl's Deployment rollback it leaves annotations alone). A
//!      template that already matches is left alone; a rollout with a
//!      `workloadRef` and no template of its own is refused after the abort.
//!
//!   If the abort succeeds and the undo cannot be done, the step fails with
//!   a detail saying the rollout was aborted.
//! * `retry_deployment` — `retry rollout`: merge patch
//!   `{"status":{"abort":false}}` on the `status` subresource, with the same
//!   404 fallback.
//!
//! Connection, name templates, validation, `Idempotency-Key` and error
//! classification are the Kubernetes executor's
//! ([`crate::executors::kubernetes`]).

use super::kubernetes::{
    rollout_progress, to_revision, undo, wait_for, Api, ConnectionError, History, KubeConnection,
    KubernetesConfig, NameTemplates, RolloutWait, MERGE_PATCH,
};
use super::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use super::BoxFuture;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Actions the `argo_rollouts` executor carries out.
pub const ACTIONS: &[&str] = &["rollback_deployment", "retry_deployment"];

const ROLLOUTS: History = History {
    kind: "rollout",
    revision_annotation: "rollout.argoproj.io/revision",
    hash_label: "rollouts-pod-template-hash",
    keep_annotations: None,
};

/// Carries out recovery steps on Argo Rollouts through the Kubernetes API.
#[derive(Debug)]
pub struct ArgoRolloutsExecutor {
    connection: KubeConnection,
    names: NameTemplates,
    rollout: RolloutWait,
}

impl ArgoRolloutsExecutor {
    /// An executor connected as `config` says.
    pub fn new(config: &KubernetesConfig) -> Result<ArgoRolloutsExecutor, ConnectionError> {
        Ok(ArgoRolloutsExecutor {
            connection: KubeConnection::from_config(config)?,
            names: NameTemplates::from_config(config)?,
            rollout: config.rollout,
        })
    }

    /// Sets `status.abort` through the status subresource, falling back to
    /// the rollout itself when the subresource is not served (as the plugin).
    async fn set_abort(&self, api: &Api<'_>, path: &[&str], abort: bool) -> Result<u16, StepError> {
        let body = json!({"status": {"abort": abort}});
        let what = if abort { "aborting" } else { "retrying" };
        let status_path = [path, &["status"]].concat();
        match api.patch(&status_path, MERGE_PATCH, &body, what).await {
            Err(e) if e.http_status == Some(404) => api.patch(path, MERGE_PATCH, &body, what).await,
            other => other,
        }
    }

    async fn run_step(&self, request: &StepRequest) -> StepResult {
        if !self.supports(&request.action) {
            return Err(StepError::permanent(format!(
                "the argo_rollouts executor cannot carry out {:?}",
                request.action.chars().take(80).collect::<String>()
            )));
        }
        let target = self.names.target(&self.connection, request)?;
        let api = Api {
            connection: &self.connection,
            idempotency_key: &request.idempotency_key,
        };
        let ns = target.namespace.as_str();
        let name = target.name.as_str();
        let path = [
            "apis",
            "argoproj.io",
            "v1alpha1",
            "namespaces",
            ns,
            "rollouts",
            name,
        ];
        if request.action == "retry_deployment" {
            let status = self.set_abort(&api, &path, false).await?;
            return Ok(StepDone {
                detail: format!("retried rollout {ns}/{name}"),
                http_status: Some(status),
                observed: None,
            });
        }
        let to = to_revision(&request.params)?;
        self.set_abort(&api, &path, true).await?;
        let aborted = |mut e: StepError| {
            e.detail = format!("rollout {ns}/{name} aborted, undo failed: {}", e.detail);
            e
        };
        let rollout: Value = api
            .get(&path, "reading the rollout")
            .await
            .map_err(aborted)?;
        let done = undo(&api, &ROLLOUTS, ns, &path, &rollout, to)
            .await
            .map_err(aborted)?;
        let detail = format!("aborted rollout {ns}/{name}; {}", done.detail);
        if !self.rollout.enabled {
            return Ok(StepDone {
                detail,
                http_status: done.http_status,
                observed: None,
            });
        }
        let poll = Duration::from_millis(self.rollout.poll_ms.max(1));
        match wait_for(
            &api,
            &path,
            "rollout",
            rollout_progress,
            poll,
            request.budget(),
        )
        .await
        {
            Ok(complete) => Ok(StepDone {
                detail: format!("{detail}; rollout complete: {complete}"),
                http_status: done.http_status,
                observed: None,
            }),
            Err(mut e) => {
                e.detail = format!("{detail}; {}", e.detail);
                Err(e)
            }
        }
    }
}

impl StepExecutor for ArgoRolloutsExecutor {
    fn kind(&self) -> &'static str {
        "argo_rollouts"
    }

    fn supports(&self, action: &str) -> bool {
        ACTIONS.contains(&action)
    }

    fn check(&self, action: &str, params: &BTreeMap<String, String>) -> Result<(), String> {
        match action {
            "rollback_deployment" => to_revision(params).map(drop).map_err(|e| e.detail),
            _ => Ok(()),
        }
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(self.run_step(request))
    }
}
