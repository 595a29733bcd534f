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
mod kubeconfig;
mod names;

pub use connection::{ConnectionError, KubeConnection, KubernetesConfig, SERVICE_ACCOUNT_DIR};
use names::shown;
pub use names::{is_dns1123_label, is_dns1123_subdomain, NameTemplates, Target};

use super::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use super::BoxFuture;
use serde_json::{json, Value};
use std::collections::BTreeMap;

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
        let mut builder = self
            .connection
            .request(method, url)
            .header("Idempotency-Key", self.idempotency_key);
        if let Some((content_type, body)) = body {
            builder = builder.header("Content-Type", content_type).body(body);
        }
        let response = builder.send().await.map_err(|e| {
            let builder_error = e.is_builder();
            let e = e.without_url();
            let mut detail = format!("{what}: request failed: {e}");
            // reqwest's message is generic; the cause (refused, TLS, ...) is in the chain.
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                detail.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            if builder_error {
                StepError::permanent(detail)
            } else {
                StepError::transient(detail)
            }
        })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| StepError::transient(format!("{what}: reading the answer: {e}")))?;
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

/// How revisions of one kind of workload are recorded.
pub(crate) struct History {
    /// `deployment` or `rollout`, for messages.
    pub kind: &'static str,
    /// Annotation holding the revision number, on the workload and its ReplicaSets.
    pub revision_annotation: &'static str,
    /// Label the controller adds to each ReplicaSet's template.
    pub hash_label: &'static str,
    /// Workload annotations kept when restoring (kubectl's Deployment
    /// rollback); `None`: annotations are not touched (Argo Rollouts' undo).
    pub keep_annotations: Option<&'static [&'static str]>,
}

/// Annotations `kubectl rollout undo` keeps from the Deployment.
const DEPLOYMENT_BOOKKEEPING: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

const DEPLOYMENTS: History = History {
    kind: "deployment",
    revision_annotation: "deployment.kubernetes.io/revision",
    hash_label: "pod-template-hash",
    keep_annotations: Some(DEPLOYMENT_BOOKKEEPING),
};

/// The revision recorded on an object; 0 without the annotation (as
/// kubectl), `None` when it is not a number.
fn revision_of(object: &Value, annotation: &str) -> Option<i64> {
    match object["metadata"]["annotations"][annotation].as_str() {
        None => Some(0),
        Some(v) => v.trim().parse().ok(),
    }
}

/// The `to_revision` parameter: absent or 0 means the previous revision.
pub(crate) fn to_revision(request: &StepRequest) -> Result<Option<i64>, StepError> {
    match request.params.get("to_revision") {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(0) => Ok(None),
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(StepError::permanent(format!(
                "to_revision {} is not a revision number",
                shown(v)
            ))),
        },
    }
}

/// Picks the ReplicaSet to restore among `candidates` (revision, object):
/// revision `to` when given, else the highest below `current`.
fn pick<'v>(
    candidates: &[(i64, &'v Value)],
    current: i64,
    to: Option<i64>,
) -> Option<(i64, &'v Value)> {
    match to {
        Some(to) => candidates.iter().find(|(r, _)| *r == to).copied(),
        None => candidates
            .iter()
            .filter(|(r, _)| *r < current)
            .max_by_key(|(r, _)| *r)
            .copied(),
    }
}

/// The pod template without the controller's hash label.
fn without_hash(template: &Value, label: &str) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(label);
    }
    template
}

/// `kubectl rollout undo` for a workload already read (`object`) at
/// `object_path`: finds the ReplicaSet of the target revision in namespace
/// `namespace` and patches the workload's template back to it.
pub(crate) async fn undo(
    api: &Api<'_>,
    history: &History,
    namespace: &str,
    object_path: &[&str],
    object: &Value,
    to: Option<i64>,
) -> StepResult {
    let metadata = &object["metadata"];
    let name = metadata["name"].as_str().unwrap_or_default();
    let shown_name = format!("{} {namespace}/{name}", history.kind);
    let Some(uid) = metadata["uid"].as_str().filter(|u| !u.is_empty()) else {
        return Err(StepError::permanent(format!("{shown_name} has no uid")));
    };
    let Some(template) = object["spec"].get("template").filter(|t| t.is_object()) else {
        return Err(StepError::permanent(format!(
            "{shown_name} has no pod template (a workloadRef is rolled back on its own)"
        )));
    };

    let labels: BTreeMap<&str, &str> = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut url =
        api.connection
            .url(&["apis", "apps", "v1", "namespaces", namespace, "replicasets"]);
    if !selector.is_empty() {
        url.query_pairs_mut()
            .append_pair("labelSelector", &selector);
    }
    let list = api
        .send(reqwest::Method::GET, url, None, "listing replica sets")
        .await?
        .1;
    let owned = |rs: &&Value| {
        rs["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| {
                refs.iter().any(|r| {
                    r["uid"].as_str() == Some(uid) && r["controller"].as_bool() == Some(true)
                })
            })
    };
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let candidates: Vec<(i64, &Value)> = items
        .iter()
        .filter(owned)
        .filter_map(|rs| Some((revision_of(rs, history.revision_annotation)?, rs)))
        .collect();
    let highest = candidates.iter().map(|(r, _)| *r).max();
    let current = revision_of(object, history.revision_annotation)
        .filter(|r| *r > 0)
        .or(highest)
        .unwrap_or(0);

    let Some((revision, rs)) = pick(&candidates, current, to) else {
        return Err(StepError::permanent(match to {
            Some(to) => format!("{shown_name} has no revision {to} in its history"),
            None => format!(
                "{shown_name} has no previous revision to roll back to (current revision {current}, {} replica set(s))",
                candidates.len()
            ),
        }));
    };
    let Some(rs_template) = rs["spec"].get("template").filter(|t| t.is_object()) else {
        return Err(StepError::permanent(format!(
            "the replica set of revision {revision} has no pod template"
        )));
    };
    let restored = without_hash(rs_template, history.hash_label);
    if restored == without_hash(template, history.hash_label) {
        return Ok(StepDone {
            detail: format!(
                "skipped rollback of {shown_name}: its template already matches revision {revision}"
            ),
            http_status: None,
        });
    }

    let mut patch = vec![json!({"op": "replace", "path": "/spec/template", "value": restored})];
    if let Some(keep) = history.keep_annotations {
        let mut annotations = serde_json::Map::new();
        let own = metadata["annotations"].as_object();
        for key in keep {
            if let Some(v) = own.and_then(|a| a.get(*key)) {
                annotations.insert((*key).to_string(), v.clone());
            }
        }
        if let Some(theirs) = rs["metadata"]["annotations"].as_object() {
            for (k, v) in theirs {
                if !keep.contains(&k.as_str()) {
                    annotations.insert(k.clone(), v.clone());
                }
            }
        }
        // JSON patch cannot replace a member that is not there.
        let op = if own.is_some() { "replace" } else { "add" };
        patch.push(json!({"op": op, "path": "/metadata/annotations", "value": annotations}));
    }
    let status = api
        .patch(
            object_path,
            JSON_PATCH,
            &Value::Array(patch),
            "restoring the template",
        )
        .await?;
    Ok(StepDone {
        detail: format!("rolled back {shown_name} from revision {current} to revision {revision}"),
        http_status: Some(status),
    })
}

/// Carries out recovery steps on Deployments through the Kubernetes API.
#[derive(Debug)]
pub struct KubernetesExecutor {
    connection: KubeConnection,
    names: NameTemplates,
}

impl KubernetesExecutor {
    /// An executor connected as `config` says.
    pub fn new(config: &KubernetesConfig) -> Result<KubernetesExecutor, ConnectionError> {
        Ok(Self::with_connection(
            KubeConnection::from_config(config)?,
            NameTemplates::from_config(config)?,
        ))
    }

    /// An executor over an existing connection.
    pub fn with_connection(connection: KubeConnection, names: NameTemplates) -> KubernetesExecutor {
        KubernetesExecutor { connection, names }
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
                Ok(StepDone {
                    detail: format!("restarted deployment {ns}/{name} (restartedAt {at})"),
                    http_status: Some(status),
                })
            }
            "rollback_deployment" => {
                let to = to_revision(request)?;
                let deployment = api.get(&path, "reading the deployment").await?;
                if deployment["spec"]["paused"].as_bool() == Some(true) {
                    return Err(StepError::permanent(format!(
                        "deployment {ns}/{name} is paused: resume it before rolling back"
                    )));
                }
                undo(&api, &DEPLOYMENTS, ns, &path, &deployment, to).await
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

    #[test]
    fn previous_revision_is_the_highest_below_the_current() {
        let v = Value::Null;
        let c = [(3, &v), (1, &v), (4, &v), (2, &v)];
        assert_eq!(pick(&c, 4, None).map(|p| p.0), Some(3));
        assert_eq!(pick(&c, 4, Some(1)).map(|p| p.0), Some(1));
        assert_eq!(pick(&c, 4, Some(9)), None);
        assert_eq!(pick(&[(1, &v)], 1, None), None);
    }
}
