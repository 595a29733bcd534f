//! The pipeline on the embedded cluster (exactly-once unless a test says
//! otherwise): what goes in, what comes out, poison records, crash recovery
//! and scaling out.

mod common;

use common::*;
use medic::codec;
use medic::domain::*;
use medic::executors::{BoxFuture, DryRun, Executor, Executors, Unconfigured};
use medic::stages::{EffectRequest, EffectResult, StageName};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

fn fluent_bit_line(pod: &str, namespace: &str, text: &str) -> Vec<u8> {
    serde_json::json!({
        "@timestamp": 1764400000.25,
        "log": format!("{text}\n"),
        "stream": "stderr",
        "kubernetes": {"pod_name": pod, "namespace_name": namespace, "container_name": "cart", "labels": {"app": "cart"}}
    })
    .to_string()
    .into_bytes()
}

fn ci_failure(service: &str, environment: &str) -> CiEvent {
    CiEvent {
        id: format!("gitlab/job/{service}"),
        platform: CiPlatform::GitlabCi,
        event_type: "Job Hook".into(),
        status: CiStatus::Failure,
        service: service.into(),
        environment: environment.into(),
        pipeline: "pipeline 7".into(),
        job: Some("deploy".into()),
        run_id: "7".into(),
        run_attempt: 1,
        commit_sha: None,
        branch: Some("main".into()),
        url: None,
        actor: None,
        failure_reason: Some("script_failure".into()),
        failed_steps: vec!["deploy".into()],
        log_excerpt: Some("Last State: Terminated  Reason: OOMKilled  Exit Code: 137".into()),
        started_at: None,
        finished_at: Some(1_764_400_001_000),
        received_at: 1_764_400_001_500,
        repository: Some("shop/cart".into()),
    }
}

#[test]
fn a_failing_deployment_becomes_exactly_one_plan_and_one_outcome() {
    let c = embedded("e2e");
    for i in 0..50 {
        c.produce(
            &c.topics.logs_raw,
            None,
            &fluent_bit_line(
                "cart-7d9f8b6c5-x2x9q",
                "staging",
                &format!("Memory cgroup out of memory: Kill process {i} (cart)"),
            ),
        );
    }
    c.produce(
        &c.topics.logs_raw,
        None,
        &fluent_bit_line("cart-7d9f8b6c5-x2x9q", "staging", "GET /cart 200 OK"),
    );
    c.produce_avro(
        &c.topics.ci_events,
        "cart/staging",
        &ci_failure("cart", "staging"),
    );
    let running = c.start(&StageName::ALL);

    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let outcome = &outcomes[0];
    assert_eq!(outcome.deployment_key, "cart/staging");
    assert_eq!(outcome.failure_type, FailureType::Resource);
    assert_eq!(outcome.strategy, "resource_recovery");
    assert_eq!(outcome.outcome, Outcome::Succeeded);
    assert!(outcome.dry_run);
    let ci = outcome
        .ci
        .as_ref()
        .expect("the CI run travels with the failure");
    assert_eq!(
        (ci.repository.as_deref(), ci.platform.as_str()),
        (Some("shop/cart"), "gitlab_ci")
    );

    let plans: Vec<RecoveryPlan> = c.read(&c.topics.plans, 1, LONG);
    assert_eq!(plans.len(), 1, "one plan for 51 log lines and a CI event");
    let failures: Vec<CategorizedFailure> = c.read(&c.topics.failures, 1, LONG);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].signal_count, 52);
    assert!(failures[0].components.contains(&Component::CiPipeline));
    let audit: Vec<AuditRecord> = c.read(&c.topics.audit, 1, LONG);
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.event == AuditEvent::StepSucceeded)
            .count() as i32,
        outcome.steps_total
    );
    let notes: Vec<NotificationRecord> = c.read(&c.topics.notifications, 1, LONG);
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].message.starts_with("cart/staging: "),
        "{}",
        notes[0].message
    );

    for result in running.stop() {
        assert!(result.is_ok(), "stages shut down cleanly: {result:?}");
    }
}

#[test]
fn a_poison_record_is_dead_lettered_and_the_next_record_still_processed() {
    let c = embedded("poison");
    let binary = b"\xff\xfe\x00\x01 not text".to_vec();
    c.produce(&c.topics.logs_raw, Some("cart/staging"), &binary);
    c.produce(
        &c.topics.logs_raw,
        Some("cart/staging"),
        b"ERROR: deadlock detected",
    );
    let not_avro = b"{\"this\": \"is json, not avro\"}".to_vec();
    c.produce(&c.topics.signals, Some("cart/staging"), &not_avro);
    let running = c.start(&[StageName::Ingest, StageName::Categorize]);

    let letters: Vec<DeadLetter> = c.read(&c.topics.deadletter, 2, LONG);
    assert_eq!(letters.len(), 2, "{letters:?}");
    let from_ingest = letters
        .iter()
        .find(|l| l.stage == "ingest")
        .expect("ingest dead letter");
    assert_eq!(
        from_ingest.payload.as_deref(),
        Some(&binary[..]),
        "original bytes kept"
    );
    assert_eq!(from_ingest.source_topic, c.topics.logs_raw);
    assert_eq!(from_ingest.source_offset, 0);
    assert_eq!(
        from_ingest.source_key.as_deref(),
        Some(&b"cart/staging"[..])
    );
    assert_eq!(from_ingest.error_kind, ErrorKind::Undecodable);
    let from_categorize = letters
        .iter()
        .find(|l| l.stage == "categorize")
        .expect("categorize dead letter");
    assert_eq!(from_categorize.payload.as_deref(), Some(&not_avro[..]));
    assert!(
        from_categorize.error.contains("single-object marker"),
        "{}",
        from_categorize.error
    );

    let failures: Vec<CategorizedFailure> = c.read(&c.topics.failures, 1, LONG);
    assert_eq!(
        failures.len(),
        1,
        "the good line after the poison one was categorized"
    );
    assert_eq!(failures[0].failure_type, FailureType::Data);
    drop(running);
}

/// Runs steps in dry run, but "crashes" (panics) the first time step 2 runs.
struct CrashOnce {
    dry: DryRun,
    crashed: AtomicBool,
    calls: Mutex<Vec<String>>,
}

impl Executor for CrashOnce {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(request.key().to_string());
        }
        if request.key().ends_with("/2") && !self.crashed.swap(true, Ordering::SeqCst) {
            panic!("simulated crash while executing {}", request.key());
        }
        self.dry.execute(request)
    }
}

#[test]
fn orchestrate_resumes_mid_recovery_without_repeating_a_finished_step() {
    let c = embedded("resume");
    let crash = Arc::new(CrashOnce {
        dry: DryRun::new(),
        crashed: AtomicBool::new(false),
        calls: Mutex::new(Vec::new()),
    });
    let executor: Arc<dyn Executor> = Arc::new(Executors {
        steps: crash.clone(),
        notifications: Arc::new(Unconfigured),
        statuses: Arc::new(Unconfigured),
    });
    let failure: CategorizedFailure =
        serde_json::from_str(include_str!("../schemas/examples/CategorizedFailure.json"))
            .expect("example");
    let mut failure = failure;
    failure.environment = "staging".into();
    failure.deployment_key = "checkout/staging".into();
    let plan = medic::stages::decide::Decide::new(
        c.topics.clone(),
        c.config.decide.clone(),
        medic::app::Rules::builtin().policy,
    )
    .plan(&failure, 1);
    assert!(!plan.requires_approval);
    c.produce_avro(&c.topics.plans, &plan.deployment_key, &plan);

    let (running, _) = c.start_one(StageName::Orchestrate, executor);
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    drop(running);

    // The expected path: notify, scale up, readiness check, notify (steps 0-3).
    let path = medic::stages::decide::program::expected_path(&plan.steps);
    assert_eq!(path.len(), 4);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].outcome, Outcome::Succeeded);
    assert_eq!(outcomes[0].steps_succeeded, 4);
    let calls = crash.calls.lock().expect("calls").clone();
    let id = &plan.recovery_id;
    let mut expected: Vec<String> = path.iter().map(|s| format!("{id}/{}", s.index)).collect();
    expected.insert(3, format!("{id}/2"));
    assert_eq!(
        calls, expected,
        "steps 0 and 1 ran once; step 2, interrupted, ran again with the same key"
    );

    let states: Vec<RecoveryState> = c.read(&c.topics.state, 1, LONG);
    let last = states.last().expect("state");
    assert_eq!(last.status, RecoveryStatus::Succeeded);
    assert_eq!(last.steps[2].attempts, 2);
    assert!(path
        .iter()
        .all(|p| p.index == 2 || last.steps[p.index as usize].attempts == 1));
}

fn signal(key: &str, text: &str, at: i64) -> Signal {
    Signal::plain_text(
        &DeploymentKey::parse(key).expect("key"),
        "test",
        at,
        text,
        at,
    )
}

#[test]
fn two_categorize_instances_split_the_partitions_and_one_takes_over_when_the_other_stops() {
    let c = embedded("split");
    let (_, executor) = dry_run_executors();
    let (a, status_a) = c.start_one(StageName::Categorize, executor.clone());
    let (b, status_b) = c.start_one(StageName::Categorize, executor);
    let all: BTreeSet<i32> = (0..6).collect();
    let split = wait_until(LONG, || {
        let (pa, pb) = (status_a.assigned(), status_b.assigned());
        let (pa, pb): (BTreeSet<i32>, BTreeSet<i32>) = (
            pa.iter().map(|p| p.1).collect(),
            pb.iter().map(|p| p.1).collect(),
        );
        !pa.is_empty()
            && !pb.is_empty()
            && pa.is_disjoint(&pb)
            && pa.union(&pb).cloned().collect::<BTreeSet<_>>() == all
    });
    assert!(
        split,
        "not split: a={:?} b={:?}",
        status_a.assigned(),
        status_b.assigned()
    );

    for i in 0..24 {
        c.produce_avro(
            &c.topics.signals,
            &format!("svc{i}/staging"),
            &signal(&format!("svc{i}/staging"), "connection refused", i),
        );
    }
    let failures: Vec<CategorizedFailure> = c.read(&c.topics.failures, 24, LONG);
    let ids: BTreeSet<&str> = failures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        (failures.len(), ids.len()),
        (24, 24),
        "every deployment once, none twice"
    );

    drop(b);
    assert!(
        wait_until(LONG, || status_a.assigned().len() == 6),
        "a took over: {:?}",
        status_a.assigned()
    );
    drop(a);
}

#[test]
fn decoding_what_the_pipeline_wrote_needs_no_configuration() {
    // Guards the public contract: outcomes are readable with the codec alone.
    let c = embedded("contract");
    c.produce(&c.topics.logs_raw, Some("billing/staging"), b"Error: INSTALLATION FAILED: validation: chart.metadata.type must be application or library");
    let running = c.start(&StageName::ALL);
    let raw = c.read_raw(&c.topics.outcomes, 1, LONG, Duration::ZERO);
    drop(running);
    let (key, value) = raw.first().cloned().expect("an outcome");
    assert_eq!(key.as_deref(), Some("billing/staging"));
    let outcome: RecoveryOutcome = codec::decode(&value.expect("value")).expect("decodes");
    assert_eq!(
        (outcome.failure_type, outcome.strategy.as_str()),
        (FailureType::Configuration, "configuration_fix")
    );
}

/// Counts every call; shadow mode must make none.
#[derive(Default)]
struct Forbidden {
    calls: Mutex<Vec<String>>,
}

impl Executor for Forbidden {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(request.key().to_string());
        }
        Box::pin(async move {
            EffectResult {
                idempotency_key: request.key().to_string(),
                success: false,
                detail: "shadow mode must not call an executor".into(),
                attempts: 1,
                http_status: None,
                retries: Vec::new(),
                observed: None,
            }
        })
    }
}

#[test]
fn shadow_mode_writes_outcomes_of_its_own_and_calls_no_executor() {
    let mut c = embedded("shadow");
    c.config.orchestrate.dry_run = false.into();
    let failure: CategorizedFailure =
        serde_json::from_str(include_str!("../schemas/examples/CategorizedFailure.json"))
            .expect("example");
    c.produce_avro(&c.topics.failures, &failure.deployment_key, &failure);
    let forbidden = Arc::new(Forbidden::default());
    let (running, _) = c.start_one(StageName::Shadow, forbidden.clone());
    let shadow: Vec<RecoveryOutcome> = c.read(&c.topics.shadow_outcomes, 1, LONG);
    drop(running);
    assert_eq!(shadow.len(), 1, "{shadow:?}");
    assert_eq!(
        shadow[0].recovery_id,
        "checkout/production#1764400000500.684c6ca6"
    );
    assert_eq!(shadow[0].outcome, Outcome::Succeeded);
    assert!(shadow[0].dry_run);
    assert!(forbidden.calls.lock().expect("calls").is_empty());
    let live: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, Duration::from_secs(2));
    assert!(live.is_empty(), "nothing on the live outcome topic");
}

/// Orchestrate with real executors: a rollback and a health check go to the
/// HTTP executor (a local server here); notifications are simulated on
/// purpose (`dry_run: [notify, escalate, retry_deployment]`) and the outcome
/// says so.
#[test]
fn orchestrate_calls_the_configured_executor_with_the_step_key() {
    let (url, seen) = common::http::server(vec![200, 503, 200]);
    let mut c = embedded("executors");
    let yaml = format!(
        "routes: {{rollback_deployment: http, run_health_check: http}}\n\
         attempts: 2\ninitial_backoff_ms: 10\n\
         http:\n  actions:\n    \
         rollback_deployment: {{method: POST, url: \"{url}/rollback/{{service}}\", body: {{revision: \"{{param.to_revision}}\"}}}}\n    \
         run_health_check: {{method: GET, url: \"{url}/health/{{service}}?check={{param.check}}\"}}\n"
    );
    c.config.orchestrate.dry_run =
        serde_yaml_ng::from_str("[notify, escalate, retry_deployment]").expect("dry_run list");
    c.config.orchestrate.executors = serde_yaml_ng::from_str(&yaml).expect("executors config");
    let executor: Arc<dyn Executor> =
        Arc::new(medic::app::executors(&c.config).expect("executors"));
    let mut failure: CategorizedFailure =
        serde_json::from_str(include_str!("../schemas/examples/CategorizedFailure.json"))
            .expect("example");
    failure.failure_type = FailureType::Application;
    failure.environment = "staging".into();
    failure.deployment_key = "checkout/staging".into();
    let plan = medic::stages::decide::Decide::new(
        c.topics.clone(),
        c.config.decide.clone(),
        medic::app::Rules::builtin().policy,
    )
    .plan(&failure, 1);
    c.produce_avro(&c.topics.plans, &plan.deployment_key, &plan);
    let (running, _) = c.start_one(StageName::Orchestrate, executor);
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    drop(running);

    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(
        outcomes[0].outcome,
        Outcome::Succeeded,
        "{}",
        outcomes[0].detail
    );
    assert!(!outcomes[0].dry_run);
    assert_eq!(
        outcomes[0].actions,
        [
            "notify",
            "rollback_deployment",
            "run_health_check",
            "notify"
        ]
    );
    assert_eq!(outcomes[0].simulated_steps, ["notify", "notify"]);
    assert!(
        outcomes[0]
            .detail
            .ends_with("(4 of 4 steps succeeded, 2 of them simulated)"),
        "{}",
        outcomes[0].detail
    );
    let seen = seen.lock().expect("seen").clone();
    let lines: Vec<&str> = seen.iter().map(|(h, _)| h[0].as_str()).collect();
    assert_eq!(
        lines,
        [
            "POST /hooks/medic/rollback/checkout HTTP/1.1",
            "GET /hooks/medic/health/checkout?check=readiness HTTP/1.1",
            "GET /hooks/medic/health/checkout?check=readiness HTTP/1.1",
        ],
        "the health check answered 503 once and was retried"
    );
    assert_eq!(seen[0].1, r#"{"revision":"previous"}"#);
    let key = |headers: &[String]| {
        headers.iter().find_map(|h| {
            h.to_ascii_lowercase()
                .strip_prefix("idempotency-key: ")
                .map(str::to_string)
        })
    };
    let rollback = plan
        .steps
        .iter()
        .find(|s| s.action == "rollback_deployment")
        .expect("rollback");
    assert_eq!(
        key(&seen[0].0),
        Some(format!("{}/{}", plan.recovery_id, rollback.index).to_ascii_lowercase())
    );
    assert_eq!(
        key(&seen[1].0),
        key(&seen[2].0),
        "a retry carries the same key"
    );
}

#[test]
fn at_least_once_offsets_reach_the_end_of_the_input_while_the_stage_runs() {
    // An at-least-once runner commits a batch's offsets only after its
    // outputs are acknowledged, at the end of the next batch. When the input
    // stops there is no next batch of records: the offsets must still reach
    // the end (or consumer lag would never fall to zero) and every line must
    // have its signal.
    let mut c = embedded("alo-commits");
    c.config.delivery.mode = medic::config::DeliveryMode::AtLeastOnce;
    for i in 0..40 {
        let key = format!("svc-{}/staging", i % 7);
        c.produce(
            &c.topics.logs_raw,
            Some(&key),
            format!("GET /cart/{i} 200").as_bytes(),
        );
    }
    let running = c.start(&[StageName::Ingest]);
    let signals: Vec<Signal> = c.read(&c.topics.signals, 40, LONG);
    assert_eq!(signals.len(), 40);

    let mut config = c.settings.base();
    config.set(
        "group.id",
        format!("{}.ingest", c.config.kafka.group_prefix),
    );
    let probe: BaseConsumer = config.create().expect("probe");
    let metadata = probe
        .fetch_metadata(Some(&c.topics.logs_raw), Duration::from_secs(10))
        .expect("metadata");
    let mut partitions = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        partitions.add_partition(&c.topics.logs_raw, p.id());
    }
    let committed = || -> i64 {
        probe
            .committed_offsets(partitions.clone(), Duration::from_secs(5))
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || committed() == 40),
        "committed {} of 40 while running",
        committed()
    );
    drop(running);
}
