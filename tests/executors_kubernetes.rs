//! The Kubernetes and Argo Rollouts executors against a local server that
//! answers like an API server: each test checks every request's method,
//! path and query, content type, bearer token and body.

use medic::executors::argo_rollouts::ArgoRolloutsExecutor;
use medic::executors::kubernetes::{
    ConnectionError, KubeConnection, KubernetesConfig, KubernetesExecutor, NameTemplates,
    RolloutWait,
};
use medic::executors::step::{StepError, StepExecutor, StepRequest, StepResult};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A test CA (self-signed, EC P-256), only parsed, never trusted for a connection.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUWeTwNUluB4gWuCNedITt7xbX0zYwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNbWVkaWMtdGVzdC1jYTAgFw0yNjExMjkwNTU4MzRaGA8yMTI2
MTEwNTA1NTgzNFowGDEWMBQGA1UEAwwNbWVkaWMtdGVzdC1jYTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABMK1zQnXgQg2/ts2vXBqtyJckUkwHogXGvZrjuFxDIod
OPxogY8R8UWEU3N+0o/vuHU3RQJJIH09TSLAOSljYEyjUzBRMB0GA1UdDgQWBBTx
Nclsz4E2koAS2Qv7yaIe4AQ+hTAfBgNVHSMEGDAWgBTxNclsz4E2koAS2Qv7yaIe
4AQ+hTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIBqISKNkD38q
jUWaO9B8QWyKjGLShOYENzpUU+n9+o8AAiEAwK8oLnz9rua+LwYxvTK2IaPLCVIA
NDuyplkp+Z6L5Jg=
-----END CERTIFICATE-----
";

const DEPLOYMENT_UID: &str = "5f3a1c2e-0d4b-4c1e-9a7f-1b2c3d4e5f60";
const ROLLOUT_UID: &str = "9e8d7c6b-5a49-4837-8261-504f3e2d1c0b";

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }

    /// Method, path and query, bearer token, idempotency key and (for
    /// requests with a body) content type.
    fn check(&self, method: &str, target: &str, token: &str, content_type: Option<&str>) {
        assert_eq!(
            (self.method.as_str(), self.target.as_str()),
            (method, target)
        );
        assert_eq!(
            self.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(self.header("idempotency-key"), Some("rec-1/rollback"));
        assert_eq!(self.header("content-type"), content_type, "{target}");
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves the scripted `(status, JSON body)` answers in order, one per
/// connection, and records each request.
fn api_server(answers: Vec<(u16, Value)>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let log: Log = Arc::default();
    let record = log.clone();
    std::thread::spawn(move || {
        for (stream, (status, answer)) in listener.incoming().zip(answers) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let target = parts.next().unwrap_or_default().to_string();
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    let (name, value) = (name.trim().to_string(), value.trim().to_string());
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.parse().unwrap_or(0);
                    }
                    headers.push((name, value));
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            record.lock().expect("lock").push(Seen {
                method,
                target,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let body = body_text(&answer);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, log)
}

fn body_text(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().expect("lock").clone()
}

fn request(action: &str, service: &str, params: &[(&str, &str)]) -> StepRequest {
    StepRequest {
        idempotency_key: "rec-1/rollback".into(),
        recovery_id: "rec-1".into(),
        deployment_key: format!("{service}/prod"),
        service: service.into(),
        environment: "prod".into(),
        action: action.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ci: None,
        context: None,
        timeout: Duration::from_secs(5),
    }
}

fn config(url: &str) -> KubernetesConfig {
    KubernetesConfig {
        api_server: Some(url.into()),
        token: Some("tok".into()),
        rollout: RolloutWait {
            enabled: true,
            poll_ms: 10,
        },
        ..KubernetesConfig::default()
    }
}

fn kube(url: &str) -> KubernetesExecutor {
    KubernetesExecutor::new(&config(url)).expect("executor")
}

fn argo(url: &str) -> ArgoRolloutsExecutor {
    ArgoRolloutsExecutor::new(&config(url)).expect("executor")
}

async fn run(executor: &dyn StepExecutor, request: &StepRequest) -> StepResult {
    tokio::time::timeout(Duration::from_secs(5), executor.run(request))
        .await
        .expect("answered within 5 s")
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A pod template as the API server returns it.
fn template(image: &str, hash: Option<(&str, &str)>) -> Value {
    let mut labels = json!({"app": "checkout"});
    if let Some((label, value)) = hash {
        labels[label] = json!(value);
    }
    json!({
        "metadata": {"creationTimestamp": null, "labels": labels},
        "spec": {
            "containers": [{"name": "checkout", "image": image,
                            "resources": {}, "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler"
        }
    })
}

fn deployment(revision: u32, image: &str) -> Value {
    json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {
            "name": "checkout", "namespace": "prod", "uid": DEPLOYMENT_UID,
            "resourceVersion": "81234", "generation": revision,
            "labels": {"app": "checkout"},
            "annotations": {
                "deployment.kubernetes.io/revision": revision.to_string(),
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\"}"
            }
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": template(image, None),
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600
        },
        "status": {"observedGeneration": revision, "replicas": 3, "updatedReplicas": 3,
                   "availableReplicas": 3}
    })
}

/// `d` while the controller rolls out generation `generation`: observed,
/// `updated` of its replicas on the new template, `available` of those serving,
/// `total` pods in all.
fn rolling(mut d: Value, generation: u32, updated: u32, available: u32, total: u32) -> Value {
    d["metadata"]["generation"] = json!(generation);
    d["status"] = json!({"observedGeneration": generation, "replicas": total,
        "updatedReplicas": updated, "availableReplicas": available,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]});
    d
}

/// A ReplicaSet of `owner` at `revision`, with its own annotations.
fn replica_set(
    owner: (&str, &str, &str),
    revision: u32,
    image: &str,
    hash: (&str, &str),
    revision_annotation: &str,
    extra: &[(&str, &str)],
) -> Value {
    let (kind, api_version, uid) = owner;
    let mut annotations = json!({
        revision_annotation: revision.to_string(),
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4"
    });
    for (k, v) in extra {
        annotations[*k] = json!(v);
    }
    json!({
        "metadata": {
            "name": format!("checkout-{}", hash.1), "namespace": "prod",
            "uid": format!("rs-{revision}"), "resourceVersion": "8100",
            "labels": {"app": "checkout", hash.0: hash.1},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": "checkout",
                                 "uid": uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "checkout", hash.0: hash.1}},
            "template": template(image, Some(hash))
        },
        "status": {"replicas": 0, "observedGeneration": 2}
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"kind": "ReplicaSetList", "apiVersion": "apps/v1",
           "metadata": {"resourceVersion": "81300"}, "items": items})
}

const DEPLOY: (&str, &str, &str) = ("Deployment", "apps/v1", DEPLOYMENT_UID);
const HASH: &str = "pod-template-hash";

#[tokio::test]
async fn rollout_restart_sets_the_restarted_at_annotation() {
    let at_rest = deployment(3, "checkout:1.3");
    let (url, log) = api_server(vec![
        (200, at_rest.clone()),
        // What `kubectl rollout status` waits through: new pods starting,
        // old ones terminating, then every replica updated and available.
        (200, rolling(at_rest.clone(), 4, 1, 3, 4)),
        (200, rolling(at_rest.clone(), 4, 3, 2, 4)),
        (200, rolling(at_rest, 4, 3, 3, 3)),
    ]);
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let done = run(&kube(&url), &request("restart_service", "checkout", &[]))
        .await
        .expect("restarted");
    assert_eq!(done.http_status, Some(200));
    assert!(done.detail.contains("prod/checkout"), "{}", done.detail);
    assert!(
        done.detail
            .ends_with("rollout complete: 3 of 3 replicas updated and available"),
        "{}",
        done.detail
    );

    let seen = seen(&log);
    assert_eq!(seen.len(), 4);
    for read in &seen[1..] {
        read.check(
            "GET",
            "/apis/apps/v1/namespaces/prod/deployments/checkout",
            "tok",
            None,
        );
    }
    seen[0].check(
        "PATCH",
        "/apis/apps/v1/namespaces/prod/deployments/checkout",
        "tok",
        Some("application/strategic-merge-patch+json"),
    );
    let body = seen[0].json();
    let annotations = &body["spec"]["template"]["metadata"]["annotations"];
    let at = annotations["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .expect("restartedAt");
    assert_eq!(annotations.as_object().map(|a| a.len()), Some(1));
    assert_eq!(body.as_object().map(|b| b.len()), Some(1), "{body}");
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert!(
        at >= before && at <= time::OffsetDateTime::now_utc(),
        "{at}"
    );
}

#[tokio::test]
async fn undo_restores_the_previous_revision_without_the_hash_label() {
    let stranger = ("Deployment", "apps/v1", "0000-other");
    let rss = vec![
        replica_set(
            DEPLOY,
            1,
            "checkout:1.1",
            (HASH, "6d4f8b9c7a"),
            "deployment.kubernetes.io/revision",
            &[],
        ),
        replica_set(
            DEPLOY,
            3,
            "checkout:1.3",
            (HASH, "7b5c9d8e6f"),
            "deployment.kubernetes.io/revision",
            &[],
        ),
        replica_set(
            DEPLOY,
            2,
            "checkout:1.2",
            (HASH, "5c7d9f6b8d"),
            "deployment.kubernetes.io/revision",
            &[
                ("team", "payments"),
                ("deployment.kubernetes.io/revision-history", "0"),
            ],
        ),
        // Same labels, another owner: never a candidate.
        replica_set(
            stranger,
            2,
            "evil:1",
            (HASH, "0000000000"),
            "deployment.kubernetes.io/revision",
            &[],
        ),
    ];
    let (url, log) = api_server(vec![
        (200, deployment(3, "checkout:1.3")),
        (200, list(rss)),
        (200, rolling(deployment(3, "checkout:1.2"), 4, 0, 3, 3)),
        (200, deployment(4, "checkout:1.2")),
    ]);
    let done = run(
        &kube(&url),
        &request("rollback_deployment", "checkout", &[]),
    )
    .await
    .expect("rolled back");
    assert!(
        done.detail.contains("from revision 3 to revision 2"),
        "{}",
        done.detail
    );

    let seen = seen(&log);
    assert_eq!(seen.len(), 4, "read, list, patch, read until complete");
    seen[0].check(
        "GET",
        "/apis/apps/v1/namespaces/prod/deployments/checkout",
        "tok",
        None,
    );
    seen[1].check(
        "GET",
        "/apis/apps/v1/namespaces/prod/replicasets?labelSelector=app%3Dcheckout",
        "tok",
        None,
    );
    seen[2].check(
        "PATCH",
        "/apis/apps/v1/namespaces/prod/deployments/checkout",
        "tok",
        Some("application/json-patch+json"),
    );
    let restored = template("checkout:1.2", None);
    assert_eq!(
        seen[2].json(),
        json!([
            {"op": "replace", "path": "/spec/template", "value": restored},
            {"op": "replace", "path": "/metadata/annotations", "value": {
                // The deployment's bookkeeping stays; the revision's own annotations come back.
                "deployment.kubernetes.io/revision": "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\"}",
                "team": "payments",
                // Another attempt of this step will not roll back again.
                "medic.dev/rolled-back-by": "rec-1/rollback"
            }}
        ])
    );
}

/// The built-in trees write `to_revision: previous`; start-up checks run
/// each step's parameters past the executor it is routed to.
#[test]
fn the_executors_accept_the_revisions_the_trees_write_and_refuse_others() {
    let k = kube("http://127.0.0.1:9");
    let a = argo("http://127.0.0.1:9");
    let executors: [&dyn StepExecutor; 2] = [&k, &a];
    let params = |v: &str| BTreeMap::from([("to_revision".to_string(), v.to_string())]);
    for executor in executors {
        for good in ["previous", "0", "12"] {
            assert_eq!(
                executor.check("rollback_deployment", &params(good)),
                Ok(()),
                "{good}"
            );
        }
        let why = executor
            .check("rollback_deployment", &params("last-good"))
            .expect_err("not a revision");
        assert!(
            why.contains("neither `previous` nor a revision number"),
            "{why}"
        );
    }
    let scale = BTreeMap::from([("factor".to_string(), "lots".to_string())]);
    assert!(k.check("scale_resources", &scale).is_err());
}

/// After a lost answer or a restart the router runs the step again with the
/// same key: the rollback already happened, so only the wait is repeated.
#[tokio::test]
async fn another_attempt_of_a_rollback_does_not_roll_back_twice() {
    let mut done_before = deployment(4, "checkout:1.2");
    done_before["metadata"]["annotations"]["medic.dev/rolled-back-by"] = json!("rec-1/rollback");
    let (url, log) = api_server(vec![(200, done_before.clone()), (200, done_before)]);
    let done = run(
        &kube(&url),
        &request("rollback_deployment", "checkout", &[]),
    )
    .await
    .expect("already done");
    assert!(
        done.detail
            .contains("already rolled back by an earlier attempt"),
        "{}",
        done.detail
    );
    let seen = seen(&log);
    assert_eq!(seen.len(), 2, "no list, no PATCH: {seen:?}");
    assert!(seen.iter().all(|s| s.method == "GET"));
}

#[tokio::test]
async fn a_rollout_that_stalls_fails_the_step_for_good() {
    let at_rest = deployment(3, "checkout:1.3");
    let mut stuck = rolling(at_rest.clone(), 4, 1, 3, 4);
    stuck["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet \"checkout-7b5c9d8e6f\" has timed out progressing."}]);
    let (url, _log) = api_server(vec![(200, at_rest.clone()), (200, stuck)]);
    let e = run(&kube(&url), &request("restart_service", "checkout", &[]))
        .await
        .expect_err("deadline exceeded");
    assert!(!e.retryable, "another attempt would restart again: {e:?}");
    assert!(
        e.detail.contains("progress deadline exceeded")
            && e.detail.contains("timed out progressing"),
        "{}",
        e.detail
    );

    // Never completes within the step's timeout (here 1 s).
    let slow = rolling(at_rest.clone(), 4, 1, 3, 4);
    let mut answers = vec![(200, at_rest)];
    answers.extend(std::iter::repeat_n((200, slow), 200));
    let (url, _log) = api_server(answers);
    let mut short = request("restart_service", "checkout", &[]);
    short.timeout = Duration::from_secs(1);
    let e = run(&kube(&url), &short).await.expect_err("too slow");
    assert!(!e.retryable);
    assert!(
        e.detail
            .contains("did not complete within 0.9 s: 1 of 3 replicas updated"),
        "{}",
        e.detail
    );
}

#[tokio::test]
async fn undo_to_a_named_revision() {
    let rss = vec![
        replica_set(
            DEPLOY,
            1,
            "checkout:1.1",
            (HASH, "6d4f8b9c7a"),
            "deployment.kubernetes.io/revision",
            &[],
        ),
        replica_set(
            DEPLOY,
            2,
            "checkout:1.2",
            (HASH, "5c7d9f6b8d"),
            "deployment.kubernetes.io/revision",
            &[],
        ),
        replica_set(
            DEPLOY,
            3,
            "checkout:1.3",
            (HASH, "7b5c9d8e6f"),
            "deployment.kubernetes.io/revision",
            &[],
        ),
    ];
    let (url, log) = api_server(vec![
        (200, deployment(3, "checkout:1.3")),
        (200, list(rss)),
        (200, json!({})),
        (200, deployment(4, "checkout:1.1")),
    ]);
    let params = [("to_revision", "1")];
    let done = run(
        &kube(&url),
        &request("rollback_deployment", "checkout", &params),
    )
    .await
    .expect("rolled back");
    assert!(done.detail.contains("to revision 1"), "{}", done.detail);
    let patch = seen(&log)[2].json();
    assert_eq!(patch[0]["value"], template("checkout:1.1", None));

    let (url, log) = api_server(vec![
        (200, deployment(3, "checkout:1.3")),
        (200, list(vec![])),
    ]);
    let params = [("to_revision", "7")];
    let e = run(
        &kube(&url),
        &request("rollback_deployment", "checkout", &params),
    )
    .await
    .expect_err("no revision 7");
    assert!(!e.retryable && e.detail.contains("no revision 7"), "{e:?}");
    assert_eq!(seen(&log).len(), 2);

    let (url, log) = api_server(vec![]);
    let params = [("to_revision", "last-good")];
    let e = run(
        &kube(&url),
        &request("rollback_deployment", "checkout", &params),
    )
    .await
    .expect_err("not a number");
    assert!(!e.retryable, "{e:?}");
    assert!(seen(&log).is_empty());
}

#[tokio::test]
async fn undo_with_a_single_revision_fails_permanently() {
    let rss = vec![replica_set(
        DEPLOY,
        1,
        "checkout:1.0",
        (HASH, "6d4f8b9c7a"),
        "deployment.kubernetes.io/revision",
        &[],
    )];
    let (url, log) = api_server(vec![(200, deployment(1, "checkout:1.0")), (200, list(rss))]);
    let e = run(
        &kube(&url),
        &request("rollback_deployment", "checkout", &[]),
    )
    .await
    .expect_err("nothing to roll back to");
    assert!(!e.retryable, "{e:?}");
    assert!(e.detail.contains("no previous revision"), "{}", e.detail);
    let seen = seen(&log);
    assert_eq!(seen.len(), 2, "no PATCH: {seen:?}");
}

#[tokio::test]
async fn undo_refuses_a_paused_deployment() {
    let mut paused = deployment(3, "checkout:1.3");
    paused["spec"]["paused"] = json!(true);
    let (url, log) = api_server(vec![(200, paused)]);
    let e = run(
        &kube(&url),
        &request("rollback_deployment", "checkout", &[]),
    )
    .await
    .expect_err("paused");
    assert!(!e.retryable && e.detail.contains("paused"), "{e:?}");
    assert_eq!(seen(&log).len(), 1);
}

fn scale(replicas: u64) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": "checkout", "namespace": "prod", "uid": DEPLOYMENT_UID},
           "spec": {"replicas": replicas},
           "status": {"replicas": replicas, "selector": "app=checkout"}})
}

#[tokio::test]
async fn scale_multiplies_rounds_up_and_stops_at_the_cap() {
    let path = "/apis/apps/v1/namespaces/prod/deployments/checkout/scale";
    // 3 × 1.5 = 4.5 → 5.
    let (url, log) = api_server(vec![(200, scale(3)), (200, scale(5))]);
    let done = run(&kube(&url), &request("scale_resources", "checkout", &[]))
        .await
        .expect("scaled");
    assert!(done.detail.contains("from 3 to 5"), "{}", done.detail);
    let seen_now = seen(&log);
    assert_eq!(seen_now.len(), 2);
    seen_now[0].check("GET", path, "tok", None);
    seen_now[1].check("PATCH", path, "tok", Some("application/merge-patch+json"));
    assert_eq!(seen_now[1].json(), json!({"spec": {"replicas": 5}}));

    // 4 × 2 = 8, capped at 6.
    let (url, log) = api_server(vec![(200, scale(4)), (200, scale(6))]);
    let params = [("factor", "2"), ("max_replicas", "6")];
    run(
        &kube(&url),
        &request("scale_resources", "checkout", &params),
    )
    .await
    .expect("scaled");
    assert_eq!(seen(&log)[1].json(), json!({"spec": {"replicas": 6}}));

    // 1 × 1.2 = 1.2 → 2, and never less than one more.
    let (url, log) = api_server(vec![(200, scale(1)), (200, scale(2))]);
    run(
        &kube(&url),
        &request("scale_resources", "checkout", &[("factor", "1.01")]),
    )
    .await
    .expect("scaled");
    assert_eq!(seen(&log)[1].json(), json!({"spec": {"replicas": 2}}));

    // Already at the cap: nothing is patched.
    let (url, log) = api_server(vec![(200, scale(20))]);
    let e = run(&kube(&url), &request("scale_resources", "checkout", &[]))
        .await
        .expect_err("at the cap");
    assert!(!e.retryable && e.detail.contains("cap is 20"), "{e:?}");
    assert_eq!(seen(&log).len(), 1);

    // A bad factor is refused before any request.
    let (url, log) = api_server(vec![]);
    let e = run(
        &kube(&url),
        &request("scale_resources", "checkout", &[("factor", "inf")]),
    )
    .await
    .expect_err("bad factor");
    assert!(!e.retryable, "{e:?}");
    assert!(seen(&log).is_empty());
}

fn rollout(revision: u32, image: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "prod", "uid": ROLLOUT_UID,
                     "generation": 7,
                     "annotations": {"rollout.argoproj.io/revision": revision.to_string()}},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": template(image, None),
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
        },
        "status": {"abort": true, "phase": "Degraded", "stableRS": "6f9c8d7b5a",
                   "currentPodHash": "8a7b6c5d4e"}
    })
}

#[tokio::test]
async fn argo_rollback_aborts_then_undoes_to_the_stable_revision() {
    let owner = ("Rollout", "argoproj.io/v1alpha1", ROLLOUT_UID);
    let label = "rollouts-pod-template-hash";
    let annotation = "rollout.argoproj.io/revision";
    let rss = vec![
        replica_set(
            owner,
            4,
            "checkout:2.0",
            (label, "8a7b6c5d4e"),
            annotation,
            &[],
        ),
        replica_set(
            owner,
            3,
            "checkout:1.9",
            (label, "6f9c8d7b5a"),
            annotation,
            &[],
        ),
    ];
    let (url, log) = api_server(vec![
        (200, rollout(4, "checkout:2.0")),
        (200, rollout(4, "checkout:2.0")),
        (200, list(rss)),
        (200, rollout(5, "checkout:1.9")),
        (200, healthy(rollout(5, "checkout:1.9"))),
    ]);
    let done = run(
        &argo(&url),
        &request("rollback_deployment", "checkout", &[]),
    )
    .await
    .expect("aborted and undone");
    assert!(
        done.detail.contains("aborted rollout prod/checkout"),
        "{}",
        done.detail
    );
    assert!(done.detail.contains("to revision 3"), "{}", done.detail);

    assert!(
        done.detail
            .ends_with("rollout complete: healthy, 5 of 5 replicas available"),
        "{}",
        done.detail
    );
    let seen = seen(&log);
    assert_eq!(seen.len(), 5);
    let rollout_path = "/apis/argoproj.io/v1alpha1/namespaces/prod/rollouts/checkout";
    seen[0].check(
        "PATCH",
        &format!("{rollout_path}/status"),
        "tok",
        Some("application/merge-patch+json"),
    );
    assert_eq!(seen[0].json(), json!({"status": {"abort": true}}));
    seen[1].check("GET", rollout_path, "tok", None);
    seen[2].check(
        "GET",
        "/apis/apps/v1/namespaces/prod/replicasets?labelSelector=app%3Dcheckout",
        "tok",
        None,
    );
    seen[3].check(
        "PATCH",
        rollout_path,
        "tok",
        Some("application/json-patch+json"),
    );
    assert_eq!(
        seen[3].json(),
        json!([
            {"op": "replace", "path": "/spec/template", "value": template("checkout:1.9", None)},
            {"op": "add", "path": "/metadata/annotations/medic.dev~1rolled-back-by", "value": "rec-1/rollback"}
        ])
    );
    seen[4].check("GET", rollout_path, "tok", None);
}

/// The rollout once the controller has put the restored template back on
/// the stable ReplicaSet (Argo writes `observedGeneration` as a string).
fn healthy(mut r: Value) -> Value {
    r["metadata"]["generation"] = json!(8);
    r["status"] = json!({"observedGeneration": "8", "phase": "Healthy", "stableRS": "6f9c8d7b5a",
        "currentPodHash": "6f9c8d7b5a", "replicas": 5, "updatedReplicas": 5, "availableReplicas": 5});
    r
}

#[tokio::test]
async fn argo_retry_clears_the_abort_and_falls_back_without_a_status_subresource() {
    let (url, log) = api_server(vec![(200, rollout(4, "checkout:2.0"))]);
    let done = run(&argo(&url), &request("retry_deployment", "checkout", &[]))
        .await
        .expect("retried");
    assert_eq!(done.http_status, Some(200));
    let seen_now = seen(&log);
    assert_eq!(seen_now.len(), 1);
    let rollout_path = "/apis/argoproj.io/v1alpha1/namespaces/prod/rollouts/checkout";
    seen_now[0].check(
        "PATCH",
        &format!("{rollout_path}/status"),
        "tok",
        Some("application/merge-patch+json"),
    );
    assert_eq!(seen_now[0].json(), json!({"status": {"abort": false}}));

    let not_found = status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    let (url, log) = api_server(vec![(404, not_found), (200, rollout(4, "checkout:2.0"))]);
    run(&argo(&url), &request("retry_deployment", "checkout", &[]))
        .await
        .expect("retried on the rollout itself");
    let seen_now = seen(&log);
    assert_eq!(seen_now.len(), 2);
    seen_now[1].check(
        "PATCH",
        rollout_path,
        "tok",
        Some("application/merge-patch+json"),
    );
    assert_eq!(seen_now[1].json(), json!({"status": {"abort": false}}));
}

#[tokio::test]
async fn names_that_are_not_kubernetes_names_are_refused_before_any_request() {
    let (url, log) = api_server(vec![]);
    let executors: [&dyn StepExecutor; 2] = [&kube(&url), &argo(&url)];
    for executor in executors {
        for service in [
            "Checkout_Svc",
            "a/b",
            "..",
            "checkout?watch=1",
            "",
            "%2e%2e",
        ] {
            let e = run(executor, &request("rollback_deployment", service, &[]))
                .await
                .expect_err(service);
            assert!(
                !e.retryable && e.detail.contains("DNS-1123"),
                "{service}: {e:?}"
            );
        }
        let mut bad_env = request("rollback_deployment", "checkout", &[]);
        bad_env.environment = "Prod".into();
        assert!(run(executor, &bad_env).await.is_err());
        let bad_component = request("rollback_deployment", "checkout", &[("component", "a/b")]);
        assert!(run(executor, &bad_component).await.is_err());
        let unsupported = request("delete_namespace", "checkout", &[]);
        assert!(
            !run(executor, &unsupported)
                .await
                .expect_err("unsupported")
                .retryable
        );
    }
    assert!(seen(&log).is_empty());

    // A component replaces the name template.
    // The PATCH, then the read that finds the rollout complete.
    let (url, log) = api_server(vec![(200, json!({})), (200, deployment(3, "checkout:1.3"))]);
    let params = [("component", "checkout-worker")];
    run(
        &kube(&url),
        &request("restart_service", "checkout", &params),
    )
    .await
    .expect("restarted");
    assert_eq!(
        seen(&log)[0].target,
        "/apis/apps/v1/namespaces/prod/deployments/checkout-worker"
    );
}

#[tokio::test]
async fn errors_are_classified_for_retries() {
    let cases = [
        (409, true),
        (429, true),
        (503, true),
        (401, false),
        (403, false),
        (404, false),
        (422, false),
    ];
    for (code, retryable) in cases {
        let (url, _log) = api_server(vec![(
            code,
            status(code, "X", "deployments.apps \"checkout\" says no"),
        )]);
        let e: StepError = run(&kube(&url), &request("restart_service", "checkout", &[]))
            .await
            .expect_err("an error");
        assert_eq!(
            (e.http_status, e.retryable),
            (Some(code), retryable),
            "{e:?}"
        );
        assert!(
            e.detail.contains("says no") && !e.detail.contains("tok"),
            "{e:?}"
        );
    }
    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let e = run(
        &kube(&format!("http://127.0.0.1:{port}")),
        &request("restart_service", "checkout", &[]),
    )
    .await
    .expect_err("refused");
    assert!(e.retryable && e.http_status.is_none(), "{e:?}");
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("medic-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn kubeconfig_context_gives_server_token_and_namespace() {
    // The PATCH, then the read that finds the rollout complete.
    let (url, log) = api_server(vec![(200, json!({})), (200, deployment(3, "checkout:1.3"))]);
    let dir = TempDir::new("kubeconfig");
    let ca = base64_encode(CA_PEM.as_bytes());
    let path = dir.write(
        "config",
        &format!(
            r#"apiVersion: v1
kind: Config
preferences: {{}}
current-context: prod-admin
clusters:
- name: prod
  cluster:
    server: https://prod.example.invalid:6443
    certificate-authority-data: {ca}
- name: local
  cluster:
    server: {url}
contexts:
- name: prod-admin
  context: {{cluster: prod, user: admin, namespace: default}}
- name: medic
  context:
    cluster: local
    user: medic-sa
    namespace: payments
users:
- name: admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
- name: medic-sa
  user:
    token: kc-token
"#
        ),
    );
    let config = KubernetesConfig {
        kubeconfig: Some(path.clone()),
        context: Some("medic".into()),
        namespace: "{context_namespace}".into(),
        ..KubernetesConfig::default()
    };
    let executor = KubernetesExecutor::new(&config).expect("executor");
    let mut req = request("restart_service", "checkout", &[]);
    req.idempotency_key = "rec-1/rollback".into();
    run(&executor, &req).await.expect("restarted");
    seen(&log)[0].check(
        "PATCH",
        "/apis/apps/v1/namespaces/payments/deployments/checkout",
        "kc-token",
        Some("application/strategic-merge-patch+json"),
    );

    // The current context's user runs an exec plugin (as EKS's `aws eks
    // get-token` does): accepted; its credential is obtained at the first
    // request.
    let config = KubernetesConfig {
        kubeconfig: Some(path),
        ..KubernetesConfig::default()
    };
    let connection = KubeConnection::from_config(&config).expect("an exec plugin is fine");
    assert_eq!(
        connection.server().as_str(),
        "https://prod.example.invalid:6443/"
    );
    assert!(connection.has_token());

    // A token file relative to the kubeconfig, and a CA file.
    dir.write("ca.crt", CA_PEM);
    dir.write("sa-token", "file-token");
    let path = dir.write(
        "config2",
        r#"current-context: c
clusters: [{name: k, cluster: {server: "https://10.1.2.3:6443", certificate-authority: ca.crt}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {tokenFile: sa-token}}]
"#,
    );
    let config = KubernetesConfig {
        kubeconfig: Some(path),
        ..KubernetesConfig::default()
    };
    let connection = KubeConnection::from_config(&config).expect("connection");
    assert_eq!(connection.server().as_str(), "https://10.1.2.3:6443/");
    assert!(connection.has_token());
    assert!(!format!("{connection:?}").contains("file-token"));

    for (text, want) in [
        ("clusters: []\ncontexts: []\n", "current-context"),
        ("current-context: x\ncontexts: []\n", "no context named 'x'"),
        ("current-context: [", ""),
    ] {
        let path = dir.write("bad", text);
        let config = KubernetesConfig {
            kubeconfig: Some(path),
            ..KubernetesConfig::default()
        };
        let e = KubeConnection::from_config(&config).expect_err(text);
        assert!(e.to_string().contains(want), "{e}");
    }
}

/// An exec credential plugin (what `aws eks get-token`,
/// `gke-gcloud-auth-plugin` and `kubelogin` are) runs at the first request
/// and its token is sent; a token file with a trailing newline is refused
/// at start, naming the fix.
#[tokio::test]
async fn an_exec_plugin_supplies_the_token() {
    let (url, log) = api_server(vec![(200, json!({})), (200, deployment(3, "checkout:1.3"))]);
    let dir = TempDir::new("exec");
    let credential = r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-token"}}"#;
    let path = dir.write(
        "config",
        &format!(
            r#"apiVersion: v1
kind: Config
current-context: eks
clusters: [{{name: eks, cluster: {{server: "{url}"}}}}]
contexts: [{{name: eks, context: {{cluster: eks, user: iam, namespace: shop}}}}]
users:
- name: iam
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: sh
      args:
      - -c
      - |
        printf '%s' '{credential}'
      interactiveMode: Never
"#
        ),
    );
    let config = KubernetesConfig {
        kubeconfig: Some(path),
        namespace: "{context_namespace}".into(),
        ..KubernetesConfig::default()
    };
    let executor = KubernetesExecutor::new(&config).expect("executor");
    run(&executor, &request("restart_service", "checkout", &[]))
        .await
        .expect("restarted");
    let first = &seen(&log)[0];
    assert_eq!(
        first.target,
        "/apis/apps/v1/namespaces/shop/deployments/checkout"
    );
    assert_eq!(first.header("authorization"), Some("Bearer exec-token"));

    let token = dir.write("token", "with-newline\n");
    let config = KubernetesConfig {
        api_server: Some(url),
        token_file: Some(token),
        ..KubernetesConfig::default()
    };
    let e = KubeConnection::from_config(&config).expect_err("newline");
    assert!(e.to_string().contains("printf '%s'"), "{e}");

    // A CA file that holds no certificate is refused at start, not at 3 a.m.
    let ca = dir.write("ca.crt", "not a certificate");
    let config = KubernetesConfig {
        api_server: Some("https://10.1.2.3:6443".into()),
        token: Some("t".into()),
        ca_file: Some(ca),
        ..KubernetesConfig::default()
    };
    let e = KubeConnection::from_config(&config).expect_err("no PEM");
    assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
}

#[test]
fn in_cluster_reads_the_service_account() {
    let dir = TempDir::new("serviceaccount");
    dir.write("token", "sa-token-value");
    dir.write("ca.crt", CA_PEM);
    dir.write("namespace", "medic\n");
    let config = KubernetesConfig {
        in_cluster: true,
        service_account_dir: Some(dir.0.clone()),
        namespace: "{context_namespace}".into(),
        ..KubernetesConfig::default()
    };
    let env = |host: &'static str| {
        move |name: &str| match name {
            "KUBERNETES_SERVICE_HOST" => Some(host.to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        }
    };
    let connection =
        KubeConnection::from_config_with_env(&config, &env("10.96.0.1")).expect("in cluster");
    assert_eq!(connection.server().as_str(), "https://10.96.0.1/");
    assert_eq!(connection.context_namespace(), Some("medic"));
    assert!(connection.has_token());
    assert!(!format!("{connection:?}").contains("sa-token-value"));
    let names = NameTemplates::from_config(&config).expect("templates");
    let target = names
        .target(&connection, &request("restart_service", "checkout", &[]))
        .expect("target");
    assert_eq!(
        (target.namespace.as_str(), target.name.as_str()),
        ("medic", "checkout")
    );

    let v6 = KubeConnection::from_config_with_env(&config, &env("fd00::1")).expect("IPv6");
    assert_eq!(v6.server().as_str(), "https://[fd00::1]/");

    let e = KubeConnection::from_config_with_env(&config, &|_| None).expect_err("not in a pod");
    assert!(e.to_string().contains("KUBERNETES_SERVICE_HOST"), "{e}");

    std::fs::remove_file(dir.0.join("token")).expect("remove");
    let e = KubeConnection::from_config_with_env(&config, &env("10.96.0.1")).expect_err("no token");
    assert!(matches!(e, ConnectionError::Read { .. }), "{e:?}");
}

#[tokio::test]
async fn api_server_with_a_token_file_and_conflicting_settings() {
    // The PATCH, then the read that finds the rollout complete.
    let (url, log) = api_server(vec![(200, json!({})), (200, deployment(3, "checkout:1.3"))]);
    let dir = TempDir::new("tokenfile");
    let token_file = dir.write("token", "from-file");
    let config = KubernetesConfig {
        api_server: Some(url),
        token_file: Some(token_file.clone()),
        ..KubernetesConfig::default()
    };
    run(
        &KubernetesExecutor::new(&config).expect("executor"),
        &request("restart_service", "checkout", &[]),
    )
    .await
    .expect("restarted");
    assert_eq!(
        seen(&log)[0].header("authorization"),
        Some("Bearer from-file")
    );

    let conflicting = [
        KubernetesConfig::default(),
        KubernetesConfig {
            in_cluster: true,
            api_server: Some("https://x".into()),
            ..KubernetesConfig::default()
        },
        KubernetesConfig {
            api_server: Some("https://x".into()),
            token: Some("a".into()),
            token_file: Some(token_file),
            ..KubernetesConfig::default()
        },
        KubernetesConfig {
            api_server: Some("not a url".into()),
            ..KubernetesConfig::default()
        },
        KubernetesConfig {
            api_server: Some("https://x".into()),
            namespace: "{team}".into(),
            ..KubernetesConfig::default()
        },
    ];
    for config in conflicting {
        assert!(
            KubernetesExecutor::new(&config).is_err(),
            "{:?}",
            config.api_server
        );
    }

    let parsed: KubernetesConfig = serde_yaml_ng::from_str(
        "api_server: https://k8s:6443\ntoken: t\nname: \"{service}-api\"\n",
    )
    .expect("config");
    assert_eq!(parsed.namespace, "{environment}");
    assert_eq!(parsed.name, "{service}-api");
    assert!(serde_yaml_ng::from_str::<KubernetesConfig>("api_server: x\ntokn: t\n").is_err());
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
