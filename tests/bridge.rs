//! The webhook bridge on a loopback port against the embedded cluster: real
//! fixture payloads with correct, wrong and missing signatures, oversized
//! bodies, duplicates, bursts, and a broker that cannot be reached.

mod common;

use common::*;
use medic::bridge::verify::sign_hex;
use medic::bridge::{serve, BridgeState};
use medic::config::{ApprovalsEndpoint, BridgeConfig, NamedToken, PlatformEndpoint};
use medic::domain::{Approval, ApprovalDecision, CiEvent, CiPlatform, CiStatus};
use medic::kafka::ClientSettings;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Duration;

const GITHUB_SECRET: &str = "gh-test-secret";

fn endpoint(path: &str, secrets: &[&str]) -> PlatformEndpoint {
    PlatformEndpoint {
        path: path.into(),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        tolerance_secs: 300,
        token_header: "X-Medic-Token".into(),
    }
}

fn config() -> BridgeConfig {
    BridgeConfig {
        github: endpoint("/webhooks/github", &["old-secret", GITHUB_SECRET]),
        gitlab: endpoint(
            "/webhooks/gitlab",
            &["gl-token", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        ),
        jenkins: endpoint("/webhooks/jenkins", &["jk-token"]),
        azure_devops: endpoint("/webhooks/azure-devops", &["medic:az-pass"]),
        circleci: endpoint("/webhooks/circleci", &["cc-secret"]),
        generic: endpoint("/webhooks/generic", &["gen-secret"]),
        ..BridgeConfig::default()
    }
}

struct Bridge {
    url: String,
    client: reqwest::Client,
    state: Arc<BridgeState>,
}

fn start(c: &TestCluster, config: BridgeConfig, settings: &ClientSettings) -> Bridge {
    let state = BridgeState::new(&config, settings, &c.topics.ci_events, None)
        .expect("state")
        .with_approvals(&config.approvals, &c.topics.approvals);
    let listener = c
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = Arc::new(state);
    c.runtime.spawn(serve(
        Arc::clone(&state),
        config.body_limit_bytes,
        listener,
        std::future::pending(),
    ));
    Bridge {
        url,
        client: reqwest::Client::new(),
        state,
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn post(
    c: &TestCluster,
    b: &Bridge,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (StatusCode, String) {
    c.runtime.block_on(async {
        let mut request = b.client.post(format!("{}{path}", b.url)).body(body);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.expect("response");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    })
}

fn github_headers(
    body: &[u8],
    secret: &str,
    event: &str,
    delivery: &str,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-Hub-Signature-256",
            format!("sha256={}", sign_hex(secret.as_bytes(), &[body])),
        ),
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        ("content-type", "application/json".into()),
    ]
}

#[test]
fn a_signed_failure_is_accepted_only_after_kafka_has_it_and_bad_requests_produce_nothing() {
    let c = embedded("bridge");
    let b = start(&c, config(), &c.settings);
    let body = fixture("github/workflow_job/completed.failure.with-organization.payload.json");

    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&body, GITHUB_SECRET, "workflow_job", "d-1"),
        body.clone(),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert!(text.contains("\"deployment\":\"hello-world/ci\""), "{text}");
    let produced: Vec<CiEvent> = c.read(&c.topics.ci_events, 1, Duration::from_secs(10));
    assert_eq!(produced.len(), 1);
    assert_eq!(
        (produced[0].status, produced[0].id.as_str()),
        (CiStatus::Failure, "github_actions/d-1")
    );

    // Wrong secret, missing signature, tampered body: 401, nothing produced.
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&body, "guess", "workflow_job", "d-2"),
        body.clone(),
    );
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"signature or token does not match"}"#
        )
    );
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &[("X-GitHub-Event", "workflow_job".into())],
        body.clone(),
    );
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"missing X-Hub-Signature-256"}"#
        )
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, _) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&body, GITHUB_SECRET, "workflow_job", "d-3"),
        tampered,
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Signed but malformed or unknown: 400 with the reason.
    let junk = b"{not json".to_vec();
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&junk, GITHUB_SECRET, "workflow_job", "d-4"),
        junk,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("body is not JSON"), "{text}");
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&body, GITHUB_SECRET, "workflow_jobz", "d-5"),
        body.clone(),
    );
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"error":"unknown event type workflow_jobz"}"#
        )
    );

    // A push is accepted and not produced; a redelivery is acknowledged once.
    let push = fixture("github/push/payload.json");
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&push, GITHUB_SECRET, "push", "d-6"),
        push,
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(text.contains("ignored"), "{text}");
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&body, GITHUB_SECRET, "workflow_job", "d-1"),
        body.clone(),
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(text.contains("duplicate"), "{text}");

    // Over the body limit.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, _) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&big, GITHUB_SECRET, "workflow_job", "d-7"),
        big,
    );
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let all: Vec<CiEvent> = c.read(&c.topics.ci_events, 1, Duration::from_secs(3));
    assert_eq!(all.len(), 1, "only the one accepted event was produced");
}

#[test]
fn every_platform_authenticates_its_own_way() {
    let c = embedded("platforms");
    let b = start(&c, config(), &c.settings);
    let now_secs = medic::timefmt::wall_clock() / 1000;

    let gitlab = fixture("gitlab/deployment.json");
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/gitlab",
        &[
            ("X-Gitlab-Token", "gl-token".into()),
            ("X-Gitlab-Event-UUID", "u-1".into()),
        ],
        gitlab.clone(),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let ts = now_secs.to_string();
    let signed = format!("msg_1.{ts}.");
    let key = base64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let sig = hex_to_base64(&sign_hex(&key, &[signed.as_bytes(), &gitlab]));
    let headers = [
        ("webhook-id", "msg_1".to_string()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", format!("v1,{sig}")),
    ];
    let (status, text) = post(&c, &b, "/webhooks/gitlab", &headers, gitlab.clone());
    assert_eq!(status, StatusCode::ACCEPTED, "signing token: {text}");
    // A system hook (`event_name`, no `object_kind`; GitLab's documented
    // shape, sent with `X-Gitlab-Event: System Hook`) is accepted, ignored.
    let system = br#"{"event_name":"project_create","name":"StoreCloud","path":"storecloud","path_with_namespace":"jsmith/storecloud","project_id":74}"#.to_vec();
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/gitlab",
        &[
            ("X-Gitlab-Token", "gl-token".into()),
            ("X-Gitlab-Event", "System Hook".into()),
            ("X-Gitlab-Event-UUID", "u-2".into()),
        ],
        system,
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert!(text.contains("ignored"), "{text}");

    let circle = fixture("circleci/workflow-completed-gitlab.json");
    let sig = sign_hex(b"cc-secret", &[&circle]);
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/circleci",
        &[
            ("circleci-signature", format!("v1={sig}")),
            ("circleci-event-type", "workflow-completed".into()),
        ],
        circle,
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");

    let azure = fixture("azure-devops/build.complete.json");
    let (status, _) = post(
        &c,
        &b,
        "/webhooks/azure-devops",
        &[("Authorization", "Basic bWVkaWM6YXotcGFzcw==".into())],
        azure.clone(),
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(
        &c,
        &b,
        "/webhooks/azure-devops",
        &[("Authorization", "Basic bWVkaWM6d3Jvbmc=".into())],
        azure,
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad = fixture("azure-devops/bad.notMappedEventType.json");
    let (status, _) = post(
        &c,
        &b,
        "/webhooks/azure-devops",
        &[("Authorization", "Basic bWVkaWM6YXotcGFzcw==".into())],
        bad,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let jenkins = fixture("jenkins/notification-plugin-example.json");
    let (status, _) = post(
        &c,
        &b,
        "/webhooks/jenkins?token=jk-token",
        &[],
        jenkins.clone(),
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = post(&c, &b, "/webhooks/jenkins", &[], jenkins);
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let generic = br#"{"id": "g-1", "status": "failure", "service": "billing", "environment": "staging", "run_id": "9", "log_excerpt": "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress"}"#.to_vec();
    let sig = sign_hex(b"gen-secret", &[ts.as_bytes(), b".", &generic]);
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/generic",
        &[
            ("X-Medic-Timestamp", ts.clone()),
            ("X-Medic-Signature", format!("sha256={sig}")),
        ],
        generic.clone(),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let old = (now_secs - 3600).to_string();
    let sig = sign_hex(b"gen-secret", &[old.as_bytes(), b".", &generic]);
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/generic",
        &[
            ("X-Medic-Timestamp", old),
            ("X-Medic-Signature", format!("sha256={sig}")),
        ],
        generic,
    );
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"timestamp outside the allowed 300 s"}"#
        )
    );

    let events: Vec<CiEvent> = c.read(&c.topics.ci_events, 6, Duration::from_secs(10));
    let platforms: Vec<CiPlatform> = events.iter().map(|e| e.platform).collect();
    assert_eq!(events.len(), 6, "{platforms:?}");
}

#[test]
fn unused_events_can_be_produced_when_configured() {
    let c = embedded("unused");
    let b = start(
        &c,
        BridgeConfig {
            produce_unused_events: true,
            ..config()
        },
        &c.settings,
    );
    let push = fixture("github/push/payload.json");
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&push, GITHUB_SECRET, "push", "p-1"),
        push,
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let events: Vec<CiEvent> = c.read(&c.topics.ci_events, 1, Duration::from_secs(10));
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].status,
            events[0].event_type.as_str(),
            events[0].service.as_str()
        ),
        (CiStatus::Unknown, "push", "Hello-World")
    );
}

#[test]
fn a_burst_over_the_limit_is_told_to_slow_down() {
    let c = embedded("burst");
    let b = start(
        &c,
        BridgeConfig {
            rate_per_second: 1,
            rate_burst: 3,
            ..config()
        },
        &c.settings,
    );
    let push = fixture("github/push/payload.json");
    let statuses: Vec<StatusCode> = (0..6)
        .map(|i| {
            post(
                &c,
                &b,
                "/webhooks/github",
                &github_headers(&push, GITHUB_SECRET, "push", &format!("b-{i}")),
                push.clone(),
            )
            .0
        })
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        3,
        "{statuses:?}"
    );
}

#[test]
fn when_kafka_cannot_take_the_event_the_platform_is_told_to_retry() {
    let c = embedded("down");
    let unreachable = ClientSettings::new("127.0.0.1:1");
    let b = start(
        &c,
        BridgeConfig {
            produce_timeout_ms: 1_500,
            ..config()
        },
        &unreachable,
    );
    let body = fixture("github/workflow_job/completed.failure.with-organization.payload.json");
    let (status, text) = post(
        &c,
        &b,
        "/webhooks/github",
        &github_headers(&body, GITHUB_SECRET, "workflow_job", "x-1"),
        body,
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("retry"), "{text}");
    let ready = c.runtime.block_on(async {
        b.client
            .get(format!("{}/readyz", b.url))
            .send()
            .await
            .expect("readyz")
            .status()
    });
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    let health = c.runtime.block_on(async {
        b.client
            .get(format!("{}/healthz", b.url))
            .send()
            .await
            .expect("healthz")
            .status()
    });
    assert_eq!(health, StatusCode::OK);
}

/// A hundred readiness probes at once with the broker down: one probe of the
/// cluster answers them all (each used to build its own librdkafka client).
#[test]
fn concurrent_readiness_probes_share_one_probe_of_the_cluster() {
    let c = embedded("readyz-stampede");
    let unreachable = ClientSettings::new("127.0.0.1:1");
    let b = start(&c, config(), &unreachable);
    let statuses: Vec<StatusCode> = c.runtime.block_on(async {
        let requests: Vec<_> = (0..100)
            .map(|_| {
                let (client, url) = (b.client.clone(), format!("{}/readyz", b.url));
                tokio::spawn(async move {
                    client
                        .get(url)
                        .send()
                        .await
                        .map(|r| r.status())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for r in requests {
            statuses.push(r.await.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        }
        statuses
    });
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert_eq!(b.state.ready_probes(), 1);
}

#[test]
fn an_unconfigured_platform_has_no_endpoint() {
    let c = embedded("unconfigured");
    let b = start(
        &c,
        BridgeConfig {
            jenkins: endpoint("/webhooks/jenkins", &[]),
            ..config()
        },
        &c.settings,
    );
    let (status, _) = post(
        &c,
        &b,
        "/webhooks/jenkins?token=anything",
        &[],
        fixture("jenkins/notification-plugin-example.json"),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    let ready = c.runtime.block_on(async {
        b.client
            .get(format!("{}/readyz", b.url))
            .send()
            .await
            .expect("readyz")
            .status()
    });
    assert_eq!(ready, StatusCode::OK);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

fn hex_to_base64(hex: &str) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn approvals_over_http_need_a_token_and_name_who_decided() {
    let c = embedded("bridge-approvals");
    let mut config = config();
    config.approvals = ApprovalsEndpoint {
        path: "/approvals".into(),
        tokens: vec![NamedToken {
            name: "chatops-bot".into(),
            token: "s3cret-token".into(),
        }],
    };
    let b = start(&c, config, &c.settings);
    let id = "checkout%2Fproduction%231764400000500.684c6ca6";
    let bearer = |t: &str| vec![("Authorization", format!("Bearer {t}"))];
    let body = |s: &str| s.as_bytes().to_vec();

    let (status, text) = post(
        &c,
        &b,
        &format!("/approvals/{id}"),
        &[],
        body(r#"{"by":"alice"}"#),
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    let (status, _) = post(
        &c,
        &b,
        &format!("/approvals/{id}"),
        &bearer("guess"),
        body(r#"{"by":"alice"}"#),
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, text) = post(
        &c,
        &b,
        "/approvals/not-a-recovery",
        &bearer("s3cret-token"),
        body(r#"{"by":"alice"}"#),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("is not a recovery id"), "{text}");
    let (status, text) = post(
        &c,
        &b,
        &format!("/approvals/{id}"),
        &bearer("s3cret-token"),
        body(r#"{"by":"alice","decision":"maybe"}"#),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("neither approve nor reject"), "{text}");
    let (status, text) = post(
        &c,
        &b,
        &format!("/approvals/{id}"),
        &bearer("s3cret-token"),
        body(r#"{"by":"al\nice"}"#),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");

    let (status, text) = post(
        &c,
        &b,
        &format!("/approvals/{id}"),
        &bearer("s3cret-token"),
        body(r#"{"by":"alice","decision":"reject","comment":"change freeze"}"#),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let approvals: Vec<Approval> = c.read(&c.topics.approvals, 1, Duration::from_secs(20));
    assert_eq!(
        approvals.len(),
        1,
        "only the authorised, valid request produced"
    );
    let a = &approvals[0];
    assert_eq!(a.recovery_id, "checkout/production#1764400000500.684c6ca6");
    assert_eq!(a.decision, ApprovalDecision::Rejected);
    assert_eq!(a.approver, "alice (via chatops-bot)");
    assert_eq!(a.reason.as_deref(), Some("change freeze"));
}
