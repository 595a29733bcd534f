//! Commit statuses written back to GitHub and GitLab, checked against a local
//! server for the method, path, headers and body the platforms document.

mod common;

use common::http::server;
use common::*;
use medic::config::StatusApi;
use medic::domain::*;
use medic::executors::{CommitStatusSink, Executor, StatusTarget};
use medic::stages::{CommitState, EffectRequest, StageName};
use serde_json::Value;
use std::time::Duration;

const SHA: &str = "3484a3fb816e0859fd6e1cea078d76385ff50625";

fn base(url: &str) -> String {
    url.trim_end_matches("/hooks/medic").to_string()
}

fn status(platform: CiPlatform, repository: &str, state: CommitState) -> EffectRequest {
    EffectRequest::CommitStatus {
        idempotency_key: "k".into(),
        platform,
        repository: repository.into(),
        sha: SHA.into(),
        state,
        description: "medic: high application failure; application_recovery succeeded".into(),
        target_url: Some("https://github.com/Codertocat/Hello-World/runs/1".into()),
    }
}

fn body_of(seen: &(Vec<String>, String)) -> Value {
    serde_json::from_str(&seen.1).expect("JSON body")
}

fn has(headers: &[String], want: &str) -> bool {
    headers.iter().any(|h| h.eq_ignore_ascii_case(want))
}

#[tokio::test]
async fn github_and_gitlab_get_the_requests_their_apis_document() {
    let (url, seen) = server(vec![201, 201]);
    let target = |api: String| {
        Some(StatusTarget {
            api_url: reqwest::Url::parse(&api).expect("url"),
            token: "tok".into(),
        })
    };
    let sink = CommitStatusSink::new(
        target(base(&url)),
        target(format!("{}/api/v4", base(&url))),
        Duration::from_secs(5),
    )
    .expect("sink");

    let gh = sink
        .execute(&status(
            CiPlatform::GithubActions,
            "Codertocat/Hello-World",
            CommitState::Success,
        ))
        .await;
    assert!(gh.success, "{gh:?}");
    let gl = sink
        .execute(&status(CiPlatform::GitlabCi, "1", CommitState::Failure))
        .await;
    assert!(gl.success, "{gl:?}");

    let seen = seen.lock().expect("lock");
    let (headers, _) = &seen[0];
    assert_eq!(
        headers[0],
        format!("POST /repos/Codertocat/Hello-World/statuses/{SHA} HTTP/1.1")
    );
    assert!(has(headers, "authorization: Bearer tok"), "{headers:?}");
    assert!(
        has(headers, "accept: application/vnd.github+json"),
        "{headers:?}"
    );
    assert!(
        has(headers, "x-github-api-version: 2022-11-28"),
        "{headers:?}"
    );
    let body = body_of(&seen[0]);
    assert_eq!(
        (body["state"].as_str(), body["context"].as_str()),
        (Some("success"), Some("medic"))
    );
    assert_eq!(
        body["target_url"],
        "https://github.com/Codertocat/Hello-World/runs/1"
    );
    assert!(body["description"].as_str().is_some_and(|d| d.len() <= 140));

    let (headers, _) = &seen[1];
    assert_eq!(
        headers[0],
        format!("POST /api/v4/projects/1/statuses/{SHA} HTTP/1.1")
    );
    assert!(has(headers, "private-token: tok"), "{headers:?}");
    let body = body_of(&seen[1]);
    assert_eq!(
        (body["state"].as_str(), body["name"].as_str()),
        (Some("failed"), Some("medic"))
    );
}

#[tokio::test]
async fn names_from_payloads_cannot_steer_the_request_elsewhere() {
    let (url, seen) = server(vec![201]);
    let target = Some(StatusTarget {
        api_url: reqwest::Url::parse(&base(&url)).expect("url"),
        token: "tok".into(),
    });
    let sink = CommitStatusSink::new(target, None, Duration::from_secs(5)).expect("sink");
    for repository in ["Codertocat/../../admin", "a/b/c", "owner/repo?x=1"] {
        let result = sink
            .execute(&status(
                CiPlatform::GithubActions,
                repository,
                CommitState::Pending,
            ))
            .await;
        assert!(
            !result.success && result.attempts == 0,
            "{repository}: {result:?}"
        );
    }
    let result = sink
        .execute(&status(CiPlatform::GitlabCi, "1", CommitState::Pending))
        .await;
    assert_eq!(result.detail, "no GitLab token configured");
    assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");
}

#[test]
fn a_recovery_of_a_github_failure_marks_the_commit_pending_then_done() {
    let (url, seen) = server(vec![201, 201, 201, 201]);
    let mut c = embedded("status");
    c.config.notify.github_status = StatusApi {
        api_url: base(&url),
        token: Some("tok".into()),
    };
    let body = std::fs::read(format!(
        "{}/tests/data/webhooks/github/workflow_job/completed.failure.with-organization.payload.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let delivery = medic::ci::Delivery {
        event: Some("workflow_job"),
        delivery_id: Some("d-1"),
        received_at: 1,
    };
    let event = medic::ci::normalize(CiPlatform::GithubActions, &body, &delivery)
        .expect("ok")
        .expect("event");
    c.produce_avro(&c.topics.ci_events, "hello-world/ci", &event);
    let running = c.start(&StageName::ALL);
    assert!(
        wait_until(Duration::from_secs(90), || seen
            .lock()
            .map(|s| s.iter().any(|r| body_of(r)["state"] == "success"))
            .unwrap_or(false)),
        "the final status arrives"
    );
    let notes: Vec<NotificationRecord> =
        c.read(&c.topics.notifications, 2, Duration::from_secs(30));
    drop(running);

    let seen = seen.lock().expect("lock");
    let states: Vec<String> = seen
        .iter()
        .map(|s| body_of(s)["state"].as_str().unwrap_or_default().to_string())
        .collect();
    // "pending" when the recovery starts (unless its outcome overtook its
    // state record), and the final status always last.
    assert!(
        states == ["pending", "success"] || states == ["success"],
        "{states:?}"
    );
    for (headers, _) in seen.iter() {
        assert_eq!(
            headers[0],
            format!("POST /repos/Codertocat/Hello-World/statuses/{SHA} HTTP/1.1")
        );
    }
    let last = body_of(&seen[seen.len() - 1]);
    assert!(
        last["description"]
            .as_str()
            .is_some_and(|d| d.contains("application failure")),
        "{last}"
    );
    let recorded = notes
        .iter()
        .find(|n| n.channel == "github_status")
        .expect("status delivery recorded");
    assert_eq!(
        (recorded.status, recorded.http_status),
        (DeliveryStatus::Delivered, Some(201))
    );
}

/// A status API answering with a redirect does not get the token sent on:
/// the write fails with the redirect's status and the other host hears
/// nothing.
#[tokio::test]
async fn a_redirect_is_not_followed_with_the_token() {
    use std::io::{Read, Write};
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let thief = format!("http://{}/steal", elsewhere.local_addr().expect("addr"));
    elsewhere.set_nonblocking(true).expect("nonblocking");
    let api = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let api_url = format!("http://{}", api.local_addr().expect("addr"));
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = api.accept() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {thief}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    let target = Some(StatusTarget {
        api_url: reqwest::Url::parse(&api_url).expect("url"),
        token: "tok".into(),
    });
    let sink = CommitStatusSink::new(target, None, Duration::from_secs(5)).expect("sink");
    let result = sink
        .execute(&status(
            CiPlatform::GithubActions,
            "Codertocat/Hello-World",
            CommitState::Pending,
        ))
        .await;
    assert!(!result.success, "{result:?}");
    assert_eq!(result.http_status, Some(307), "{result:?}");
    assert!(
        elsewhere.accept().is_err(),
        "nothing reached the redirect's target"
    );
}
