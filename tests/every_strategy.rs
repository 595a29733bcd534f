//! Every built-in strategy, as shipped, with dry run off and every action
//! routed the way `config/medic.production.example.yaml` routes it, runs to
//! an outcome in which no step was simulated.
//!
//! What answers: a stateful stand-in for the Kubernetes API server
//! (`common::kube_api`: Deployments, ReplicaSets, the scale subresource and
//! the controller's rollout, as the API documents them) for restarts,
//! scaling and rollbacks; a real Prometheus scraping a fixture exporter for
//! the trees' metric conditions and waits; local servers answering as
//! GitHub's REST API (re-run failed jobs), Slack incoming webhooks,
//! PagerDuty's Events API v2, the health endpoints and the platform
//! endpoints the `http` executor calls. Skipped (with a message) where no
//! `prometheus` binary is installed; `.ci/run` installs one.

mod common;

use common::prometheus::{self, Exposition, Prometheus};
use common::*;
use medic::domain::*;
use medic::stages::StageName;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(150);

/// (service, type, transient, a rule in its evidence, strategy, the remedy
/// it must really have carried out).
type Case = (
    &'static str,
    FailureType,
    bool,
    Option<&'static str>,
    &'static str,
    &'static str,
);

/// One failure per strategy and path: (service, type, transient, strategy,
/// the remedy it must really have carried out).
const CASES: &[Case] = &[
    (
        "nodes",
        FailureType::Infrastructure,
        false,
        None,
        "infrastructure_recovery",
        "restart_service",
    ),
    (
        "memory",
        FailureType::Resource,
        false,
        None,
        "resource_recovery",
        "scale_resources",
    ),
    (
        "disk",
        FailureType::Resource,
        false,
        Some("resource.disk-full"),
        "resource_recovery",
        "clear_cache",
    ),
    (
        "checkout",
        FailureType::Application,
        true,
        None,
        "application_recovery",
        "retry_deployment",
    ),
    (
        "slow",
        FailureType::Timing,
        false,
        None,
        "timing_recovery",
        "rollback_deployment",
    ),
    (
        "settings",
        FailureType::Configuration,
        false,
        None,
        "configuration_fix",
        "rollback_deployment",
    ),
    (
        "release",
        FailureType::HumanError,
        false,
        Some("human-error.cancelled"),
        "human_error_response",
        "notify",
    ),
    (
        "orders",
        FailureType::Data,
        false,
        None,
        "database_recovery",
        "rollback_deployment",
    ),
    (
        "login",
        FailureType::Security,
        false,
        None,
        "security_response",
        "rotate_credentials",
    ),
    (
        "gateway",
        FailureType::Network,
        false,
        None,
        "network_recovery",
        "shift_traffic",
    ),
    (
        "deps",
        FailureType::Dependency,
        false,
        None,
        "dependency_recovery",
        "rollback_deployment",
    ),
];

/// Healthy signals for every service: upstream errors under 1 %, replicas
/// caught up, no integrity check failures.
fn exposition(cases: &[Case]) -> String {
    let mut text = String::from(
        "# TYPE medic_fixture_upstream_error_rate gauge\n\
         # TYPE medic_fixture_replication_lag_seconds gauge\n\
         # TYPE medic_fixture_integrity_failures gauge\n",
    );
    for (service, ..) in cases {
        let labels = format!("service=\"{service}\",environment=\"staging\"");
        text.push_str(&format!(
            "medic_fixture_upstream_error_rate{{{labels}}} 0.2\n\
             medic_fixture_replication_lag_seconds{{{labels}}} 1\n\
             medic_fixture_integrity_failures{{{labels}}} 0\n"
        ));
    }
    text
}

/// The production example's routes: the test routes every action the same way.
fn production_routes() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!(
        "{}/config/medic.production.example.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("production example");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    serde_yaml_ng::from_value(doc["orchestrate"]["executors"]["routes"].clone()).expect("routes")
}

/// What one run saw: the outcomes and each scripted server's requests.
struct World {
    outcomes: Vec<RecoveryOutcome>,
    kube: Vec<String>,
    github: Vec<String>,
    platform: Vec<String>,
    slack: usize,
    pages: usize,
}

/// Runs one recovery per case with dry run off and the production routes,
/// `rollouts` routing rollbacks and retries to Argo Rollouts instead;
/// `None` when no `prometheus` binary is installed.
fn run(name: &str, cases: &[Case], rollouts: bool) -> Option<World> {
    let Some(binary) = prometheus::binary() else {
        eprintln!("no prometheus binary (apt-get install prometheus): skipping {name}");
        return None;
    };
    let text: Exposition = Arc::new(Mutex::new(exposition(cases)));
    let target = prometheus::exporter(text.clone());
    let p = Prometheus::start(binary, &target).expect("prometheus starts");
    assert!(
        p.wait_for_data(
            &format!(
                "medic_fixture_integrity_failures{{service=\"{}\"}}",
                cases[0].0
            ),
            Duration::from_secs(30)
        ),
        "prometheus scraped the exporter"
    );
    let (kube, kube_requests) = common::kube_api::start();
    let (github, github_seen) = common::http::server_always(201, "");
    let (platform, platform_seen) = common::http::server_always(200, "{}");
    let (health, _) = common::http::server_always(200, r#"{"status":"ok"}"#);
    let (slack, slack_seen) = common::http::server_always(200, "ok");
    let (pagerduty, pages) = common::http::server_always(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"medic"}"#,
    );
    let base = |url: &str| url.trim_end_matches("/hooks/medic").to_string();

    let mut routes = production_routes();
    if rollouts {
        for action in ["rollback_deployment", "retry_deployment"] {
            routes.insert(action.into(), "argo_rollouts".into());
        }
    }
    let mut c = embedded(name);
    c.config.orchestrate.dry_run = serde_yaml_ng::from_str("false").expect("dry_run");
    c.config.notify.channels = serde_yaml_ng::from_str(&format!(
        "[{{name: ops-slack, kind: slack, url: \"{slack}\"}},\n\
          {{name: oncall, kind: pagerduty, url: \"{pagerduty}\", key: R0UT1NGKEY0123456789abcdefABCDEF}}]"
    ))
    .expect("channels");
    let gauge = |name: &str| {
        format!("{name}{{service=\\\"{{service}}\\\",environment=\\\"{{environment}}\\\"}}")
    };
    let platform = base(&platform);
    let http_action =
        |method: &str, path: &str| format!("{{method: {method}, url: \"{platform}/{path}\"}}");
    let executors = format!(
        "routes: {routes}\n\
         kubernetes: {{api_server: \"{kube}\", token: kube-token, namespace: \"{{environment}}\", name: \"{{service}}\"}}\n\
         argo_rollouts: {{api_server: \"{kube}\", token: kube-token, namespace: \"{{environment}}\", name: \"{{service}}\"}}\n\
         github: {{api_url: \"{github}\", token: gh-token}}\n\
         channels: {{escalate: [oncall, ops-slack], notify: [ops-slack]}}\n\
         checks:\n  prometheus: {{url: \"{prom}\"}}\n  \
         health_checks:\n    \
         readiness: {{http: {{url: \"{health}/{{environment}}/{{service}}/healthz\", status: [200], successes: 2, interval_ms: 100}}}}\n    \
         authentication: {{http: {{url: \"{health}/{{environment}}/{{service}}/auth\", body_contains: '\"status\":\"ok\"'}}}}\n    \
         data-integrity: {{prometheus: {{query: \"{integrity}\", below: 1}}}}\n  \
         metrics:\n    upstream_error_rate: {{query: \"{error_rate}\"}}\n    \
         replication_lag_seconds: {{query: \"{lag}\"}}\n\
         http:\n  actions:\n    \
         clear_cache: {clear_cache}\n    enable_circuit_breaker: {breaker_on}\n    \
         disable_circuit_breaker: {breaker_off}\n    enable_readonly_mode: {readonly_on}\n    \
         disable_readonly_mode: {readonly_off}\n    failover: {failover}\n    \
         isolate_component: {isolate}\n    rotate_credentials: {rotate}\n    \
         shift_traffic: {shift}\n",
        routes = serde_json::to_string(&routes).expect("routes"),
        github = base(&github),
        prom = p.url,
        health = base(&health),
        integrity = gauge("medic_fixture_integrity_failures"),
        error_rate = gauge("medic_fixture_upstream_error_rate"),
        lag = gauge("medic_fixture_replication_lag_seconds"),
        clear_cache = http_action("POST", "caches/{service}/{environment}/flush"),
        breaker_on = http_action("PUT", "breakers/{service}/{param.dependency}"),
        breaker_off = http_action("DELETE", "breakers/{service}/{param.dependency}"),
        readonly_on = http_action("PUT", "readonly/{param.component}"),
        readonly_off = http_action("DELETE", "readonly/{param.component}"),
        failover = http_action("POST", "failover/{param.component}"),
        isolate = http_action("POST", "isolate/{service}/{environment}"),
        rotate = http_action("POST", "rotate/{service}/{environment}"),
        shift = http_action("POST", "traffic/{service}/{environment}/shift"),
    );
    c.config.orchestrate.executors = serde_yaml_ng::from_str(&executors).expect(&executors);
    let (executors, router) = medic::app::executors_and_router(&c.config).expect("executors");
    medic::app::check_routing(&c.config, &medic::app::Rules::builtin(), &router)
        .expect("with dry run off, every reachable action is routed");
    let executor: Arc<dyn medic::executors::Executor> = Arc::new(executors);
    let decide = medic::stages::decide::Decide::new(
        c.topics.clone(),
        c.config.decide.clone(),
        medic::app::Rules::builtin().policy,
    );

    let mut plans = Vec::new();
    for (service, failure_type, transient, rule, strategy, _) in cases {
        let mut failure: CategorizedFailure =
            serde_json::from_str(include_str!("../schemas/examples/CategorizedFailure.json"))
                .expect("example");
        failure.failure_type = *failure_type;
        failure.transient = *transient;
        failure.severity = Severity::High;
        failure.service = service.to_string();
        failure.environment = "staging".into();
        failure.deployment_key = format!("{service}/staging");
        if let Some(rule) = rule {
            let mut evidence = failure.evidence[0].clone();
            evidence.rule_id = rule.to_string();
            evidence.failure_type = *failure_type;
            failure.evidence = vec![evidence];
        }
        failure.ci = Some(CiRef {
            event_id: format!("gh-{service}"),
            platform: "github_actions".into(),
            status: "failure".into(),
            pipeline: "deploy".into(),
            job: None,
            url: None,
            commit_sha: Some("3484a3fb816e0859fd6e1cea078d76385ff50625".into()),
            repository: Some("Codertocat/Hello-World".into()),
            run_id: Some("30433642".into()),
            job_id: None,
        });
        let plan = decide.plan(&failure, 1);
        assert_eq!(plan.strategy, *strategy, "{service}");
        c.produce_avro(&c.topics.plans, &plan.deployment_key, &plan);
        plans.push(plan);
    }
    let (running, _) = c.start_one(StageName::Orchestrate, executor);

    // The security response waits at its gate for a person.
    if let Some(login) = plans.iter().find(|p| p.service == "login") {
        assert!(
            wait_until(LONG, || {
                let states: Vec<RecoveryState> = c.read(&c.topics.state, 1, Duration::from_secs(1));
                states.iter().any(|s| {
                    s.recovery_id == login.recovery_id
                        && s.status == RecoveryStatus::AwaitingApproval
                })
            }),
            "the credential rotation waits for approval"
        );
        let approval = Approval {
            recovery_id: login.recovery_id.clone(),
            decision: ApprovalDecision::Approved,
            approver: "alice".into(),
            reason: Some("rotate it".into()),
            decided_at: 2,
        };
        c.produce_avro(&c.topics.approvals, &login.deployment_key, &approval);
    }
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, cases.len(), LONG);
    drop(running);
    let lines = |seen: &common::http::Seen| -> Vec<String> {
        seen.lock()
            .expect("lock")
            .iter()
            .map(|(h, _)| h[0].clone())
            .collect()
    };
    let world = World {
        outcomes,
        kube: kube_requests.lock().expect("lock").clone(),
        github: lines(&github_seen),
        platform: lines(&platform_seen),
        slack: slack_seen.lock().expect("lock").len(),
        pages: pages.lock().expect("lock").len(),
    };
    Some(world)
}

/// Every case's outcome: its strategy, succeeded, nothing simulated, its
/// remedy really run.
fn all_succeeded_for_real(world: &World, cases: &[Case]) {
    let outcomes = &world.outcomes;

    for (service, _, _, _, strategy, remedy) in cases {
        let o = outcomes
            .iter()
            .find(|o| o.service == *service)
            .unwrap_or_else(|| panic!("an outcome for {service}: {outcomes:?}"));
        assert_eq!(
            (o.strategy.as_str(), o.outcome),
            (*strategy, Outcome::Succeeded),
            "{service}: {}",
            o.detail
        );
        assert!(!o.dry_run, "{service}");
        assert!(
            o.simulated_steps.is_empty(),
            "{service}: nothing simulated, got {:?}",
            o.simulated_steps
        );
        assert!(
            o.actions.contains(&remedy.to_string()),
            "{service} really ran {remedy}: {:?}",
            o.actions
        );
        assert!(
            o.detail.contains("steps succeeded)") && !o.detail.contains("simulated"),
            "{service}: {}",
            o.detail
        );
    }
}

#[test]
fn every_built_in_strategy_runs_to_an_outcome_with_nothing_simulated() {
    let Some(world) = run("every-strategy", CASES, false) else {
        return;
    };
    all_succeeded_for_real(&world, CASES);
    let outcomes = &world.outcomes;
    let gateway = outcomes
        .iter()
        .find(|o| o.service == "gateway")
        .and_then(|o| o.metrics.as_ref());
    assert_eq!(
        gateway.and_then(|m| m.error_rate_at_end),
        Some(0.2),
        "network_recovery's last upstream_error_rate check"
    );

    // Each remedy reached its API.
    let has = |want: &str| world.kube.iter().any(|r| r.starts_with(want));
    let kube = &world.kube;
    assert!(
        has("PATCH /apis/apps/v1/namespaces/staging/deployments/nodes"),
        "{kube:?}"
    );
    assert!(
        has("PATCH /apis/apps/v1/namespaces/staging/deployments/memory/scale"),
        "{kube:?}"
    );
    for rolled_back in ["settings", "orders", "slow", "deps"] {
        assert!(
            has(&format!(
                "GET /apis/apps/v1/namespaces/staging/replicasets?labelSelector=app%3D{rolled_back}"
            )),
            "{rolled_back} read its history: {kube:?}"
        );
        assert!(
            has(&format!(
                "PATCH /apis/apps/v1/namespaces/staging/deployments/{rolled_back}"
            )),
            "{kube:?}"
        );
    }
    assert!(
        world.github.iter().any(|r| {
            r
            == "POST /repos/Codertocat/Hello-World/actions/runs/30433642/rerun-failed-jobs HTTP/1.1"
        }),
        "{:?}",
        world.github
    );
    for call in [
        "PUT /readonly/database",
        "DELETE /readonly/database",
        "POST /rotate/login/staging",
        "PUT /breakers/gateway/upstream",
        "POST /caches/gateway/staging/flush",
        "POST /traffic/gateway/staging/shift",
        "POST /caches/disk/staging/flush",
    ] {
        assert!(
            world.platform.iter().any(|r| r.starts_with(call)),
            "{call}: {:?}",
            world.platform
        );
    }
    assert!(world.slack > 0, "notify steps reached Slack");
    assert_eq!(world.pages, 0, "nothing escalated, nobody paged");
}

/// The trees that roll back or retry, with those actions routed to Argo
/// Rollouts: abort then undo to the previous revision (the status
/// subresource, the rollout's ReplicaSets, a JSON patch of the template),
/// and retry by clearing the abort.
#[test]
fn rollbacks_and_retries_run_on_argo_rollouts_too() {
    const ARGO: &[Case] = &[
        (
            "cart",
            FailureType::Application,
            false,
            None,
            "application_recovery",
            "rollback_deployment",
        ),
        (
            "search",
            FailureType::Application,
            true,
            None,
            "application_recovery",
            "retry_deployment",
        ),
        (
            "flags",
            FailureType::Configuration,
            false,
            None,
            "configuration_fix",
            "rollback_deployment",
        ),
        (
            "ledger",
            FailureType::Data,
            false,
            None,
            "database_recovery",
            "rollback_deployment",
        ),
        (
            "packages",
            FailureType::Dependency,
            false,
            None,
            "dependency_recovery",
            "rollback_deployment",
        ),
    ];
    let Some(world) = run("every-strategy-argo", ARGO, true) else {
        return;
    };
    all_succeeded_for_real(&world, ARGO);
    let has = |want: &str| world.kube.iter().any(|r| r.starts_with(want));
    let kube = &world.kube;
    for rolled_back in ["cart", "flags", "ledger", "packages"] {
        let rollout =
            format!("/apis/argoproj.io/v1alpha1/namespaces/staging/rollouts/{rolled_back}");
        assert!(
            has(&format!("PATCH {rollout}/status")),
            "{rolled_back} aborted: {kube:?}"
        );
        assert!(
            has(&format!(
                "GET /apis/apps/v1/namespaces/staging/replicasets?labelSelector=app%3D{rolled_back}"
            )),
            "{rolled_back} read its history: {kube:?}"
        );
        assert!(
            world.kube.iter().any(|r| r == &format!("PATCH {rollout}")),
            "{rolled_back} undone: {kube:?}"
        );
    }
    assert!(
        has("PATCH /apis/argoproj.io/v1alpha1/namespaces/staging/rollouts/search/status"),
        "search retried: {kube:?}"
    );
    assert!(
        !has("PATCH /apis/apps/v1/namespaces/staging/deployments/cart"),
        "no Deployment was touched for a Rollout: {kube:?}"
    );
}
