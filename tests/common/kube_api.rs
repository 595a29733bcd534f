//! A stateful stand-in for the Kubernetes API server's `apps/v1` Deployments,
//! for tests that run whole recoveries: it keeps each Deployment and its
//! ReplicaSets, applies the patches `kubectl` sends (strategic merge and
//! merge patches as RFC 7386 merges, JSON patches' `add` and `replace`), and
//! plays the Deployment controller: a new pod template gets the next
//! revision, a ReplicaSet of its own and, at once, a completed rollout
//! (`observedGeneration`, updated and available replicas). Every Deployment
//! a test asks for exists at revision 2, with the ReplicaSets of revisions 1
//! and 2; anything else is a `404` Status, as the API server answers.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// `METHOD path?query` of every request, in order.
pub type Requests = Arc<Mutex<Vec<String>>>;

#[derive(Default)]
struct Cluster {
    deployments: BTreeMap<(String, String), Value>,
    replica_sets: BTreeMap<(String, String), Vec<Value>>,
}

fn template(name: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": name, "image": image}]}
    })
}

fn replica_set(ns: &str, name: &str, uid: &str, revision: u64, template: &Value) -> Value {
    let hash = format!("h{revision}");
    let mut t = template.clone();
    t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    json!({
        "metadata": {
            "name": format!("{name}-{hash}"), "namespace": ns, "uid": format!("{uid}-rs{revision}"),
            "labels": {"app": name, "pod-template-hash": hash},
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                 "uid": uid, "controller": true}]
        },
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name, "pod-template-hash": hash}},
                 "template": t},
        "status": {"replicas": 0}
    })
}

impl Cluster {
    fn deployment(&mut self, ns: &str, name: &str) -> &mut Value {
        let key = (ns.to_string(), name.to_string());
        if !self.deployments.contains_key(&key) {
            let uid = format!("uid-{ns}-{name}");
            let old = template(name, &format!("{name}:1.0"));
            let current = template(name, &format!("{name}:1.1"));
            self.replica_sets.insert(
                key.clone(),
                vec![
                    replica_set(ns, name, &uid, 1, &old),
                    replica_set(ns, name, &uid, 2, &current),
                ],
            );
            self.deployments.insert(
                key.clone(),
                json!({
                    "kind": "Deployment", "apiVersion": "apps/v1",
                    "metadata": {"name": name, "namespace": ns, "uid": uid, "generation": 2,
                                 "labels": {"app": name},
                                 "annotations": {"deployment.kubernetes.io/revision": "2"}},
                    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                             "template": current, "progressDeadlineSeconds": 600},
                    "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                               "availableReplicas": 3, "readyReplicas": 3}
                }),
            );
        }
        self.deployments.get_mut(&key).expect("just inserted")
    }

    /// The controller's work after a change: a new template is the next
    /// revision with its own ReplicaSet; the rollout completes at once.
    fn reconcile(&mut self, ns: &str, name: &str, before: &Value) {
        let key = (ns.to_string(), name.to_string());
        let d = self.deployment(ns, name);
        let generation = d["metadata"]["generation"].as_u64().unwrap_or(1) + 1;
        d["metadata"]["generation"] = json!(generation);
        let changed = d["spec"]["template"] != before["spec"]["template"];
        let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
        d["status"] = json!({"observedGeneration": generation, "replicas": replicas,
            "updatedReplicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]});
        if !changed {
            return;
        }
        let revision = self.replica_sets[&key]
            .iter()
            .filter_map(|rs| {
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            + 1;
        let d = self.deployment(ns, name);
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
            json!(revision.to_string());
        let uid = d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let template = d["spec"]["template"].clone();
        let rs = replica_set(ns, name, &uid, revision, &template);
        self.replica_sets.entry(key).or_default().push(rs);
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
    match (method, parts.as_slice()) {
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "deployments", name]) => {
            (200, cluster.deployment(ns, name).clone())
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "deployments", name, "scale"]) => {
            let d = cluster.deployment(ns, name);
            (
                200,
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"replicas": d["spec"]["replicas"]},
                       "status": {"replicas": d["status"]["replicas"]}}),
            )
        }
        ("PATCH", ["apis", "apps", "v1", "namespaces", ns, "deployments", name, rest @ ..]) => {
            let Ok(patch) = serde_json::from_str::<Value>(body) else {
                return (
                    400,
                    json!({"kind": "Status", "code": 400, "reason": "BadRequest"}),
                );
            };
            let before = cluster.deployment(ns, name).clone();
            let d = cluster.deployment(ns, name);
            match (rest, content_type) {
                ([], "application/json-patch+json") => {
                    if let Err(e) = json_patch(d, &patch) {
                        return (422, json!({"kind": "Status", "code": 422, "message": e}));
                    }
                }
                ([], _) => merge(d, &patch),
                (["scale"], _) => merge(&mut d["spec"], &patch["spec"]),
                _ => return not_found("subresource"),
            }
            cluster.reconcile(ns, name, &before);
            (200, cluster.deployment(ns, name).clone())
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "replicasets"]) => {
            // labelSelector=app=<name> selects the Deployment's ReplicaSets.
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
