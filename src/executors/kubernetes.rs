//! Recovery steps on Kubernetes `apps/v1` Deployments, carried out with the
//! same API requests `kubectl` sends.
//!
//! * `restart_service` — `kubectl rollout restart`: a strategic merge patch
//!   setting the pod template's `kubectl.kubernetes.io/restartedAt`
//!   annotation to the current time, so the Deployment rolls out new pods.
//! * `rollback_deployment` — `kubectl rollout undo`: read the Deployment,
//!   list the ReplicaSets its selector matches and it controls (owner
//!   reference with its uid and `controller: true`), take the one with the
//!   highest `deployment.kubernetes.io/revision` below the Deployment's own
//!   (or the revision the `to_revision` parameter names), and JSON-patch the
//!   Deployment's `/spec/template` with that ReplicaSet's template without
//!   its `pod-template-hash` label. As kubectl does, `/metadata/annotations`
//!   is replaced by the ReplicaSet's annotations except the bookkeeping ones
//!   (revision, revision history, desired/max replicas,
//!   last-applied-configuration, rollback-to), which keep the Deployment's
//!   values: the Deployment controller then gives the restored template the
//!   next revision number. A paused Deployment is refused, and a template
//!   that already equals the target revision is left alone.
//! * `scale_resources` — reads the `scale` subresource and merge-patches
//!   `spec.replicas` to `ceil(current × factor)` (parameter `factor`, default
//!   1.5), at least one more when scaling up, at most `max_replicas`
//!   (default 20).
//!
//! The namespace and the object name come from templates over the
//! failure's service and environment (or the step's `component`
//! parameter); the result must be a DNS-1123 label (namespace) or subdomain
//! (name), checked before any request, and is added to the URL as escaped
//! path segments. Every request carries the step's `Idempotency-Key`
//! (ignored by the API server, useful in audit logs and proxies).
//!
//! Errors: connection failures and 409 (conflict), 429 and 5xx are worth
//! another attempt; 401, 403, 404, 422 and invalid input are not.

mod connection;
mod history;
mod names;
mod rollout;

use connection::error_chain;
pub use connection::{ConnectionError, KubeConnection, KubernetesConfig, SERVICE_ACCOUNT_DIR};
pub use history::ROLLED_BACK_BY;
pub(crate) use history::{to_revision, undo, History, DEPLOYMENTS};
use names::shown;
pub use names::{is_dns1123_label, is_dns1123_subdomain, NameTemplates, Target};
pub(crate) use rollout::wait_for;
pub use rollout::{deployment_progress, rollout_progress, Progress, RolloutWait};

use super::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use super::BoxFuture;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Actions the `kubernetes` executor carries out.
pub const ACTIONS: &[&str] = &["restart_service", "rollback_deployment", "scale_resources"];

/// Content type of JSON patches (RFC 6902).
pub(crate) const JSON_PATCH: &str = "application/json-patch+json";
/// Content type of JSON merge patches (RFC 7386).
pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";
/// Content type of Kubernetes strategic merge patches.
pub(crate) const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// Requests to the API server for one step attempt.
pub(crate) struct Api<'a> {
    /// Server, client and token.
    pub connection: &'a KubeConnection,
    /// Sent as `Idempotency-Key` on every request of the attempt.
    pub idempotency_key: &'a str,
}

impl Api<'_> {
    /// Sends one request; the parsed JSON answer on success.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<(&str, String)>,
        what: &str,
    ) -> Result<(u16, Value), StepError> {
        let client = self
            .connection
            .client()
            .await
            .map_err(|e| StepError::permanent(format!("{what}: {e}")))?;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut request = http::Request::builder()
            .method(method.as_str())
            .uri(target)
            .header("Accept", "application/json")
            .header("Idempotency-Key", self.idempotency_key);
        let payload = match body {
            Some((content_type, body)) => {
                request = request.header("Content-Type", content_type);
                body.into_bytes()
            }
            None => Vec::new(),
        };
        let request = request
            .body(kube::client::Body::from(payload))
            .map_err(|e| StepError::permanent(format!("{what}: {e}")))?;
        let response = client.send(request).await.map_err(|e| {
            let detail = format!("{what}: request failed: {}", error_chain(&e));
            match e {
                // Credentials that cannot be had (an exec plugin missing or
                // refusing) do not come back by trying again at once.
                kube::Error::Auth(_) => StepError::permanent(detail),
                _ => StepError::transient(detail),
            }
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| StepError::transient(format!("{what}: reading the answer: {e}")))?;
        let text = String::from_utf8_lossy(&bytes);
        if !(200..300).contains(&status) {
            // The API server explains itself in a Status object's message.
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v["message"]
                        .as_str()
                        .map(|m| m.chars().take(300).collect::<String>())
                })
                .unwrap_or_default();
            let detail = if message.is_empty() {
                format!("{what}: HTTP {status}")
            } else {
                format!("{what}: HTTP {status}: {message}")
            };
            let mut error = StepError::from_status(status, detail);
            if status == 409 {
                // Conflict: the object changed under us; read it again.
                error.retryable = true;
            }
            return Err(error);
        }
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| StepError::permanent(format!("{what}: the answer is not JSON: {e}")))?
        };
        Ok((status, value))
    }

    /// GET of the JSON at `segments`.
    pub async fn get(&self, segments: &[&str], what: &str) -> Result<Value, StepError> {
        let url = self.connection.url(segments);
        Ok(self.send(reqwest::Method::GET, url, None, what).await?.1)
    }

    /// PATCH of the object at `segments` with `body` of `content_type`.
    pub async fn patch(
        &self,
        segments: &[&str],
        content_type: &str,
        body: &Value,
        what: &str,
    ) -> Result<u16, StepError> {
        let url = self.connection.url(segments);
        let body = Some((content_type, body.to_string()));
        Ok(self.send(reqwest::Method::PATCH, url, body, what).await?.0)
    }
}

/// Carries out recovery steps on Deployments through the Kubernetes API.
#[derive(Debug)]
pub struct KubernetesExecutor {
    connection: KubeConnection,
    names: NameTemplates,
    rollout: RolloutWait,
}

impl KubernetesExecutor {
    /// An executor connected as `config` says.
    pub fn new(config: &KubernetesConfig) -> Result<KubernetesExecutor, ConnectionError> {
        Ok(KubernetesExecutor {
            connection: KubeConnection::from_config(config)?,
            names: NameTemplates::from_config(config)?,
            rollout: config.rollout,
        })
    }

    /// Waits for the Deployment at `path` to complete its rollout, when
    /// configured to; `done` is what the step did, for the detail.
    async fn settled(
        &self,
        api: &Api<'_>,
        path: &[&str],
        request: &StepRequest,
        done: StepDone,
    ) -> StepResult {
        if !self.rollout.enabled {
            return Ok(done);
        }
        let poll = Duration::from_millis(self.rollout.poll_ms.max(1));
        match wait_for(
            api,
            path,
            "deployment",
            rollout::deployment_progress,
            poll,
            request.budget(),
        )
        .await
        {
            Ok(complete) => Ok(StepDone {
                detail: format!("{}; rollout complete: {complete}", done.detail),
                http_status: done.http_status,
                observed: None,
            }),
            Err(mut e) => {
                e.detail = format!("{}; {}", done.detail, e.detail);
                Err(e)
            }
        }
    }

    async fn run_step(&self, request: &StepRequest) -> StepResult {
        if !self.supports(&request.action) {
            return Err(StepError::permanent(format!(
                "the kubernetes executor cannot carry out {}",
                shown(&request.action)
            )));
        }
        let target = self.names.target(&self.connection, request)?;
        let api = Api {
            connection: &self.connection,
            idempotency_key: &request.idempotency_key,
        };
        let ns = target.namespace.as_str();
        let name = target.name.as_str();
        let path = ["apis", "apps", "v1", "namespaces", ns, "deployments", name];
        match request.action.as_str() {
            "restart_service" => {
                let now = time::OffsetDateTime::now_utc();
                let now = now.replace_nanosecond(0).unwrap_or(now);
                let at = now
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(|e| StepError::permanent(format!("formatting the time: {e}")))?;
                let body = json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": at
                }}}}});
                let status = api
                    .patch(&path, STRATEGIC_MERGE_PATCH, &body, "restarting")
                    .await?;
                let done = StepDone {
                    detail: format!("restarted deployment {ns}/{name} (restartedAt {at})"),
                    http_status: Some(status),
                    observed: None,
                };
                self.settled(&api, &path, request, done).await
            }
            "rollback_deployment" => {
                let to = to_revision(&request.params)?;
                let deployment = api.get(&path, "reading the deployment").await?;
                if deployment["spec"]["paused"].as_bool() == Some(true) {
                    return Err(StepError::permanent(format!(
                        "deployment {ns}/{name} is paused: resume it before rolling back"
                    )));
                }
                let done = undo(&api, &DEPLOYMENTS, ns, &path, &deployment, to).await?;
                self.settled(&api, &path, request, done).await
            }
            _ => {
                let plan = ScalePlan::from_params(&request.params)?;
                let scale_path = [&path[..], &["scale"]].concat();
                let scale = api.get(&scale_path, "reading the scale").await?;
                let current = scale["spec"]["replicas"].as_u64().unwrap_or(0);
                let replicas = plan.replicas(current).map_err(|why| {
                    StepError::permanent(format!("deployment {ns}/{name}: {why}"))
                })?;
                let body = json!({"spec": {"replicas": replicas}});
                let status = api
                    .patch(&scale_path, MERGE_PATCH, &body, "scaling")
                    .await?;
                Ok(StepDone {
                    detail: format!(
                        "scaled deployment {ns}/{name} from {current} to {replicas} replicas (cap {})",
                        plan.max_replicas
                    ),
                    http_status: Some(status),
                    observed: None,
                })
            }
        }
    }
}

/// How `scale_resources` changes the replica count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalePlan {
    /// Multiplier of the current count (parameter `factor`, default 1.5).
    pub factor: f64,
    /// Upper bound (parameter `max_replicas`, default 20).
    pub max_replicas: u64,
}

impl ScalePlan {
    /// The plan from step parameters; a permanent error for values that are
    /// not numbers in range (factor in (0, 100], max_replicas in 1..=10000).
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<ScalePlan, StepError> {
        let factor = match params.get("factor") {
            None => 1.5,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f > 0.0 && *f <= 100.0)
                .ok_or_else(|| {
                    StepError::permanent(format!("factor {} is not a number in (0, 100]", shown(v)))
                })?,
        };
        let max_replicas = match params.get("max_replicas") {
            None => 20,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|m| (1..=10_000).contains(m))
                .ok_or_else(|| {
                    StepError::permanent(format!(
                        "max_replicas {} is not a whole number in 1..=10000",
                        shown(v)
                    ))
                })?,
        };
        Ok(ScalePlan {
            factor,
            max_replicas,
        })
    }

    /// The new count from `current`: `ceil(current × factor)`, at least
    /// `current + 1` when scaling up, at most the cap; `Err` when that
    /// changes nothing (e.g. already at the cap).
    pub fn replicas(&self, current: u64) -> Result<u64, String> {
        let up = self.factor > 1.0;
        if up && current >= self.max_replicas {
            return Err(format!(
                "already at {current} replicas, the cap is {}",
                self.max_replicas
            ));
        }
        let mut replicas = (current as f64 * self.factor).ceil() as u64;
        if up {
            replicas = replicas.max(current + 1);
        }
        let replicas = replicas.min(self.max_replicas).max(1);
        if replicas == current {
            return Err(format!(
                "{current} replicas × {} leaves the count unchanged",
                self.factor
            ));
        }
        Ok(replicas)
    }
}

impl StepExecutor for KubernetesExecutor {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn supports(&self, action: &str) -> bool {
        ACTIONS.contains(&action)
    }

    fn check(&self, action: &str, params: &BTreeMap<String, String>) -> Result<(), String> {
        match action {
            "rollback_deployment" => to_revision(params).map(drop).map_err(|e| e.detail),
            "scale_resources" => ScalePlan::from_params(params)
                .map(drop)
                .map_err(|e| e.detail),
            _ => Ok(()),
        }
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(self.run_step(request))
    }
}

#[cfg(test)]
mod tests {
    use super::names::render;
    use super::*;

    #[test]
    fn dns1123_names() {
        for good in ["checkout", "a", "a-b", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in [
            "",
            "Checkout_Svc",
            "a/b",
            "-a",
            "a-",
            "a.b",
            "..",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1123_subdomain("checkout.v2"));
        for bad in [".", "..", "a..b", "a/b", "A.b", "a.", "%2e%2e"] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn templates_fill_slots_once_and_refuse_unknown_ones() {
        let value = |slot: &str| match slot {
            "service" => Some("{environment}".to_string()),
            "environment" => Some("prod".to_string()),
            _ => None,
        };
        assert_eq!(
            render("{service}-{environment}", &value).as_deref(),
            Ok("{environment}-prod")
        );
        assert!(render("{team}", &value).is_err());
        assert!(render("{service", &value).is_err());
        assert!(render("{context_namespace}", &value).is_err());
        assert!(NameTemplates::new("{environment}", "{service}-api").is_ok());
        assert!(NameTemplates::new("{env}", "{service}").is_err());
    }

    #[test]
    fn scale_math() {
        let plan = |factor: f64, max_replicas: u64| ScalePlan {
            factor,
            max_replicas,
        };
        assert_eq!(plan(1.5, 20).replicas(3), Ok(5));
        assert_eq!(plan(1.5, 20).replicas(1), Ok(2));
        assert_eq!(plan(1.1, 20).replicas(2), Ok(3));
        assert_eq!(plan(1.5, 20).replicas(0), Ok(1));
        assert_eq!(plan(2.0, 10).replicas(8), Ok(10));
        assert!(plan(1.5, 10).replicas(10).is_err());
        assert!(plan(1.5, 10).replicas(12).is_err());
        assert_eq!(plan(0.5, 20).replicas(4), Ok(2));
        assert!(plan(1.0, 20).replicas(4).is_err());
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(ScalePlan::from_params(&params(&[])), Ok(plan(1.5, 20)));
        for bad in [
            ("factor", "NaN"),
            ("factor", "-1"),
            ("factor", "x"),
            ("max_replicas", "0"),
        ] {
            assert!(ScalePlan::from_params(&params(&[bad])).is_err(), "{bad:?}");
        }
    }
}
