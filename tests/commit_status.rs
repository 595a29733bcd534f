//! What medic writes back to the CI run: commit statuses on GitHub and
//! GitLab, build descriptions on Jenkins and build tags on Azure DevOps,
//! checked against local servers scripted to follow each platform's
//! documented REST API (method, path, query, headers, body, answers).

mod common;

use common::http::{server, server_replying};
use common::*;
use medic::config::StatusApi;
use medic::domain::*;
use medic::executors::{CommitStatusSink, Executor, StatusTarget, StatusTargets};
use medic::stages::notify::StatusReport;
use medic::stages::{CommitState, EffectRequest, StageName};
use serde_json::Value;
use std::time::Duration;

const SHA: &str = "3484a3fb816e0859fd6e1cea078d76385ff50625";

fn base(url: &str) -> String {
    url.trim_end_matches("/hooks/medic").to_string()
}

fn ci(platform: CiPlatform, repository: &str, url: &str, run: &str) -> CiRef {
    CiRef {
        event_id: "e-1".into(),
        platform: platform.as_str().into(),
        status: "failure".into(),
        pipeline: "deploy".into(),
        job: None,
        url: Some(url.into()),
        commit_sha: Some(SHA.into()),
        repository: Some(repository.into()),
        run_id: Some(run.into()),
        job_id: None,
    }
}

fn report(should_retry: Option<bool>) -> StatusReport {
    StatusReport {
        failure: "high network failure".into(),
        action: "network_recovery succeeded (open_circuit_breaker, clear_cache)".into(),
        should_retry_deployment: should_retry,
        recommendations: match should_retry {
            Some(true) => vec!["Retry the deployment unchanged: the failure was transient".into()],
            _ => Vec::new(),
        },
        target_url: Some("https://github.com/Codertocat/Hello-World/runs/1".into()),
    }
}

fn request(ci: CiRef, state: CommitState) -> EffectRequest {
    let platform = ci.platform.parse().expect("platform");
    let should_retry = (state != CommitState::Pending).then_some(true);
    EffectRequest::CommitStatus {
        idempotency_key: "k".into(),
        platform,
        ci: Box::new(ci),
        state,
        report: Box::new(report(should_retry)),
    }
}

fn status(platform: CiPlatform, repository: &str, state: CommitState) -> EffectRequest {
    request(
        ci(
            platform,
            repository,
            "https://github.com/Codertocat/Hello-World/runs/1",
            "1",
        ),
        state,
    )
}

fn target(api: &str) -> Option<StatusTarget> {
    Some(StatusTarget {
        api_url: reqwest::Url::parse(api).expect("url"),
        token: "tok".into(),
        user: Some("medic-bot".into()),
    })
}

fn sink(targets: StatusTargets) -> CommitStatusSink {
    CommitStatusSink::new(targets, Duration::from_secs(5)).expect("sink")
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
    let sink = sink(StatusTargets {
        github: target(&base(&url)),
        gitlab: target(&format!("{}/api/v4", base(&url))),
        ..Default::default()
    });

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
    let description = body["description"].as_str().unwrap_or_default();
    assert!(description.chars().count() <= 140, "{description}");
    assert!(
        description.starts_with("medic: high network failure; network_recovery succeeded")
            && description.contains("retry recommended"),
        "type, action and retry advice: {description}"
    );

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
    let sink = sink(StatusTargets {
        github: target(&base(&url)),
        ..Default::default()
    });
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
        token: Some("tok".into()),
        ..StatusApi::at(&base(&url))
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
    let sink = sink(StatusTargets {
        github: target(&api_url),
        ..Default::default()
    });
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

fn form_field(body: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn basic(user_and_token: &str) -> String {
    use base64::Engine;
    format!(
        "authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_and_token)
    )
}

/// Jenkins: `POST {root}/job/<folder>/job/<name>/<n>/submitDescription`,
/// form field `description`, Basic auth with the user's API token. Jenkins
/// answers `302 Found` to the build page, which is success; a redirect to
/// the login page is not.
#[tokio::test]
async fn jenkins_gets_the_build_description_its_api_documents() {
    let build_page = "Location: http://ci.example.com/jenkins/job/team/job/check%20out/18/";
    let (url, seen) = server_replying(vec![
        (302, vec![build_page.into()], ""),
        (
            302,
            vec!["Location: http://ci.example.com/jenkins/login?from=%2Fjob".into()],
            "",
        ),
    ]);
    let sink = sink(StatusTargets {
        jenkins: target(&format!("{}/jenkins/", base(&url))),
        ..Default::default()
    });
    // The payload's host is not where the request goes: the configured root is.
    let run = ci(
        CiPlatform::Jenkins,
        "asgard",
        "http://jenkins.internal:8080/job/team/job/check%20out/18/",
        "18",
    );
    let done = sink
        .execute(&request(run.clone(), CommitState::Success))
        .await;
    assert!(done.success, "{done:?}");
    assert_eq!(done.http_status, Some(302));
    let to_login = sink.execute(&request(run, CommitState::Success)).await;
    assert!(!to_login.success, "{to_login:?}");

    let seen = seen.lock().expect("lock");
    let (headers, body) = &seen[0];
    assert_eq!(
        headers[0],
        "POST /jenkins/job/team/job/check%20out/18/submitDescription HTTP/1.1"
    );
    assert!(has(headers, &basic("medic-bot:tok")), "{headers:?}");
    assert!(
        has(headers, "content-type: application/x-www-form-urlencoded"),
        "{headers:?}"
    );
    let description = form_field(body, "description").expect("description field");
    assert_eq!(
        description.lines().collect::<Vec<_>>(),
        [
            "medic: high network failure",
            "Action: network_recovery succeeded (open_circuit_breaker, clear_cache)",
            "Retry the deployment: yes",
            "- Retry the deployment unchanged: the failure was transient",
        ]
    );
}

#[tokio::test]
async fn a_jenkins_build_url_cannot_steer_the_request() {
    let (url, seen) = server(vec![302]);
    let sink = sink(StatusTargets {
        jenkins: target(&base(&url)),
        ..Default::default()
    });
    for link in [
        "http://j/job/a/%2e%2e/18/",
        "http://j/job/a%2Fb/18/",
        "http://j/job/a/18/../../script",
        "http://j/job/a/19/",
        "http://j/manage/18/",
    ] {
        let run = ci(CiPlatform::Jenkins, "a", link, "18");
        let result = sink.execute(&request(run, CommitState::Failure)).await;
        assert!(
            !result.success && result.attempts == 0,
            "{link}: {result:?}"
        );
    }
    assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");
}

/// Azure DevOps "Tags - Update Build Tags": `PATCH
/// {organization}/{project}/_apis/build/builds/{buildId}/tags?api-version=7.1`
/// with `{tagsToAdd, tagsToRemove}`, Basic auth with an empty user and a PAT.
#[tokio::test]
async fn azure_devops_gets_build_tags_its_api_documents() {
    let (url, seen) = server_replying(vec![
        (200, vec![], r#"{"count":2,"value":["medic: recovering"]}"#),
        (200, vec![], r#"{"count":4,"value":[]}"#),
    ]);
    let sink = sink(StatusTargets {
        azure_devops: target(&format!("{}/fabrikam", base(&url))),
        ..Default::default()
    });
    let run = ci(
        CiPlatform::AzureDevops,
        "repo-id",
        "https://dev.azure.com/fabrikam/Fabrikam%20Fiber/_build/results?buildId=2",
        "2",
    );
    let pending = sink
        .execute(&request(run.clone(), CommitState::Pending))
        .await;
    assert!(pending.success, "{pending:?}");
    let done = sink.execute(&request(run, CommitState::Success)).await;
    assert!(done.success, "{done:?}");

    let seen = seen.lock().expect("lock");
    for (headers, _) in seen.iter() {
        assert_eq!(
            headers[0],
            "PATCH /fabrikam/Fabrikam%20Fiber/_apis/build/builds/2/tags?api-version=7.1 HTTP/1.1"
        );
        assert!(has(headers, &basic(":tok")), "{headers:?}");
        assert!(
            has(headers, "content-type: application/json"),
            "{headers:?}"
        );
    }
    let first = body_of(&seen[0]);
    assert_eq!(
        first["tagsToAdd"],
        serde_json::json!(["medic: high network failure", "medic: recovering"])
    );
    assert_eq!(first["tagsToRemove"], serde_json::json!([]));
    let last = body_of(&seen[1]);
    assert_eq!(
        last["tagsToRemove"],
        serde_json::json!(["medic: recovering"])
    );
    let added: Vec<&str> = last["tagsToAdd"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        added,
        [
            "medic: high network failure",
            "medic: network_recovery succeeded (open_circuit_breaker; clear_cache)",
            "medic: retry recommended",
            "medic: Retry the deployment unchanged: the failure was transient",
        ]
    );
}

/// A Jenkins build and an Azure Pipelines build fail; medic recovers both
/// and writes back the type, the action, the retry advice and its
/// recommendations to each platform's scripted API.
#[test]
fn recoveries_of_jenkins_and_azure_builds_are_written_back() {
    let (jenkins, jenkins_seen) = server_replying(
        (0..2)
            .map(|_| (302, vec!["Location: /job/asgard/18/".to_string()], ""))
            .collect(),
    );
    let (azure, azure_seen) = server_replying((0..2).map(|_| (200, vec![], "{}")).collect());
    let mut c = embedded("writeback");
    c.config.notify.jenkins_status = StatusApi {
        token: Some("jenkins-token".into()),
        user: Some("medic-bot".into()),
        ..StatusApi::at(&base(&jenkins))
    };
    c.config.notify.azure_devops_status = StatusApi {
        token: Some("pat".into()),
        ..StatusApi::at(&format!("{}/DefaultCollection", base(&azure)))
    };
    let read = |path: &str| {
        let bytes = std::fs::read(format!(
            "{}/tests/data/webhooks/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture");
        let body = bytes
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(&bytes)
            .to_vec();
        serde_json::from_slice::<Value>(&body).expect("JSON")
    };
    let mut jenkins_payload = read("jenkins/notification-plugin-example.json");
    jenkins_payload["build"]["status"] = "FAILURE".into();
    jenkins_payload["build"]["log"] =
        "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://registry.npmjs.org/left-padd - Not found"
            .into();
    // The current Build resource shape: `status: completed`, `result: failed`.
    let mut azure_payload = read("azure-devops/build.complete.json");
    azure_payload["resource"]["status"] = "completed".into();
    azure_payload["resource"]["result"] = "failed".into();
    let delivery = medic::ci::Delivery {
        event: None,
        delivery_id: None,
        received_at: 1,
    };
    for (platform, payload) in [
        (CiPlatform::Jenkins, jenkins_payload),
        (CiPlatform::AzureDevops, azure_payload),
    ] {
        let event = medic::ci::normalize(platform, payload.to_string().as_bytes(), &delivery)
            .expect("ok")
            .expect("event");
        c.produce_avro(&c.topics.ci_events, &event.service, &event);
    }
    let running = c.start(&StageName::ALL);
    let any_body = |seen: &common::http::Seen, done: &dyn Fn(&str) -> bool| {
        seen.lock()
            .map(|s| s.iter().any(|(_, body)| done(body)))
            .unwrap_or(false)
    };
    assert!(
        wait_until(Duration::from_secs(90), || {
            any_body(&jenkins_seen, &|b| {
                form_field(b, "description").is_some_and(|d| d.contains("Retry the deployment:"))
            }) && any_body(&azure_seen, &|b| {
                serde_json::from_str::<Value>(b)
                    .is_ok_and(|v| v["tagsToRemove"] == serde_json::json!(["medic: recovering"]))
            })
        }),
        "both final write-backs arrive"
    );
    drop(running);

    let jenkins_seen = jenkins_seen.lock().expect("lock");
    let (headers, body) = jenkins_seen.last().expect("a description");
    assert_eq!(headers[0], "POST /job/asgard/18/submitDescription HTTP/1.1");
    let description = form_field(body, "description").expect("description");
    assert!(
        description.starts_with("medic: ") && description.contains("dependency failure"),
        "{description}"
    );
    assert!(description.contains("\nAction: "), "{description}");
    assert!(
        description.contains("\nRetry the deployment: no"),
        "{description}"
    );
    assert!(
        description.contains("\n- "),
        "a recommendation: {description}"
    );

    let azure_seen = azure_seen.lock().expect("lock");
    let (headers, body) = azure_seen.last().expect("tags");
    assert_eq!(
        headers[0],
        "PATCH /DefaultCollection/71777fbc-1cf2-4bd1-9540-128c1c71f766/_apis/build/builds/2/tags?api-version=7.1 HTTP/1.1"
    );
    let tags = serde_json::from_str::<Value>(body).expect("JSON")["tagsToAdd"].clone();
    let tags: Vec<&str> = tags
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tags.iter().all(|t| t.starts_with("medic: ")), "{tags:?}");
    assert!(
        tags.iter()
            .any(|t| *t == "medic: retry recommended" || *t == "medic: no retry"),
        "{tags:?}"
    );
}
