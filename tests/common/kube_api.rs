//! A stateful stand-in for the Kubernetes API server's `apps/v1` Deployments
//! and Argo Rollouts' `argoproj.io/v1alpha1` Rollouts, for tests that run
//! whole recoveries: it keeps each workload and its ReplicaSets, applies the
//! patches `kubectl` and the Argo Rollouts plugin send (strategic merge and
//! merge patches as RFC 7386 merges, JSON patches' `add` and `replace`, the
//! Rollout `status` subresource), and plays the controllers: a new pod
//! template gets the next revision, a ReplicaSet of its own and, at once, a
//! completed rollout (Deployment: `observedGeneration`, updated and
//! available replicas; Rollout: `observedGeneration` and phase `Healthy`).
//! Every workload a test asks for exists at revision 2, with the ReplicaSets
//! of revisions 1 and 2; anything else is a `404` Status, as the API server
//! answers.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// `METHOD path?query` of every request, in order.
pub type Requests = Arc<Mutex<Vec<String>>>;

/// What differs between the two workload kinds.
#[derive(Clone, Copy)]
struct Kind {
    plural: &'static str,
    kind: &'static str,
    api_version: &'static str,
    revision: &'static str,
    hash_label: &'static str,
}

const DEPLOYMENT: Kind = Kind {
    plural: "deployments",
    kind: "Deployment",
    api_version: "apps/v1",
    revision: "deployment.kubernetes.io/revision",
    hash_label: "pod-template-hash",
};

const ROLLOUT: Kind = Kind {
    plural: "rollouts",
    kind: "Rollout",
    api_version: "argoproj.io/v1alpha1",
    revision: "rollout.argoproj.io/revision",
    hash_label: "rollouts-pod-template-hash",
};

type Key = (&'static str, String, String);

#[derive(Default)]
struct Cluster {
    workloads: BTreeMap<Key, Value>,
    replica_sets: BTreeMap<(String, String), Vec<Value>>,
}

fn template(name: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": name, "image": image}]}
    })
}

fn replica_set(k: Kind, ns: &str, name: &str, uid: &str, revision: u64, template: &Value) -> Value {
    let hash = format!("h{revision}");
    let mut t = template.clone();
    t["metadata"]["labels"][k.hash_label] = json!(hash);
    json!({
        "metadata": {
            "name": format!("{name}-{hash}"), "namespace": ns, "uid": format!("{uid}-rs{revision}"),
            "labels": {"app": name, k.hash_label: hash},
            "annotations": {k.revision: revision.to_string()},
            "ownerReferences": [{"apiVersion": k.api_version, "kind": k.kind, "name": name,
                                 "uid": uid, "controller": true}]
        },
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name, k.hash_label: hash}},
                 "template": t},
        "status": {"replicas": 0}
    })
}

/// The controller's view of a finished rollout at `generation`.
fn complete(k: Kind, generation: u64, replicas: u64) -> Value {
    if k.plural == "rollouts" {
        json!({"observedGeneration": generation.to_string(), "phase": "Healthy",
               "replicas": replicas, "availableReplicas": replicas, "stableRS": "stable"})
    } else {
        json!({"observedGeneration": generation, "replicas": replicas,
            "updatedReplicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]})
    }
}

impl Cluster {
    fn workload(&mut self, k: Kind, ns: &str, name: &str) -> &mut Value {
        let key: Key = (k.plural, ns.to_string(), name.to_string());
        if !self.workloads.contains_key(&key) {
            let uid = format!("uid-{}-{ns}-{name}", k.plural);
            let old = template(name, &format!("{name}:1.0"));
            let current = template(name, &format!("{name}:1.1"));
            self.replica_sets.insert(
                (ns.to_string(), name.to_string()),
                vec![
                    replica_set(k, ns, name, &uid, 1, &old),
                    replica_set(k, ns, name, &uid, 2, &current),
                ],
            );
            self.workloads.insert(
                key.clone(),
                json!({
                    "kind": k.kind, "apiVersion": k.api_version,
                    "metadata": {"name": name, "namespace": ns, "uid": uid, "generation": 2,
                                 "labels": {"app": name},
                                 "annotations": {k.revision: "2"}},
                    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                             "template": current, "progressDeadlineSeconds": 600},
                    "status": complete(k, 2, 3)
                }),
            );
        }
        self.workloads.get_mut(&key).expect("just inserted")
    }

    /// The controller's work after a change: a new template is the next
    /// revision with its own ReplicaSet; the rollout completes at once.
    fn reconcile(&mut self, k: Kind, ns: &str, name: &str, before: &Value) {
        let rs_key = (ns.to_string(), name.to_string());
        let d = self.workload(k, ns, name);
        if d["spec"] == before["spec"] && d["metadata"] == before["metadata"] {
            // A status-only change (an abort flag): no new generation.
            return;
        }
        let generation = d["metadata"]["generation"].as_u64().unwrap_or(1) + 1;
        d["metadata"]["generation"] = json!(generation);
        let changed = d["spec"]["template"] != before["spec"]["template"];
        let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
        let abort = d["status"]["abort"].clone();
        d["status"] = complete(k, generation, replicas);
        if !abort.is_null() {
            d["status"]["abort"] = abort;
        }
        if !changed {
            return;
        }
        let revision = self.replica_sets[&rs_key]
            .iter()
            .filter_map(|rs| {
                rs["metadata"]["annotations"][k.revision]
                    .as_str()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            + 1;
        let d = self.workload(k, ns, name);
        d["metadata"]["annotations"][k.revision] = json!(revision.to_string());
        let uid = d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let template = d["spec"]["template"].clone();
        let rs = replica_set(k, ns, name, &uid, revision, &template);
        self.replica_sets.entry(rs_key).or_default().push(rs);
    }
}

/// RFC 7386 merge of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in fields {
        if v.is_null() {
            target.as_object_mut().map(|t| t.remove(k));
        } else {
            merge(&mut target[k], v);
        }
    }
}

/// RFC 6902 `add` and `replace` (the operations `kubectl rollout undo` sends).
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("a JSON patch is an array")? {
        let path = op["path"].as_str().ok_or("op without path")?;
        let parts: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, parents) = parts.split_last().ok_or("empty path")?;
        let mut at = &mut *target;
        for p in parents {
            at = at.get_mut(p.as_str()).ok_or(format!("{path}: no {p}"))?;
        }
        match op["op"].as_str() {
            Some("replace") if at.get(last.as_str()).is_none() => {
                return Err(format!("{path}: replace of a missing member"))
            }
            Some("add" | "replace") => at[last.as_str()] = op["value"].clone(),
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}

fn not_found(what: &str) -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
    )
}

fn answer(
    cluster: &mut Cluster,
    method: &str,
    target: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let kind = |group: &str, plural: &str| match (group, plural) {
        ("apps", "deployments") => Some(DEPLOYMENT),
        ("argoproj.io", "rollouts") => Some(ROLLOUT),
        _ => None,
    };
    match (method, parts.as_slice()) {
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "replicasets"]) => {
            // labelSelector=app=<name> selects the workload's ReplicaSets.
            let app = query
                .split('&')
                .find_map(|p| p.strip_prefix("labelSelector="))
                .map(|s| s.replace("%3D", "=").replace("%3d", "="))
                .and_then(|s| s.strip_prefix("app=").map(str::to_string))
                .unwrap_or_default();
            let items = cluster
                .replica_sets
                .get(&(ns.to_string(), app))
                .cloned()
                .unwrap_or_default();
            (
                200,
                json!({"kind": "ReplicaSetList", "apiVersion": "apps/v1", "items": items}),
            )
        }
        ("GET", ["apis", group, _, "namespaces", ns, plural, name]) => match kind(group, plural) {
            Some(k) => (200, cluster.workload(k, ns, name).clone()),
            None => not_found(path),
        },
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "deployments", name, "scale"]) => {
            let d = cluster.workload(DEPLOYMENT, ns, name);
            (
                200,
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"replicas": d["spec"]["replicas"]},
                       "status": {"replicas": d["status"]["replicas"]}}),
            )
        }
        ("PATCH", ["apis", group, _, "namespaces", ns, plural, name, rest @ ..]) => {
            let Some(k) = kind(group, plural) else {
                return not_found(path);
            };
            let Ok(patch) = serde_json::from_str::<Value>(body) else {
                return (
                    400,
                    json!({"kind": "Status", "code": 400, "reason": "BadRequest"}),
                );
            };
            let before = cluster.workload(k, ns, name).clone();
            let d = cluster.workload(k, ns, name);
            match (rest, content_type) {
                ([], "application/json-patch+json") => {
                    if let Err(e) = json_patch(d, &patch) {
                        return (422, json!({"kind": "Status", "code": 422, "message": e}));
                    }
                }
                ([], _) => merge(d, &patch),
                (["scale"], _) if k.plural == "deployments" => {
                    merge(&mut d["spec"], &patch["spec"])
                }
                (["status"], _) if k.plural == "rollouts" => {
                    merge(&mut d["status"], &patch["status"])
                }
                _ => return not_found("subresource"),
            }
            cluster.reconcile(k, ns, name, &before);
            (200, cluster.workload(k, ns, name).clone())
        }
        _ => not_found(path),
    }
}

/// Starts the server; returns its URL and the requests it saw.
pub fn start() -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests: Requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                continue;
            }
            let (mut length, mut content_type) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.trim_end().to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("content-type:") {
                    content_type = v.trim().to_string();
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut words = request_line.split_whitespace();
            let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            seen.lock()
                .expect("lock")
                .push(format!("{method} {target}"));
            let (status, answer) = answer(
                &mut cluster.lock().expect("lock"),
                method,
                target,
                &content_type,
                &String::from_utf8_lossy(&body),
            );
            let text = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, requests)
}
