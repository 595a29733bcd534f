//! Every CI payload in `tests/data/webhooks/` (copied from the platforms' own
//! examples, see the README there) normalizes as the platform means it: a
//! failure becomes a `CiEvent` with its fields, an event medic has no use for
//! is accepted without an event, a malformed one is rejected with a reason.

use medic::ci::{normalize, Delivery, NormalizeError};
use medic::domain::{CiEvent, CiPlatform, CiStatus};
use std::path::{Path, PathBuf};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/webhooks")
        .join(path)
}

fn run(
    platform: CiPlatform,
    path: &str,
    event: Option<&str>,
) -> Result<Option<CiEvent>, NormalizeError> {
    let body = std::fs::read(data(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    normalize(
        platform,
        &body,
        &Delivery {
            event,
            delivery_id: None,
            received_at: 1,
        },
    )
}

fn event(platform: CiPlatform, path: &str, header: Option<&str>) -> CiEvent {
    run(platform, path, header)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .unwrap_or_else(|| panic!("{path}: no event"))
}

fn files(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![data(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(
                    path.strip_prefix(data(""))
                        .expect("prefix")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_payload_is_an_event_an_accepted_no_op_or_a_clear_rejection() {
    let mut counted = 0;
    for (platform, dir) in [
        (CiPlatform::GithubActions, "github"),
        (CiPlatform::GitlabCi, "gitlab"),
        (CiPlatform::Circleci, "circleci"),
        (CiPlatform::AzureDevops, "azure-devops"),
        (CiPlatform::Jenkins, "jenkins"),
    ] {
        for path in files(dir) {
            counted += 1;
            // GitHub names the event in a header: here, the fixture's folder.
            let header = (platform == CiPlatform::GithubActions)
                .then(|| path.split('/').nth(1).unwrap_or_default().to_string());
            let result = run(platform, &path, header.as_deref());
            if path.contains("/bad.") {
                let err = result.expect_err(&path);
                assert!(
                    matches!(
                        err,
                        NormalizeError::Missing { .. } | NormalizeError::UnknownEvent(_)
                    ),
                    "{path}: {err}"
                );
                continue;
            }
            match result {
                Err(e) => panic!("{path}: rejected: {e}"),
                Ok(None) => {}
                Ok(Some(e)) => {
                    assert_eq!(e.platform, platform, "{path}");
                    assert!(
                        !e.service.is_empty() && !e.run_id.is_empty() && !e.id.is_empty(),
                        "{path}: {e:?}"
                    );
                }
            }
        }
    }
    assert_eq!(counted, 67, "every payload in tests/data/webhooks");
}

#[test]
fn github_payloads_carry_their_run_and_failure() {
    let job = event(
        CiPlatform::GithubActions,
        "github/workflow_job/completed.failure.with-organization.payload.json",
        Some("workflow_job"),
    );
    assert_eq!(
        (job.status, job.service.as_str(), job.pipeline.as_str()),
        (CiStatus::Failure, "Hello-World", "CodeQL")
    );
    assert_eq!(job.failed_steps, ["Run yarn run format-check"]);
    assert_eq!(
        job.commit_sha.as_deref(),
        Some("3484a3fb816e0859fd6e1cea078d76385ff50625")
    );
    let check = event(
        CiPlatform::GithubActions,
        "github/check_run/completed.1.payload.json",
        Some("check_run"),
    );
    assert_eq!(check.status, CiStatus::Failure);
    let wf_run = event(
        CiPlatform::GithubActions,
        "github/workflow_run/requested.with-conclusion.payload.json",
        Some("workflow_run"),
    );
    assert_eq!(
        wf_run.status,
        CiStatus::Failure,
        "action_required needs a human: not a success"
    );
    let deploy = event(
        CiPlatform::GithubActions,
        "github/deployment_status/payload.json",
        Some("deployment_status"),
    );
    assert_eq!(
        (deploy.status, deploy.environment.as_str()),
        (CiStatus::Success, "production")
    );
    let queued = event(
        CiPlatform::GithubActions,
        "github/workflow_job/queued.payload.json",
        Some("workflow_job"),
    );
    assert_eq!(queued.status, CiStatus::Queued);
    assert_eq!(
        run_unused(
            CiPlatform::GithubActions,
            "github/push/payload.json",
            Some("push")
        ),
        None
    );
    let unknown = run(
        CiPlatform::GithubActions,
        "github/push/payload.json",
        Some("pushed_harder"),
    )
    .unwrap_err();
    assert_eq!(unknown.to_string(), "unknown event type pushed_harder");
}

fn run_unused(platform: CiPlatform, path: &str, header: Option<&str>) -> Option<CiEvent> {
    run(platform, path, header).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn gitlab_payloads_carry_environment_and_failure_reason() {
    let pipeline = event(CiPlatform::GitlabCi, "gitlab/pipeline.json", None);
    assert_eq!(
        (pipeline.status, pipeline.service.as_str()),
        (CiStatus::Success, "gitlab-test")
    );
    let build = event(CiPlatform::GitlabCi, "gitlab/build.json", None);
    assert_eq!(build.status, CiStatus::Queued, "build_status created");
    assert_eq!(
        build.failure_reason.as_deref(),
        Some("script_failure"),
        "GitLab sends the reason even before the job runs"
    );
    let deployment = event(CiPlatform::GitlabCi, "gitlab/deployment.json", None);
    assert_eq!(
        (deployment.status, deployment.environment.as_str()),
        (CiStatus::Success, "staging")
    );
    for unused in [
        "gitlab/push.json",
        "gitlab/tag_push.json",
        "gitlab/merge_request.json",
        "gitlab/release.json",
        "gitlab/feature_flag.json",
    ] {
        assert_eq!(
            run_unused(CiPlatform::GitlabCi, unused, None),
            None,
            "{unused}"
        );
    }
}

/// GitLab system hooks as documented (administration/system_hooks): an
/// `event_name` and no `object_kind`. Accepted and ignored, not rejected.
#[test]
fn gitlab_system_hooks_are_accepted_and_ignored() {
    for body in [
        r#"{"created_at":"2012-07-21T07:30:54Z","updated_at":"2012-07-21T07:38:22Z","event_name":"project_create","name":"StoreCloud","owner_email":"johnsmith@example.com","owner_name":"John Smith","owners":[{"name":"John","email":"user1@example.com"}],"path":"storecloud","path_with_namespace":"jsmith/storecloud","project_id":74,"project_namespace_id":23,"project_visibility":"private"}"#,
        r#"{"event_name":"repository_update","user_id":1,"user_name":"John Smith","user_email":"admin@example.com","user_avatar":"https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=8://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=80","project_id":1,"project":{"name":"Example","path_with_namespace":"jsmith/example"},"changes":[{"before":"8205ea8d81ce0c6b90fbe8280d118cc9fdad6130","after":"4045ea7a3df38697b3730a20fb73c8bed8a3e69e","ref":"refs/heads/master"}],"refs":["refs/heads/master"]}"#,
    ] {
        let ignored = normalize(CiPlatform::GitlabCi, body.as_bytes(), &Delivery::default());
        assert!(matches!(ignored, Ok(None)), "{ignored:?}");
    }
    let neither = normalize(CiPlatform::GitlabCi, b"{\"id\":1}", &Delivery::default());
    assert!(neither.is_err());
}

#[test]
fn circleci_azure_and_jenkins_payloads() {
    let failed = event(
        CiPlatform::Circleci,
        "circleci/workflow-completed-gitlab.json",
        None,
    );
    assert_eq!(
        (
            failed.status,
            failed.service.as_str(),
            failed.pipeline.as_str()
        ),
        (CiStatus::Failure, "hello-world", "build")
    );
    let ok = event(
        CiPlatform::Circleci,
        "circleci/workflow-completed-for-github-and-bitbucket.json",
        None,
    );
    assert_eq!(
        (ok.status, ok.service.as_str()),
        (CiStatus::Success, "webhook-service")
    );
    assert_eq!(
        ok.commit_sha.as_deref(),
        Some("1dc6aa69429bff4806ad6afe58d3d8f57e25973e")
    );

    let build = event(
        CiPlatform::AzureDevops,
        "azure-devops/build.complete.json",
        None,
    );
    assert_eq!(
        (build.status, build.pipeline.as_str()),
        (CiStatus::Success, "ConsumerAddressModule")
    );
    assert_eq!(build.branch.as_deref(), Some("refs/heads/main"));
    assert_eq!(
        build.commit_sha.as_deref(),
        Some("600c52d2d5b655caa111abfd863e5a9bd304bb0e")
    );
    // The Build resource of the current REST API (Builds - Get: `status` is
    // a BuildStatus such as `completed`, the verdict is `result`, a
    // BuildResult): derived from the fixture, which has the older shape.
    let fixture = std::fs::read(data("azure-devops/build.complete.json")).expect("fixture");
    // Azure DevOps sends (and the fixture holds) a UTF-8 byte order mark.
    let body = fixture.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&fixture);
    let mut current: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    current["resource"]["status"] = "completed".into();
    for (result, expected) in [
        ("failed", CiStatus::Failure),
        ("partiallySucceeded", CiStatus::Failure),
        ("succeeded", CiStatus::Success),
        ("canceled", CiStatus::Cancelled),
    ] {
        current["resource"]["result"] = result.into();
        let e = normalize(
            CiPlatform::AzureDevops,
            current.to_string().as_bytes(),
            &Delivery::default(),
        )
        .expect("normalizes")
        .expect("an event");
        assert_eq!(e.status, expected, "{result}");
        if expected == CiStatus::Failure {
            assert_eq!(e.failure_reason.as_deref(), Some(result));
        }
    }
    let abandoned = event(
        CiPlatform::AzureDevops,
        "azure-devops/release.abandoned.json",
        None,
    );
    assert_eq!(abandoned.status, CiStatus::Cancelled);
    assert_eq!(
        run_unused(CiPlatform::AzureDevops, "azure-devops/git.push.json", None),
        None
    );
    let missing = run(
        CiPlatform::AzureDevops,
        "azure-devops/bad.noEventType.json",
        None,
    )
    .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "azure-devops: missing or invalid field /eventType"
    );
    let unknown = run(
        CiPlatform::AzureDevops,
        "azure-devops/bad.notMappedEventType.json",
        None,
    )
    .unwrap_err();
    assert_eq!(unknown.to_string(), "unknown event type unknownType");

    let jenkins = event(
        CiPlatform::Jenkins,
        "jenkins/notification-plugin-example.json",
        None,
    );
    assert_eq!(
        (
            jenkins.status,
            jenkins.service.as_str(),
            jenkins.pipeline.as_str()
        ),
        (CiStatus::Success, "asgard", "asgard")
    );
    assert_eq!(
        jenkins.url.as_deref(),
        Some("http://localhost:8080/job/asgard/18/")
    );
}

#[test]
fn the_generic_format_is_strict() {
    let d = Delivery {
        event: None,
        delivery_id: Some("gen-1"),
        received_at: 5,
    };
    let ok = br#"{"id": "b-1", "status": "failure", "service": "checkout", "environment": "prod", "run_id": "4711", "failure_reason": "helm upgrade failed"}"#;
    let e = normalize(CiPlatform::Generic, ok, &d)
        .expect("ok")
        .expect("event");
    assert_eq!(
        (e.id.as_str(), e.status, e.environment.as_str()),
        ("gen-1", CiStatus::Failure, "prod")
    );
    let typo = br#"{"id": "b-1", "status": "failure", "service": "checkout", "run_id": "1", "enviroment": "prod"}"#;
    let err = normalize(CiPlatform::Generic, typo, &d)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `enviroment`"), "{err}");
}
