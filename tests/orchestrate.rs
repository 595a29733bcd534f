//! The orchestrate stage on the embedded cluster: a rejected gate, a gate
//! nobody answers, a second failure for a deployment under recovery, a second
//! rollback inside the cooldown, and the circuit breaker.

mod common;

use common::*;
use medic::domain::*;
use medic::executors::Executor;
use medic::stages::StageName;
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn plan(c: &TestCluster, t: FailureType, key: &str, first_seen: Millis) -> RecoveryPlan {
    let k = DeploymentKey::parse(key).expect("key");
    let failure = CategorizedFailure {
        id: format!("{k}@{first_seen}"),
        deployment_key: k.to_string(),
        service: k.service().into(),
        environment: k.environment().into(),
        failure_type: t,
        severity: Severity::High,
        confidence: 0.9,
        runner_up: None,
        evidence: vec![],
        components: vec![Component::Backend],
        transient: false,
        affected_users: None,
        error_rate: None,
        status_codes: vec![],
        rule_pack_version: String::new(),
        signal_count: 1,
        first_seen,
        last_seen: first_seen,
        summary: String::new(),
        pattern_hits: vec![],
        ci: None,
    };
    medic::stages::decide::Decide::new(
        c.topics.clone(),
        c.config.decide.clone(),
        medic::app::Rules::builtin().policy,
    )
    .plan(&failure, first_seen)
}

fn executor(c: &TestCluster) -> Arc<dyn Executor> {
    Arc::new(medic::app::executors(&c.config).expect("executors"))
}

fn waiting(c: &TestCluster, recovery_id: &str) -> bool {
    wait_until(LONG, || {
        let states: Vec<RecoveryState> = c.read(&c.topics.state, 1, Duration::from_secs(1));
        states
            .iter()
            .any(|s| s.recovery_id == recovery_id && s.status == RecoveryStatus::AwaitingApproval)
    })
}

fn audits(c: &TestCluster) -> Vec<AuditRecord> {
    c.read(&c.topics.audit, 1, Duration::from_secs(2))
}

#[test]
fn a_rejected_gate_ends_the_recovery_and_a_second_failure_is_attached_meanwhile() {
    let c = embedded("reject");
    let first = plan(&c, FailureType::Application, "pay/production", 1_000);
    c.produce_avro(&c.topics.plans, &first.deployment_key, &first);
    let (running, _) = c.start_one(StageName::Orchestrate, executor(&c));
    assert!(
        waiting(&c, &first.recovery_id),
        "the rollback waits at its gate"
    );

    // Another failure of the same deployment while the first waits.
    let second = plan(&c, FailureType::Application, "pay/production", 2_000);
    c.produce_avro(&c.topics.plans, &second.deployment_key, &second);
    let attached: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].recovery_id, second.recovery_id);
    assert_eq!(attached[0].outcome, Outcome::Skipped);
    assert!(attached[0]
        .detail
        .starts_with(&format!("attached to recovery {}", first.recovery_id)));

    let rejection = Approval {
        recovery_id: first.recovery_id.clone(),
        decision: ApprovalDecision::Rejected,
        approver: "bob".into(),
        reason: Some("change freeze".into()),
        decided_at: 3_000,
    };
    c.produce_avro(&c.topics.approvals, &first.deployment_key, &rejection);
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 2, LONG);
    drop(running);
    let ended = outcomes
        .iter()
        .find(|o| o.recovery_id == first.recovery_id)
        .expect("the first recovery ended");
    assert_eq!(ended.outcome, Outcome::Rejected);
    assert_eq!(ended.approver.as_deref(), Some("bob"));
    assert_eq!(ended.detail, "escalated: rejected by bob (change freeze)");
    assert!(!ended.actions.contains(&"rollback_deployment".to_string()));
    assert!(audits(&c).iter().any(|a| a.event == AuditEvent::Rejected
        && a.actor == "bob"
        && a.detail == "change freeze"));
}

#[test]
fn a_gate_nobody_answers_follows_its_timeout_policy() {
    let mut c = embedded("timeout");
    c.config.decide.approval_timeout_secs = 1;
    let p = plan(&c, FailureType::Application, "pay/production", 1_000);
    c.produce_avro(&c.topics.plans, &p.deployment_key, &p);
    let (running, _) = c.start_one(StageName::Orchestrate, executor(&c));
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    drop(running);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].outcome, Outcome::Failed);
    assert_eq!(
        outcomes[0].detail,
        "escalated: retry and rollback did not help: the owning team is paged; because gate rollback.approval: no decision within 1 s"
    );
    assert_eq!(
        outcomes[0].actions,
        ["notify", "escalate"],
        "nothing risky ran; the escalate branch did"
    );
}

#[test]
fn a_second_rollback_inside_the_cooldown_is_refused() {
    let c = embedded("cooldown");
    let first = plan(&c, FailureType::Application, "web/staging", 1_000);
    c.produce_avro(&c.topics.plans, &first.deployment_key, &first);
    let (running, _) = c.start_one(StageName::Orchestrate, executor(&c));
    let done: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    assert_eq!(done[0].outcome, Outcome::Succeeded);
    let second = plan(&c, FailureType::Application, "web/staging", 2_000);
    c.produce_avro(&c.topics.plans, &second.deployment_key, &second);
    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 2, LONG);
    drop(running);
    let refused = outcomes
        .iter()
        .find(|o| o.recovery_id == second.recovery_id)
        .expect("second outcome");
    assert_eq!(refused.outcome, Outcome::Skipped);
    assert!(
        refused
            .detail
            .starts_with("cooldown: rollback_deployment ran on web/staging 0 min ago"),
        "{}",
        refused.detail
    );
}

#[test]
fn the_circuit_breaker_hands_further_actions_to_a_human() {
    let mut c = embedded("breaker");
    c.config.orchestrate.circuit_breaker_max_actions = 1;
    let first = plan(&c, FailureType::Application, "a/staging", 1_000);
    let second = plan(&c, FailureType::Application, "b/staging", 1_000);
    c.produce_avro(&c.topics.plans, &first.deployment_key, &first);
    let (running, _) = c.start_one(StageName::Orchestrate, executor(&c));
    let done: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    assert_eq!(done[0].outcome, Outcome::Succeeded);
    c.produce_avro(&c.topics.plans, &second.deployment_key, &second);
    assert!(
        waiting(&c, &second.recovery_id),
        "the second rollback waits for a human"
    );
    drop(running);
    assert!(audits(&c)
        .iter()
        .any(|a| a.recovery_id == second.recovery_id
            && a.event == AuditEvent::ApprovalRequested
            && a.detail.starts_with(
                "circuit breaker open: 1 automated actions in the last 10 minutes (limit 1)"
            )));
}
