//! The HTTP, command, GitHub and GitLab step executors, each request checked
//! against a local server for the method, path, headers and body the APIs
//! document; values from payloads checked or escaped before they go anywhere.

use medic::bridge::verify::Verifier;
use medic::domain::{CiPlatform, CiRef, CiStatus};
use medic::executors::command::{CommandActionConfig, CommandConfig, CommandExecutor};
use medic::executors::github::{GithubConfig, GithubExecutor, GithubOperation};
use medic::executors::gitlab::{GitlabConfig, GitlabExecutor, GitlabOperation};
use medic::executors::http::{HttpActionConfig, HttpConfig, HttpExecutor, HttpMethod};
use medic::executors::step::{StepError, StepExecutor, StepRequest};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SHA: &str = "3484a3fb816e0859fd6e1cea078d76385ff50625";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// `METHOD /path?query HTTP/1.1`
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves one scripted (status, body) per request; records each request.
/// Returns the base URL (`http://127.0.0.1:port`).
fn server(replies: Vec<(u16, &'static str)>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Log = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for (stream, (status, body)) in listener.incoming().zip(replies) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let (k, v) = h.trim_end().split_once(':').expect("header line");
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.to_string(), v.trim().to_string()));
            }
            let mut payload = vec![0; length];
            reader.read_exact(&mut payload).expect("body");
            record.lock().expect("lock").push(Seen {
                line: line.trim_end().to_string(),
                headers,
                body: String::from_utf8_lossy(&payload).into_owned(),
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().expect("lock").clone()
}

fn step(action: &str) -> StepRequest {
    StepRequest {
        idempotency_key: "rec-7f3a/2".into(),
        recovery_id: "rec-7f3a".into(),
        deployment_key: "checkout/prod".into(),
        service: "checkout".into(),
        environment: "prod".into(),
        action: action.into(),
        params: BTreeMap::new(),
        ci: None,
        context: None,
        timeout: Duration::from_secs(5),
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The CI run ingest attaches to a failure from this webhook payload.
fn ci_ref(platform: CiPlatform, path: &str, event: &str) -> CiRef {
    let delivery = medic::ci::Delivery {
        event: Some(event),
        delivery_id: Some("d-1"),
        received_at: 1,
    };
    let mut event = medic::ci::normalize(platform, &fixture(path), &delivery)
        .expect("normalizes")
        .expect("an event");
    event.status = CiStatus::Failure;
    medic::stages::ingest::ci_signal(&event, "ci-events", 0, 0)
        .expect("a failure signal")
        .ci
        .expect("a CI run")
}

fn github_run() -> CiRef {
    ci_ref(
        CiPlatform::GithubActions,
        "github/workflow_job/completed.failure.with-organization.payload.json",
        "workflow_job",
    )
}

fn gitlab_job() -> CiRef {
    ci_ref(CiPlatform::GitlabCi, "gitlab/job.json", "Job Hook")
}

fn gitlab_pipeline() -> CiRef {
    ci_ref(
        CiPlatform::GitlabCi,
        "gitlab/pipeline.json",
        "Pipeline Hook",
    )
}

fn assert_permanent(result: Result<impl std::fmt::Debug, StepError>, contains: &str) {
    let e = result.expect_err("the step fails");
    assert!(!e.retryable, "{e:?}");
    assert!(e.detail.contains(contains), "{contains:?} not in {e:?}");
}

// ---------------------------------------------------------------- HTTP

fn http_action(url: String) -> HttpActionConfig {
    HttpActionConfig {
        method: HttpMethod::Post,
        url,
        headers: BTreeMap::new(),
        body: None,
        hmac_secret: None,
    }
}

fn http(actions: Vec<(&str, HttpActionConfig)>) -> HttpExecutor {
    HttpExecutor::new(&HttpConfig {
        actions: actions
            .into_iter()
            .map(|(a, c)| (a.to_string(), c))
            .collect(),
    })
    .expect("valid templates")
}

#[tokio::test]
async fn http_requests_follow_the_template_and_are_signed() {
    let (base, log) = server(vec![(202, "{}")]);
    let mut action = http_action(format!(
        "{base}/api/v1/services/{{service}}/rollback?env={{environment}}&run={{ci.run_id}}&to={{param.to}}"
    ));
    action
        .headers
        .insert("Authorization".into(), "Bearer deploy-token".into());
    action
        .headers
        .insert("X-Recovery".into(), "{recovery_id} {action}".into());
    action.body = Some(json!({
        "service": "{service}",
        "message": "rolling back {service} in {environment}",
        "note": "{param.note}",
        "retries": 3,
        "dry_run": false,
        "targets": ["{deployment_key}", "{ci.commit_sha}"],
        "literal": "{{not a slot}}",
    }));
    action.hmac_secret = Some("hush".into());
    let executor = http(vec![("rollback_deployment", action)]);
    assert!(executor.supports("rollback_deployment") && !executor.supports("restart_service"));

    let mut request = step("rollback_deployment");
    request.environment = "prod eu".into();
    request.params.insert("to".into(), "v1.2&admin=1".into());
    request
        .params
        .insert("note".into(), "said \"go\"\nnow".into());
    request.ci = Some(github_run());
    let done = executor.run(&request).await.expect("succeeds");
    assert_eq!(done.http_status, Some(202));
    assert!(done.detail.starts_with("POST 127.0.0.1:"), "{done:?}");
    assert!(!done.detail.contains("deploy-token"), "{done:?}");

    let seen = seen(&log);
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(
        r.line,
        "POST /api/v1/services/checkout/rollback?env=prod+eu&run=2202229078&to=v1.2%26admin%3D1 HTTP/1.1"
    );
    assert_eq!(r.header("authorization"), Some("Bearer deploy-token"));
    assert_eq!(r.header("x-recovery"), Some("rec-7f3a rollback_deployment"));
    assert_eq!(r.header("idempotency-key"), Some("rec-7f3a/2"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "service": "checkout",
            "message": "rolling back checkout in prod eu",
            "note": "said \"go\"\nnow",
            "retries": 3,
            "dry_run": false,
            "targets": ["checkout/prod", SHA],
            "literal": "{not a slot}",
        })
    );

    // The receiver checks the signature with the bridge's generic scheme.
    let verifier = Verifier {
        platform: CiPlatform::Generic,
        secrets: vec![b"hush".to_vec()],
        tolerance_secs: 300,
        token_header: String::new(),
    };
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert_eq!(
        verifier.verify(headers.as_slice(), None, r.body.as_bytes(), now),
        Ok(())
    );
    let tampered = r.body.replace("checkout", "payments");
    assert!(verifier
        .verify(headers.as_slice(), None, tampered.as_bytes(), now)
        .is_err());
}

#[tokio::test]
async fn http_slot_values_cannot_change_the_path_or_inject_headers() {
    let (base, log) = server(vec![(200, ""), (200, "")]);
    let mut action = http_action(format!("{base}/api/services/{{service}}/restart"));
    action.method = HttpMethod::Put;
    action
        .headers
        .insert("X-Service".into(), "{service}".into());
    let executor = http(vec![("restart_service", action)]);

    for service in ["a/../b", "..", ".", "", "../../admin"] {
        let mut request = step("restart_service");
        request.service = service.into();
        assert_permanent(executor.run(&request).await, "cannot go into a URL path");
    }
    let mut request = step("restart_service");
    request.service = "x y".into();
    executor.run(&request).await.expect("encoded");
    request.service = "a/b?c#d".into();
    executor.run(&request).await.expect("encoded");
    request.service = "x\r\nX-Injected: 1".into();
    assert_permanent(executor.run(&request).await, "cannot go into a header");

    let seen = seen(&log);
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "PUT /api/services/x%20y/restart HTTP/1.1",
            "PUT /api/services/a%2Fb%3Fc%23d/restart HTTP/1.1"
        ]
    );
    assert_eq!(seen[0].header("x-service"), Some("x y"));
    assert!(seen.iter().all(|s| s.header("x-injected").is_none()));
    // No body, no content type, no signature.
    assert!(seen[0].body.is_empty() && seen[0].header("content-type").is_none());
    assert!(seen[0].header("x-medic-signature").is_none());
}

#[test]
fn http_templates_are_checked_at_start() {
    let new = |url: &str, header: Option<&str>| {
        let mut action = http_action(url.into());
        if let Some(h) = header {
            action.headers.insert("X-Thing".into(), h.into());
        }
        HttpExecutor::new(&HttpConfig {
            actions: BTreeMap::from([("rollback_deployment".to_string(), action)]),
        })
    };
    for (url, header, why) in [
        (
            "https://deploy.example/{secret}",
            None,
            "unknown slot {secret}",
        ),
        (
            "https://deploy.example/x?{ci.log}",
            None,
            "unknown slot {ci.log}",
        ),
        (
            "https://deploy.example/x",
            Some("{token}"),
            "unknown slot {token}",
        ),
        (
            "https://{service}.example/x",
            None,
            "not in the scheme, host or port",
        ),
        (
            "https://deploy.example:{param.port}/x",
            None,
            "not in the scheme, host or port",
        ),
        ("file:///etc/passwd", None, "http or https"),
        ("https://deploy.example/{service", None, "without"),
    ] {
        let e = new(url, header).err().unwrap_or_default();
        assert!(e.contains(why), "{url}: {e:?}");
        assert!(e.contains("http.actions.rollback_deployment."), "{e}");
    }
    let yaml = "actions:\n  rollback_deployment:\n    url: https://x/{service}\n    methd: GET\n";
    assert!(serde_yaml_ng::from_str::<HttpConfig>(yaml).is_err());
    let yaml =
        "actions:\n  rollback_deployment:\n    method: DELETE\n    url: https://x/{service}\n";
    let config: HttpConfig = serde_yaml_ng::from_str(yaml).expect("valid");
    assert!(HttpExecutor::new(&config).is_ok());
}

#[tokio::test]
async fn http_server_errors_are_retryable_and_client_errors_are_not() {
    let (base, _log) = server(vec![
        (500, r#"{"message":"upstream down"}"#),
        (404, r#"{"message":"no such service"}"#),
        (429, ""),
    ]);
    let executor = http(vec![(
        "rollback_deployment",
        http_action(format!("{base}/rollback/{{service}}")),
    )]);
    let request = step("rollback_deployment");
    let e = executor.run(&request).await.expect_err("500");
    assert!(e.retryable && e.http_status == Some(500), "{e:?}");
    assert!(e.detail.contains("upstream down"), "{e:?}");
    let e = executor.run(&request).await.expect_err("404");
    assert!(!e.retryable && e.http_status == Some(404), "{e:?}");
    let e = executor.run(&request).await.expect_err("429");
    assert!(e.retryable, "{e:?}");

    // Nobody listening: a connection error, worth another attempt.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let executor = http(vec![(
        "rollback_deployment",
        http_action(format!("http://{addr}/rollback?token=s3cret")),
    )]);
    let e = executor.run(&request).await.expect_err("refused");
    assert!(e.retryable && e.http_status.is_none(), "{e:?}");
    assert!(!e.detail.contains("s3cret"), "{e:?}");

    // A step without the value a slot needs fails without a request.
    let executor = http(vec![(
        "rollback_deployment",
        http_action(format!("{base}/runs/{{ci.run_id}}")),
    )]);
    assert_permanent(executor.run(&request).await, "no CI run");
}

// ---------------------------------------------------------------- command

fn command(action: &str, argv: &[&str]) -> CommandExecutor {
    let config: CommandConfig = serde_json::from_value(json!({
        "actions": {action: {"argv": argv}}
    }))
    .expect("config");
    CommandExecutor::new(&config).expect("valid command")
}

#[tokio::test]
async fn a_command_gets_its_arguments_and_only_the_environment_it_is_given() {
    // Cargo sets this for the test process; the command must not see it.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok());
    let executor = command(
        "restart_service",
        &[
            "/bin/sh",
            "-c",
            r#"printf '%s|%s|%s|%s|\n' "$1" "$2" "$MEDIC_IDEMPOTENCY_KEY" "${{CARGO_PKG_NAME:-unset}}""#,
            "sh",
            "deploy/{service}",
            "{environment}",
        ],
    );
    assert!(executor.supports("restart_service") && !executor.supports("rollback_deployment"));
    let done = executor
        .run(&step("restart_service"))
        .await
        .expect("exit 0");
    assert_eq!(
        done.detail,
        "/bin/sh exited with status 0; stdout: deploy/checkout|prod|rec-7f3a/2|unset|"
    );
    assert_eq!(done.http_status, None);
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_status_and_stderr() {
    let executor = command(
        "rollback_deployment",
        &[
            "/bin/sh",
            "-c",
            "echo progress; echo 'Error from server (NotFound): deployments \"checkout\" not found' >&2; exit 3",
        ],
    );
    let e = executor
        .run(&step("rollback_deployment"))
        .await
        .expect_err("exit 3");
    assert!(!e.retryable, "{e:?}");
    assert_eq!(
        e.detail,
        "/bin/sh exited with status 3; stderr: Error from server (NotFound): deployments \"checkout\" not found"
    );

    let missing = command("rollback_deployment", &["/nonexistent/medic-rollback"]);
    assert_permanent(
        missing.run(&step("rollback_deployment")).await,
        "cannot start /nonexistent/medic-rollback",
    );
}

#[tokio::test]
async fn a_disallowed_value_is_refused_before_anything_runs() {
    let dir = std::env::temp_dir().join(format!("medic-command-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let marker = format!("{}/{{service}}", dir.display());
    let executor = command("restart_service", &["/usr/bin/touch", &marker]);
    for service in [
        "a;b",
        "x y",
        "../escape",
        "a/../b",
        "-rf",
        "$(id)",
        "a\nb",
        "",
    ] {
        let mut request = step("restart_service");
        request.service = service.into();
        assert_permanent(executor.run(&request).await, "nothing was run");
    }
    let created = std::fs::read_dir(&dir).expect("dir").count();
    let mut request = step("restart_service");
    request.service = "checkout".into();
    executor.run(&request).await.expect("runs");
    let after: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(created, 0, "nothing ran for refused values");
    assert_eq!(after, ["checkout"]);

    // Parameters and CI fields are never available to commands.
    let config: CommandConfig = serde_json::from_value(json!({
        "actions": {"shift_traffic": {"argv": ["/usr/bin/true", "{param.percent}"]}}
    }))
    .expect("config");
    let e = CommandExecutor::new(&config).err().unwrap_or_default();
    assert!(
        e.contains("command.actions.shift_traffic.argv[1]") && e.contains("not allowed"),
        "{e}"
    );
    let relative = CommandConfig {
        actions: BTreeMap::from([(
            "restart_service".to_string(),
            CommandActionConfig {
                argv: vec!["kubectl".into()],
                env: BTreeMap::new(),
                inherit_env: vec![],
                working_dir: None,
            },
        )]),
    };
    assert!(CommandExecutor::new(&relative)
        .err()
        .is_some_and(|e| e.contains("absolute path")));
}

#[tokio::test]
async fn a_command_that_outlives_its_attempt_is_killed() {
    let dir = std::env::temp_dir().join(format!("medic-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > {}; exec /usr/bin/sleep 30", pid_file.display());
    let executor = command("restart_service", &["/bin/sh", "-c", &script]);
    let request = step("restart_service");
    let outcome = tokio::time::timeout(Duration::from_millis(500), executor.run(&request)).await;
    assert!(outcome.is_err(), "still running when the attempt timed out");
    let pid = std::fs::read_to_string(&pid_file).expect("pid written");
    let _ = std::fs::remove_dir_all(&dir);
    let stat = format!("/proc/{}/stat", pid.trim());
    let gone = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(&stat).map_or(true, |s| s.contains(") Z "))
    });
    assert!(gone, "the process was killed");
}

// ---------------------------------------------------------------- GitHub

fn github(base: &str, operations: &[(&str, GithubOperation)]) -> GithubExecutor {
    let mut config = GithubConfig {
        api_url: base.into(),
        token: "ghs_test".into(),
        ..GithubConfig::default()
    };
    if !operations.is_empty() {
        config.operations = operations
            .iter()
            .map(|(a, o)| (a.to_string(), *o))
            .collect();
    }
    GithubExecutor::new(&config).expect("valid config")
}

fn github_step(action: &str) -> StepRequest {
    let mut request = step(action);
    request.ci = Some(github_run());
    request
}

fn assert_github_headers(r: &Seen) {
    assert_eq!(r.header("authorization"), Some("Bearer ghs_test"));
    assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(r.header("user-agent"), Some("medic"));
    assert_eq!(r.header("idempotency-key"), Some("rec-7f3a/2"));
}

#[tokio::test]
async fn github_reruns_failed_jobs_and_cancels_the_run_behind_the_failure() {
    let (base, log) = server(vec![(201, ""), (202, "")]);
    let executor = github(
        &base,
        &[
            ("retry_deployment", GithubOperation::RerunFailedJobs),
            ("abort_deployment", GithubOperation::CancelRun),
        ],
    );
    let done = executor
        .run(&github_step("retry_deployment"))
        .await
        .expect("rerun");
    assert_eq!(done.http_status, Some(201));
    assert_eq!(
        done.detail,
        "re-run failed jobs of Codertocat/Hello-World run 2202229078: HTTP 201"
    );
    let done = executor
        .run(&github_step("abort_deployment"))
        .await
        .expect("cancel");
    assert_eq!(done.http_status, Some(202));

    let seen = seen(&log);
    assert_eq!(
        seen[0].line,
        "POST /repos/Codertocat/Hello-World/actions/runs/2202229078/rerun-failed-jobs HTTP/1.1"
    );
    assert_eq!(
        seen[1].line,
        "POST /repos/Codertocat/Hello-World/actions/runs/2202229078/cancel HTTP/1.1"
    );
    for r in &seen {
        assert_github_headers(r);
        assert!(r.body.is_empty());
    }
    // The default mapping.
    let default = github(&base, &[]);
    assert!(default.supports("retry_deployment") && !default.supports("abort_deployment"));
}

#[tokio::test]
async fn github_deployment_status_creates_a_deployment_then_its_status() {
    let (base, log) = server(vec![
        (
            201,
            r#"{"id": 1234567, "sha": "3484a3fb816e0859fd6e1cea078d76385ff50625"}"#,
        ),
        (201, r#"{"id": 1, "state": "in_progress"}"#),
    ]);
    let executor = github(
        &base,
        &[("report_deployment", GithubOperation::DeploymentStatus)],
    );
    let mut request = github_step("report_deployment");
    request.params.insert("state".into(), "in_progress".into());
    let done = executor.run(&request).await.expect("both requests");
    assert_eq!(
        done.detail,
        "in_progress status on deployment 1234567 of Codertocat/Hello-World: HTTP 201"
    );

    let seen = seen(&log);
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].line,
        "POST /repos/Codertocat/Hello-World/deployments HTTP/1.1"
    );
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        json!({
            "ref": SHA,
            "environment": "prod",
            "auto_merge": false,
            "required_contexts": [],
            "description": "medic recovery rec-7f3a",
        })
    );
    assert_eq!(
        seen[1].line,
        "POST /repos/Codertocat/Hello-World/deployments/1234567/statuses HTTP/1.1"
    );
    assert_eq!(
        seen[1].json(),
        json!({
            "state": "in_progress",
            "description": "medic recovery rec-7f3a",
            "environment": "prod",
        })
    );
    for r in &seen {
        assert_github_headers(r);
    }

    // A state GitHub does not know is refused before any request.
    let mut request = github_step("report_deployment");
    request.params.insert("state".into(), "rolled_back".into());
    assert_permanent(
        executor.run(&request).await,
        "not a GitHub deployment state",
    );
    assert_eq!(log.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn github_refuses_failures_without_a_github_run() {
    let (base, log) = server(vec![(201, "")]);
    let executor = github(&base, &[]);
    assert_permanent(
        executor.run(&step("retry_deployment")).await,
        "the failure has no GitHub Actions run",
    );
    let mut request = step("retry_deployment");
    request.ci = Some(gitlab_job());
    assert_permanent(
        executor.run(&request).await,
        "no GitHub Actions run: it came from gitlab_ci",
    );
    for (repository, run_id, why) in [
        ("Codertocat/../admin", "2202229078", "not owner/name"),
        ("Codertocat/Hello-World/x", "2202229078", "not owner/name"),
        ("Codertocat/Hello-World", "1/../../x", "not a number"),
    ] {
        let mut request = github_step("retry_deployment");
        if let Some(ci) = request.ci.as_mut() {
            ci.repository = Some(repository.into());
            ci.run_id = Some(run_id.into());
        }
        assert_permanent(executor.run(&request).await, why);
    }
    assert!(seen(&log).is_empty(), "nothing was sent");
}

#[tokio::test]
async fn github_server_errors_are_retryable_and_not_found_is_not() {
    let (base, _log) = server(vec![
        (502, ""),
        (
            404,
            r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#,
        ),
    ]);
    let executor = github(&base, &[]);
    let e = executor
        .run(&github_step("retry_deployment"))
        .await
        .expect_err("502");
    assert!(e.retryable && e.http_status == Some(502), "{e:?}");
    let e = executor
        .run(&github_step("retry_deployment"))
        .await
        .expect_err("404");
    assert!(!e.retryable && e.http_status == Some(404), "{e:?}");
    assert!(e.detail.ends_with("HTTP 404: Not Found"), "{e:?}");
    assert!(!e.detail.contains("ghs_test"), "{e:?}");
}

// ---------------------------------------------------------------- GitLab

fn gitlab(base: &str, operations: &[(&str, GitlabOperation)]) -> GitlabExecutor {
    let mut config = GitlabConfig {
        api_url: format!("{base}/api/v4"),
        token: "glpat-test".into(),
        ..GitlabConfig::default()
    };
    if !operations.is_empty() {
        config.operations = operations
            .iter()
            .map(|(a, o)| (a.to_string(), *o))
            .collect();
    }
    GitlabExecutor::new(&config).expect("valid config")
}

#[tokio::test]
async fn gitlab_retries_the_failed_job_or_the_pipeline_and_cancels_pipelines() {
    let (base, log) = server(vec![(201, "{}"), (201, "{}"), (200, "{}")]);
    let executor = gitlab(
        &base,
        &[
            ("retry_deployment", GitlabOperation::Retry),
            ("abort_deployment", GitlabOperation::Cancel),
        ],
    );
    // A job event: the job is retried.
    let mut request = step("retry_deployment");
    request.ci = Some(gitlab_job());
    let done = executor.run(&request).await.expect("job retry");
    assert_eq!(
        done.detail,
        "retry job 3580121225 of project 31537070: HTTP 201"
    );
    // A pipeline event of a project named by path: the pipeline is retried,
    // the path is one encoded segment.
    let mut pipeline = gitlab_pipeline();
    pipeline.repository = Some("gitlab-org/gitlab-test".into());
    let mut request = step("retry_deployment");
    request.ci = Some(pipeline.clone());
    executor.run(&request).await.expect("pipeline retry");
    let mut request = step("abort_deployment");
    request.ci = Some(pipeline);
    let done = executor.run(&request).await.expect("cancel");
    assert_eq!(done.http_status, Some(200));

    let seen = seen(&log);
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "POST /api/v4/projects/31537070/jobs/3580121225/retry HTTP/1.1",
            "POST /api/v4/projects/gitlab-org%2Fgitlab-test/pipelines/31/retry HTTP/1.1",
            "POST /api/v4/projects/gitlab-org%2Fgitlab-test/pipelines/31/cancel HTTP/1.1",
        ]
    );
    for r in &seen {
        assert_eq!(r.header("private-token"), Some("glpat-test"));
        assert_eq!(r.header("idempotency-key"), Some("rec-7f3a/2"));
        assert!(r.header("authorization").is_none());
    }
}

#[tokio::test]
async fn gitlab_refuses_failures_without_a_gitlab_pipeline() {
    let (base, log) = server(vec![(500, r#"{"message":"500 Internal Server Error"}"#)]);
    let executor = gitlab(&base, &[]);
    let mut request = step("retry_deployment");
    request.ci = Some(github_run());
    assert_permanent(
        executor.run(&request).await,
        "no GitLab CI run: it came from github_actions",
    );
    assert_permanent(
        executor.run(&step("retry_deployment")).await,
        "the failure has no GitLab CI run",
    );
    for (project, why) in [
        ("a/../b", "not a GitLab project"),
        ("group/project?x=1", "not a GitLab project"),
        ("", "not a GitLab project"),
    ] {
        let mut ci = gitlab_pipeline();
        ci.repository = Some(project.into());
        let mut request = step("retry_deployment");
        request.ci = Some(ci);
        assert_permanent(executor.run(&request).await, why);
    }
    let mut ci = gitlab_pipeline();
    ci.run_id = None;
    let mut request = step("retry_deployment");
    request.ci = Some(ci);
    assert_permanent(executor.run(&request).await, "no pipeline id");
    assert!(seen(&log).is_empty(), "nothing was sent");

    // Server errors are retryable.
    let mut request = step("retry_deployment");
    request.ci = Some(gitlab_pipeline());
    let e = executor.run(&request).await.expect_err("500");
    assert!(e.retryable && e.http_status == Some(500), "{e:?}");
    assert!(!e.detail.contains("glpat-test"), "{e:?}");
}

#[tokio::test]
async fn a_command_that_leaves_a_process_behind_still_finishes() {
    // The background sleep keeps stdout open after the shell has exited.
    let executor = command(
        "restart_service",
        &["/bin/sh", "-c", "/usr/bin/sleep 3 & echo restarted"],
    );
    let started = std::time::Instant::now();
    let done = executor
        .run(&step("restart_service"))
        .await
        .expect("exit 0");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        done.detail,
        "/bin/sh exited with status 0; stdout: restarted"
    );
}
