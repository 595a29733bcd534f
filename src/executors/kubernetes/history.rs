//! Revision history of Deployments and Argo Rollouts: which ReplicaSet holds
//! the revision to go back to, and the patch that restores its template
//! (`kubectl rollout undo`, `kubectl argo rollouts undo`).

use super::names::shown;
use super::{Api, JSON_PATCH};
use crate::executors::step::{StepDone, StepError, StepResult};
use serde_json::{json, Value};
use std::collections::BTreeMap;

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

pub(crate) const DEPLOYMENTS: History = History {
    kind: "deployment",
    revision_annotation: "deployment.kubernetes.io/revision",
    hash_label: "pod-template-hash",
    keep_annotations: Some(DEPLOYMENT_BOOKKEEPING),
};

/// The revision recorded on an object; 0 without the annotation (as
/// kubectl), `None` when it is not a number.
pub(crate) fn revision_of(object: &Value, annotation: &str) -> Option<i64> {
    match object["metadata"]["annotations"][annotation].as_str() {
        None => Some(0),
        Some(v) => v.trim().parse().ok(),
    }
}

/// The `to_revision` parameter: absent, `previous` or 0 mean the revision
/// before the current one (what `kubectl rollout undo` picks); a positive
/// number names a revision.
pub(crate) fn to_revision(params: &BTreeMap<String, String>) -> Result<Option<i64>, StepError> {
    match params.get("to_revision").map(|v| v.trim()) {
        None | Some("previous") => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(0) => Ok(None),
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(StepError::permanent(format!(
                "to_revision {} is neither `previous` nor a revision number",
                shown(v)
            ))),
        },
    }
}

/// Annotation medic sets on a workload it rolls back: the step's
/// idempotency key, so that another attempt of the same step (after a lost
/// answer or a restart) does not roll back a second time — to the bad
/// revision, which is then the previous one.
pub const ROLLED_BACK_BY: &str = "medic.dev/rolled-back-by";

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
    if metadata["annotations"][ROLLED_BACK_BY].as_str() == Some(api.idempotency_key) {
        return Ok(StepDone {
            detail: format!(
                "{shown_name} was already rolled back by an earlier attempt of this step (revision {})",
                revision_of(object, history.revision_annotation).unwrap_or(0)
            ),
            http_status: None,
            observed: None,
        });
    }
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
            observed: None,
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
        annotations.insert(ROLLED_BACK_BY.into(), json!(api.idempotency_key));
        // JSON patch cannot replace a member that is not there.
        let op = if own.is_some() { "replace" } else { "add" };
        patch.push(json!({"op": op, "path": "/metadata/annotations", "value": annotations}));
    } else if metadata["annotations"].is_object() {
        // RFC 6901: "/" in a member name is written "~1".
        patch.push(json!({"op": "add",
            "path": format!("/metadata/annotations/{}", ROLLED_BACK_BY.replace('/', "~1")),
            "value": api.idempotency_key}));
    } else {
        patch.push(json!({"op": "add", "path": "/metadata/annotations",
            "value": {ROLLED_BACK_BY: api.idempotency_key}}));
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
        observed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_revision_is_the_highest_below_the_current() {
        let v = Value::Null;
        let c = [(3, &v), (1, &v), (4, &v), (2, &v)];
        assert_eq!(pick(&c, 4, None).map(|p| p.0), Some(3));
        assert_eq!(pick(&c, 4, Some(1)).map(|p| p.0), Some(1));
        assert_eq!(pick(&c, 4, Some(9)), None);
        assert_eq!(pick(&[(1, &v)], 1, None), None);
    }

    /// The values the built-in trees and users write for `to_revision`.
    #[test]
    fn to_revision_reads_previous_and_revision_numbers() {
        let of = |v: Option<&str>| {
            let mut params = BTreeMap::new();
            if let Some(v) = v {
                params.insert("to_revision".to_string(), v.to_string());
            }
            to_revision(&params)
        };
        for previous in [None, Some("previous"), Some(" previous "), Some("0")] {
            assert_eq!(of(previous), Ok(None), "{previous:?}");
        }
        assert_eq!(of(Some("7")), Ok(Some(7)));
        for bad in ["-1", "last-good", "1.5", ""] {
            let e = of(Some(bad)).expect_err(bad);
            assert!(!e.retryable);
            assert!(
                e.detail
                    .contains("neither `previous` nor a revision number"),
                "{}",
                e.detail
            );
        }
    }
}
