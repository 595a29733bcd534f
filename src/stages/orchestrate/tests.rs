use super::*;

fn plan(key: &str, approval: bool) -> RecoveryPlan {
    let k = DeploymentKey::parse(key).expect("key");
    RecoveryPlan {
        recovery_id: format!("{k}#100"),
        failure_id: format!("{k}@100"),
        deployment_key: k.to_string(),
        service: k.service().into(),
        environment: k.environment().into(),
        failure_type: FailureType::Application,
        severity: Severity::High,
        strategy: "application_recovery".into(),
        requires_approval: approval,
        decision_path: vec![],
        steps: [
            "notify",
            "rollback_deployment",
            "run_health_check",
            "notify",
        ]
        .iter()
        .zip([
            Phase::Preparation,
            Phase::Stabilization,
            Phase::Validation,
            Phase::PostRecovery,
        ])
        .enumerate()
        .map(|(i, (action, phase))| PlanStep {
            index: i as i32,
            phase,
            action: action.to_string(),
            target: k.to_string(),
            params: Default::default(),
            timeout_ms: 60_000,
        })
        .collect(),
        created_at: 1,
        estimated_duration_ms: 1,
        ci: None,
        policy_version: String::new(),
        candidates: vec![],
        terminal: None,
        affected_users: Some(1200),
        error_rate: Some(12.5),
        transient: false,
    }
}

/// Runs actions like the runner would: executes effects with `ok(step)` deciding success.
fn drive(
    o: &mut Orchestrate,
    actions: Vec<Action>,
    ok: &dyn Fn(&PlanStep) -> bool,
) -> Vec<OutputRecord> {
    drive_at(o, actions, ok, 50)
}

/// [`drive`] with the effects' results arriving at `now`.
fn drive_at(
    o: &mut Orchestrate,
    mut actions: Vec<Action>,
    ok: &dyn Fn(&PlanStep) -> bool,
    now: Millis,
) -> Vec<OutputRecord> {
    let mut out = Vec::new();
    while !actions.is_empty() {
        let mut next = Vec::new();
        for a in actions {
            match a {
                Action::Emit(r) => out.push(r),
                Action::Execute(EffectRequest::RecoveryStep {
                    idempotency_key,
                    step,
                    ..
                }) => {
                    let success = ok(&step);
                    next.extend(
                        o.on_effect(
                            EffectResult {
                                idempotency_key,
                                success,
                                detail: "done".into(),
                                attempts: 1,
                                http_status: None,
                                retries: Vec::new(),
                                observed: None,
                            },
                            now,
                        )
                        .expect("effect"),
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        actions = next;
    }
    out
}

fn outcomes(out: &[OutputRecord]) -> Vec<RecoveryOutcome> {
    out.iter()
        .filter(|r| r.topic == "medic.recovery.outcomes")
        .map(|r| codec::decode(r.value.as_deref().expect("value")).expect("decodes"))
        .collect()
}

fn orchestrate() -> Orchestrate {
    Orchestrate::new(Topics::default(), OrchestrateConfig::default())
}

/// Dry run off: every step really runs (here, answered by the test).
fn live() -> Orchestrate {
    let config = OrchestrateConfig {
        dry_run: config::DryRun::off(),
        ..OrchestrateConfig::default()
    };
    Orchestrate::new(Topics::default(), config)
}

#[test]
fn an_ungated_plan_runs_every_step_and_reports_once() {
    let mut o = orchestrate();
    let first = o.on_plan(&plan("web/staging", false), 10).expect("ok");
    let out = drive(&mut o, first, &|_| true);
    let outs = outcomes(&out);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].outcome, Outcome::Succeeded);
    assert!(outs[0].dry_run);
    assert_eq!(outs[0].steps_succeeded, 4);
    let metrics = outs[0].metrics.as_ref().expect("metrics");
    assert_eq!(
        (metrics.affected_users_at_start, metrics.error_rate_at_start),
        (Some(1200), Some(12.5)),
        "carried from the failure through the plan"
    );
    assert_eq!(metrics.components_recovered, ["web"]);
    let audits = out.iter().filter(|r| r.topic == "medic.audit").count();
    assert_eq!(
        audits,
        1 + 4 * 2 + 1,
        "plan received, started+succeeded per step, finished"
    );
    assert_eq!(
        o.recoveries()["web/staging"].status,
        RecoveryStatus::Succeeded
    );
}

/// `dry_run: [notify]`: notifications are recorded, the rest really runs,
/// and the outcome, the state and each step's audit record say which.
#[test]
fn actions_listed_in_dry_run_are_simulated_and_every_record_says_so() {
    let config = OrchestrateConfig {
        dry_run: config::DryRun::Actions(["notify".to_string()].into()),
        ..OrchestrateConfig::default()
    };
    let mut o = Orchestrate::new(Topics::default(), config);
    let first = o.on_plan(&plan("web/staging", false), 10).expect("ok");
    let mut requested = Vec::new();
    for a in &first {
        if let Action::Execute(EffectRequest::RecoveryStep { step, dry_run, .. }) = a {
            requested.push((step.action.clone(), *dry_run));
        }
    }
    assert_eq!(requested, [("notify".to_string(), true)]);
    let out = drive(&mut o, first, &|_| true);
    let outs = outcomes(&out);
    assert_eq!(outs.len(), 1);
    assert!(!outs[0].dry_run, "not the whole recovery");
    assert_eq!(outs[0].simulated_steps, ["notify", "notify"]);
    assert!(
        outs[0]
            .detail
            .ends_with("(4 of 4 steps succeeded, 2 of them simulated)"),
        "{}",
        outs[0].detail
    );
    let state = &o.recoveries()["web/staging"];
    let simulated: Vec<(&str, bool)> = state
        .steps
        .iter()
        .filter(|s| s.action != "end")
        .map(|s| (s.action.as_str(), s.simulated))
        .collect();
    assert_eq!(
        simulated,
        [
            ("notify", true),
            ("rollback_deployment", false),
            ("run_health_check", false),
            ("notify", true)
        ]
    );
    let audits: Vec<AuditRecord> = out
        .iter()
        .filter(|r| r.topic == "medic.audit")
        .map(|r| codec::decode(r.value.as_deref().expect("value")).expect("decodes"))
        .collect();
    for a in audits.iter().filter(|a| a.step_index.is_some()) {
        assert_eq!(a.dry_run, a.action == "notify", "{a:?}");
    }
}

#[test]
fn a_failed_step_skips_the_rest_and_fails_the_recovery() {
    let mut o = orchestrate();
    let first = o.on_plan(&plan("web/staging", false), 10).expect("ok");
    let out = drive(&mut o, first, &|s| s.action != "rollback_deployment");
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Failed);
    assert!(
        outs[0].detail.contains("rollback_deployment"),
        "{}",
        outs[0].detail
    );
    let steps = &o.recoveries()["web/staging"].steps;
    assert_eq!(
        steps
            .iter()
            .filter(|s| s.status == StepStatus::Skipped && s.action != "end")
            .count(),
        2
    );
}

#[test]
fn a_gated_plan_waits_for_approval_and_honours_rejection() {
    let mut o = orchestrate();
    let out = o.on_plan(&plan("pay/prod", true), 10).expect("ok");
    assert!(
        out.iter().all(|a| matches!(a, Action::Emit(_))),
        "nothing runs before approval"
    );
    assert_eq!(
        o.recoveries()["pay/production"].status,
        RecoveryStatus::AwaitingApproval
    );
    let reject = Approval {
        recovery_id: "pay/production#100".into(),
        decision: ApprovalDecision::Rejected,
        approver: "bob".into(),
        reason: Some("freeze".into()),
        decided_at: 20,
    };
    let first = o.on_approval(&reject, 20).expect("ok");
    let out = drive(&mut o, first, &|_| true);
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Rejected);
    assert_eq!(outs[0].detail, "escalated: rejected by bob (freeze)");
    assert!(out
        .iter()
        .any(|r| r.topic == "medic.audit"
            && r.id.as_deref() == Some("pay/production#100/-/rejected")));
}

#[test]
fn an_approval_for_an_unknown_recovery_is_invalid() {
    let mut o = orchestrate();
    let approval = Approval {
        recovery_id: "ghost/production#1".into(),
        decision: ApprovalDecision::Approved,
        approver: "eve".into(),
        reason: None,
        decided_at: 1,
    };
    assert!(matches!(
        o.on_approval(&approval, 1),
        Err(ProcessError::Invalid(_))
    ));
}

#[test]
fn a_second_plan_for_a_busy_deployment_is_skipped() {
    let mut o = orchestrate();
    o.on_plan(&plan("pay/prod", true), 10).expect("ok");
    let mut other = plan("pay/prod", false);
    other.recovery_id = "pay/production#200".into();
    let first = o.on_plan(&other, 11).expect("ok");
    let out = drive(&mut o, first, &|_| true);
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Skipped);
    assert_eq!(
        outs[0].detail,
        "attached to recovery pay/production#100 of this deployment, which is still awaiting_approval"
    );
    assert_eq!(
        o.recoveries()["pay/production"].attached_failures,
        ["pay/production@100"],
        "the new failure is attached to the recovery in progress"
    );
}

const MINUTE: Millis = 60_000;

fn states(out: &[OutputRecord]) -> Vec<&OutputRecord> {
    out.iter()
        .filter(|r| r.topic == "medic.recovery.state")
        .collect()
}

#[test]
fn a_second_rollback_inside_the_cooldown_is_refused_and_says_so() {
    let mut o = orchestrate();
    let first = o.on_plan(&plan("web/staging", false), 10).expect("ok");
    assert_eq!(
        outcomes(&drive(&mut o, first, &|_| true))[0].outcome,
        Outcome::Succeeded
    );

    let mut again = plan("web/staging", false);
    again.recovery_id = "web/staging#200".into();
    let first = o.on_plan(&again, 10 + 5 * MINUTE).expect("ok");
    let out = drive_at(&mut o, first, &|_| true, 10 + 5 * MINUTE);
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Skipped);
    assert_eq!(
        outs[0].detail,
        "cooldown: rollback_deployment ran on web/staging 4 min ago; no rollback_deployment before 15 min have passed"
    );
    let steps = &o.recoveries()["web/staging"].steps;
    assert_eq!(
        steps[0].status,
        StepStatus::Succeeded,
        "the notification before it ran"
    );
    assert!(steps[1..].iter().all(|s| s.status == StepStatus::Skipped));

    let mut later = plan("web/staging", false);
    later.recovery_id = "web/staging#300".into();
    let first = o.on_plan(&later, 21 * MINUTE).expect("ok");
    assert_eq!(
        outcomes(&drive_at(&mut o, first, &|_| true, 21 * MINUTE))[0].outcome,
        Outcome::Succeeded,
        "after the cooldown the rollback runs"
    );
}

#[test]
fn the_circuit_breaker_trips_after_too_many_automated_actions_and_survives_a_restart() {
    let config = OrchestrateConfig {
        circuit_breaker_max_actions: 2,
        ..OrchestrateConfig::default()
    };
    let ok = |_: &PlanStep| true;
    let mut o = Orchestrate::new(Topics::default(), config.clone());
    let mut all = Vec::new();
    for service in ["a", "b"] {
        let first = o
            .on_plan(&plan(&format!("{service}/staging"), false), 10)
            .expect("ok");
        all.extend(drive_at(&mut o, first, &ok, 10));
    }
    let first = o.on_plan(&plan("c/staging", false), 20).expect("ok");
    let out = drive_at(&mut o, first, &ok, 20);
    let c = &o.recoveries()["c/staging"];
    assert_eq!(
        c.status,
        RecoveryStatus::AwaitingApproval,
        "two rollbacks in ten minutes: the third waits for a human"
    );
    assert_eq!(
        c.steps[0].status,
        StepStatus::Succeeded,
        "the notification went out"
    );
    assert_eq!(
        c.steps[1].status,
        StepStatus::Pending,
        "the rollback did not start"
    );
    let held: AuditRecord = out
        .iter()
        .filter(|r| r.topic == "medic.audit")
        .filter_map(|r| codec::decode(r.value.as_deref().expect("value")).ok())
        .find(|a: &AuditRecord| a.event == AuditEvent::ApprovalRequested)
        .expect("approval requested");
    assert!(
        held.detail.starts_with(
            "circuit breaker open: 2 automated actions in the last 10 minutes (limit 2)"
        ),
        "{}",
        held.detail
    );
    all.extend(out);

    // A restarted instance rebuilds the window from the state changelog.
    let mut restarted = Orchestrate::new(Topics::default(), config);
    for r in states(&all) {
        restarted
            .restore(&r.topic, r.key.as_bytes(), r.value.as_deref())
            .expect("restores");
    }
    let first = restarted
        .on_plan(&plan("d/staging", false), 30)
        .expect("ok");
    drive_at(&mut restarted, first, &ok, 30);
    assert_eq!(
        restarted.recoveries()["d/staging"].status,
        RecoveryStatus::AwaitingApproval
    );
    // Ten minutes later the window has moved on.
    let later = 20 + 11 * MINUTE;
    let first = restarted
        .on_plan(&plan("e/staging", false), later)
        .expect("ok");
    let out = drive_at(&mut restarted, first, &ok, later);
    assert_eq!(outcomes(&out)[0].outcome, Outcome::Succeeded);

    // An approved recovery runs while the breaker is open.
    let approval = Approval {
        recovery_id: "d/staging#100".into(),
        decision: ApprovalDecision::Approved,
        approver: "alice".into(),
        reason: None,
        decided_at: 31,
    };
    let first = restarted.on_approval(&approval, 31).expect("ok");
    let out = drive_at(&mut restarted, first, &ok, 31);
    assert_eq!(outcomes(&out)[0].outcome, Outcome::Succeeded);
}

#[test]
fn a_restart_mid_recovery_resumes_without_repeating_finished_steps() {
    let mut before = orchestrate();
    let mut actions = before.on_plan(&plan("web/staging", false), 10).expect("ok");
    let mut last_state = None;
    let mut executed = Vec::new();
    // Run two steps, then "crash" while the third is started.
    for _ in 0..3 {
        let mut effect = None;
        for a in actions {
            match a {
                Action::Emit(r) if r.topic == "medic.recovery.state" => last_state = Some(r),
                Action::Execute(e) => effect = Some(e),
                _ => {}
            }
        }
        let Some(EffectRequest::RecoveryStep {
            idempotency_key, ..
        }) = effect
        else {
            panic!("no effect")
        };
        executed.push(idempotency_key.clone());
        if executed.len() == 3 {
            break;
        }
        actions = before
            .on_effect(
                EffectResult {
                    idempotency_key,
                    success: true,
                    detail: "ok".into(),
                    attempts: 1,
                    http_status: None,
                    retries: Vec::new(),
                    observed: None,
                },
                20,
            )
            .expect("ok");
    }
    let state = last_state.expect("state written");
    let mut after = orchestrate();
    after
        .restore(&state.topic, state.key.as_bytes(), state.value.as_deref())
        .expect("restores");
    // The plan is redelivered (its offset was never committed).
    let resumed = after.on_plan(&plan("web/staging", false), 30).expect("ok");
    let Some(Action::Execute(EffectRequest::RecoveryStep {
        idempotency_key, ..
    })) = resumed
        .iter()
        .find(|a| matches!(a, Action::Execute(_)))
        .cloned()
    else {
        panic!("no resume")
    };
    assert_eq!(
        idempotency_key, "web/staging#100/2",
        "resumes the started step, not step 0 or 1"
    );
    let step = &after.recoveries()["web/staging"].steps[2];
    assert_eq!(step.attempts, 2);
}

/// A plan made by the decide stage with the built-in policy.
fn decided(t: FailureType, env: &str, transient: bool) -> RecoveryPlan {
    let d = crate::stages::decide::Decide::new(
        Topics::default(),
        crate::stages::decide::config::DecideConfig::default(),
        std::sync::Arc::new(crate::stages::decide::policy::Policy::default_policy()),
    );
    let f = crate::stages::decide::test_failure(t, Severity::High, env, transient);
    d.plan(&f, 5)
}

fn executed(out: &[OutputRecord]) -> Vec<String> {
    out.iter()
        .filter(|r| r.topic == "medic.audit")
        .filter_map(|r| codec::decode::<AuditRecord>(r.value.as_deref().expect("value")).ok())
        .filter(|a| a.event == AuditEvent::StepStarted)
        .map(|a| a.action)
        .collect()
}

fn timer(o: &mut Orchestrate, now: Millis, ok: &dyn Fn(&PlanStep) -> bool) -> Vec<OutputRecord> {
    let actions = o.on_timer(now).expect("timer");
    drive_at(o, actions, ok, now)
}

#[test]
fn a_production_rollback_waits_at_its_gate_then_walks_the_tree() {
    let mut o = orchestrate();
    let plan = decided(FailureType::Application, "production", false);
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|_| true, 10);
    assert_eq!(
        executed(&out),
        ["notify"],
        "the announcement goes out before the gate"
    );
    let state = &o.recoveries()["svc/production"];
    assert_eq!(state.status, RecoveryStatus::AwaitingApproval);
    assert_eq!(state.cursor.as_deref(), Some("rollback.approval"));
    assert_eq!(state.waiting_until, Some(10 + 3_600_000));

    let approval = Approval {
        recovery_id: plan.recovery_id.clone(),
        decision: ApprovalDecision::Approved,
        approver: "alice".into(),
        reason: None,
        decided_at: 20,
    };
    let first = o.on_approval(&approval, 20).expect("ok");
    let out = drive_at(&mut o, first, &|_| true, 20);
    assert_eq!(
        executed(&out),
        ["rollback_deployment", "run_health_check", "notify"]
    );
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Succeeded);
    assert_eq!(outs[0].approver.as_deref(), Some("alice"));
    assert!(
        outs[0]
            .detail
            .starts_with("the service runs the last good version"),
        "{}",
        outs[0].detail
    );
    let phases: Vec<Phase> = o.recoveries()["svc/production"]
        .phases
        .iter()
        .map(|p| p.phase)
        .collect();
    assert_eq!(
        phases,
        [
            Phase::Preparation,
            Phase::Stabilization,
            Phase::Validation,
            Phase::PostRecovery
        ],
        "each phase entered is recorded in the state"
    );
    assert!(o.recoveries()["svc/production"]
        .phases
        .iter()
        .all(|p| p.finished_at.is_some()));
}

#[test]
fn a_failed_rollback_follows_its_fallback_and_ends_escalated() {
    let mut o = orchestrate();
    let plan = decided(FailureType::Application, "staging", false);
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|s| s.action != "rollback_deployment", 10);
    assert_eq!(
        executed(&out),
        ["notify", "rollback_deployment", "escalate"]
    );
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Failed);
    assert_eq!(
        outs[0].detail,
        "escalated: retry and rollback did not help: the owning team is paged"
    );
    assert_eq!(
        outs[0].actions,
        ["notify", "rollback_deployment", "escalate"]
    );
    let metrics = outs[0].metrics.as_ref().expect("metrics");
    assert_eq!(metrics.fallbacks_used, ["rollback -> escalate"]);
    assert_eq!(metrics.manual_interventions, 1, "a person was paged");
    assert!(metrics.components_recovered.is_empty(), "nothing came back");
    assert_eq!(metrics.observed_downtime_ms, 0);

    // An unhealthy check takes its branch too.
    let mut o = orchestrate();
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|s| s.action != "run_health_check", 10);
    assert_eq!(
        executed(&out),
        [
            "notify",
            "rollback_deployment",
            "run_health_check",
            "escalate"
        ]
    );
}

#[test]
fn nobody_answering_a_gate_follows_its_timeout_policy() {
    // The security strategy's own gate: on timeout, escalate.
    let mut o = orchestrate();
    let plan = decided(FailureType::Security, "staging", false);
    let first = o.on_plan(&plan, 10).expect("ok");
    drive_at(&mut o, first, &|_| true, 10);
    let state = &o.recoveries()["svc/staging"];
    assert_eq!(state.status, RecoveryStatus::AwaitingApproval);
    let until = state.waiting_until.expect("deadline");
    assert!(timer(&mut o, until - 1, &|_| true).is_empty(), "not yet");
    let out = timer(&mut o, until, &|_| true);
    assert_eq!(executed(&out), ["escalate"]);
    assert_eq!(outcomes(&out)[0].outcome, Outcome::Failed);

    // A gate medic added has no timeout branch: on_hold_timeout (escalate)
    // runs the tree's escalate branch, and the outcome says why.
    let mut o = orchestrate();
    let plan = decided(FailureType::Application, "production", false);
    let first = o.on_plan(&plan, 10).expect("ok");
    drive_at(&mut o, first, &|_| true, 10);
    let out = timer(&mut o, 10 + 3_600_000, &|_| true);
    assert_eq!(
        executed(&out),
        ["escalate"],
        "nothing automated ran without the approval; a person was paged"
    );
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Failed);
    assert_eq!(
        outs[0].detail,
        "escalated: retry and rollback did not help: the owning team is paged; because gate rollback.approval: no decision within 3600 s"
    );

    // abort: the recovery ends there, nothing more runs.
    let mut o = Orchestrate::new(
        Topics::default(),
        OrchestrateConfig {
            on_hold_timeout: HoldPolicy::Abort,
            ..OrchestrateConfig::default()
        },
    );
    let first = o.on_plan(&plan, 10).expect("ok");
    drive_at(&mut o, first, &|_| true, 10);
    let out = timer(&mut o, 10 + 3_600_000, &|_| true);
    assert!(executed(&out).is_empty());
    assert_eq!(
        outcomes(&out)[0].detail,
        "aborted: gate rollback.approval: no decision within 3600 s, the recovery ends (on_hold_timeout: abort)"
    );
}

/// The hold for an environment's `requires_approval` has a deadline too
/// (`hold_timeout_secs`); nobody answering runs the escalate branch, or,
/// with `on_hold_timeout: proceed`, the held step runs.
#[test]
fn a_hold_nobody_answers_ends_by_its_policy() {
    let production_restart = || decided_with(FailureType::Resource, Severity::High, "production");
    for (policy, expect_run, expect_outcome) in [
        (HoldPolicy::Escalate, vec!["escalate"], Outcome::Failed),
        (HoldPolicy::Abort, vec![], Outcome::Failed),
    ] {
        let mut o = Orchestrate::new(
            Topics::default(),
            OrchestrateConfig {
                hold_timeout_secs: 600,
                on_hold_timeout: policy,
                ..OrchestrateConfig::default()
            },
        );
        let plan = production_restart();
        let first = o.on_plan(&plan, 10).expect("ok");
        drive_at(&mut o, first, &|_| true, 10);
        let state = &o.recoveries()["svc/production"];
        assert_eq!(state.status, RecoveryStatus::AwaitingApproval);
        assert_eq!(state.waiting_until, Some(10 + 600_000), "{policy:?}");
        assert!(timer(&mut o, 10 + 599_999, &|_| true).is_empty());
        let out = timer(&mut o, 10 + 600_000, &|_| true);
        assert_eq!(executed(&out), expect_run, "{policy:?}");
        let outs = outcomes(&out);
        assert_eq!(outs[0].outcome, expect_outcome, "{policy:?}");
        assert!(
            outs[0].detail.contains("no decision within 600 s"),
            "{}",
            outs[0].detail
        );
        assert!(!o.recoveries()["svc/production"].status.is_active());
    }
    let mut o = Orchestrate::new(
        Topics::default(),
        OrchestrateConfig {
            hold_timeout_secs: 600,
            on_hold_timeout: HoldPolicy::Proceed,
            ..OrchestrateConfig::default()
        },
    );
    let plan = production_restart();
    let first = o.on_plan(&plan, 10).expect("ok");
    drive_at(&mut o, first, &|_| true, 10);
    let out = timer(&mut o, 10 + 600_000, &|_| true);
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Succeeded, "{}", outs[0].detail);
    let ran = executed(&out);
    assert!(
        ran.iter()
            .any(|a| a == "scale_resources" || a == "restart_service"),
        "the held step ran: {ran:?}"
    );
    assert_eq!(
        outs[0].approver.as_deref(),
        Some("nobody: no decision within 600 s, on_hold_timeout: proceed")
    );
}

#[test]
fn parallel_branches_start_together_and_waits_wait() {
    let mut o = orchestrate();
    // Not transient: contain (parallel) then fail over.
    let plan = decided(FailureType::Network, "staging", false);
    let mut actions = o.on_plan(&plan, 10).expect("ok");
    // Finish the announcement by hand, to see both branches start at once.
    let mut started = Vec::new();
    for _ in 0..2 {
        let mut next = Vec::new();
        started.clear();
        for a in actions {
            if let Action::Execute(EffectRequest::RecoveryStep {
                idempotency_key,
                step,
                ..
            }) = a
            {
                started.push(step.action.clone());
                if step.action == "notify" {
                    next.extend(
                        o.on_effect(
                            EffectResult {
                                idempotency_key,
                                success: true,
                                detail: "ok".into(),
                                attempts: 1,
                                http_status: None,
                                retries: Vec::new(),
                                observed: None,
                            },
                            11,
                        )
                        .expect("ok"),
                    );
                }
            }
        }
        actions = next;
    }
    started.sort();
    assert_eq!(started, ["clear_cache", "enable_circuit_breaker"]);

    // Transient: wait 30 s before the retry.
    let mut o = orchestrate();
    let plan = decided(FailureType::Network, "staging", true);
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|_| true, 10);
    assert_eq!(executed(&out), ["notify"]);
    assert_eq!(
        o.recoveries()["svc/staging"].waiting_until,
        Some(10 + 30_000)
    );
    assert!(executed(&timer(&mut o, 10 + 29_999, &|_| true)).is_empty());
    let out = timer(&mut o, 10 + 30_000, &|_| true);
    assert_eq!(
        executed(&out),
        ["retry_deployment", "run_health_check", "notify"]
    );
    assert_eq!(outcomes(&out)[0].outcome, Outcome::Succeeded);
}

#[test]
fn a_restarted_instance_resumes_a_started_step_once_with_the_same_key() {
    let mut before = orchestrate();
    let plan = decided(FailureType::Application, "staging", false);
    let first = before.on_plan(&plan, 10).expect("ok");
    // Notify succeeds; the rollback is started, then the process dies.
    let mut state_records = Vec::new();
    let mut pending = first;
    let mut rollback_key = None;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for a in pending {
            match a {
                Action::Emit(r) if r.topic == "medic.recovery.state" => state_records.push(r),
                Action::Execute(EffectRequest::RecoveryStep {
                    idempotency_key,
                    step,
                    ..
                }) => {
                    if step.action == "rollback_deployment" {
                        rollback_key = Some(idempotency_key);
                    } else {
                        next.extend(
                            before
                                .on_effect(
                                    EffectResult {
                                        idempotency_key,
                                        success: true,
                                        detail: "ok".into(),
                                        attempts: 1,
                                        http_status: None,
                                        retries: Vec::new(),
                                        observed: None,
                                    },
                                    11,
                                )
                                .expect("ok"),
                        );
                    }
                }
                _ => {}
            }
        }
        pending = next;
    }
    let rollback_key = rollback_key.expect("the rollback started");
    let mut after = orchestrate();
    for r in &state_records {
        after
            .restore(&r.topic, r.key.as_bytes(), r.value.as_deref())
            .expect("restores");
    }
    let keys = |actions: &[Action]| -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Execute(e) => Some(e.key().to_string()),
                _ => None,
            })
            .collect()
    };
    let resumed = after.on_timer(30).expect("timer");
    assert_eq!(
        keys(&resumed),
        std::slice::from_ref(&rollback_key),
        "re-invoked with the same key"
    );
    let again = after.on_plan(&plan, 31).expect("redelivered plan");
    assert!(
        keys(&again).is_empty(),
        "already running: not invoked twice"
    );
    let out = drive_at(&mut after, resumed, &|_| true, 32);
    assert_eq!(
        executed(&out),
        ["rollback_deployment", "run_health_check", "notify"]
    );
    assert_eq!(outcomes(&out)[0].outcome, Outcome::Succeeded);
    let notify = &after.recoveries()["svc/staging"].steps[0];
    assert_eq!(
        (notify.status, notify.attempts),
        (StepStatus::Succeeded, 1),
        "never repeated"
    );
}

fn decided_with(t: FailureType, severity: Severity, env: &str) -> RecoveryPlan {
    let d = crate::stages::decide::Decide::new(
        Topics::default(),
        crate::stages::decide::config::DecideConfig::default(),
        std::sync::Arc::new(crate::stages::decide::policy::Policy::default_policy()),
    );
    d.plan(
        &crate::stages::decide::test_failure(t, severity, env, false),
        5,
    )
}

#[test]
fn production_constraints_hold_for_approval_roll_and_refuse_long_interruptions() {
    // A restart in production waits for a human (requires_approval) and rolls.
    let mut o = orchestrate();
    let plan = decided_with(FailureType::Infrastructure, Severity::High, "production");
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|_| true, 10);
    assert_eq!(executed(&out), ["notify"]);
    assert_eq!(
        o.recoveries()["svc/production"].status,
        RecoveryStatus::AwaitingApproval
    );
    let approval = Approval {
        recovery_id: plan.recovery_id.clone(),
        decision: ApprovalDecision::Approved,
        approver: "alice".into(),
        reason: None,
        decided_at: 11,
    };
    let first = o.on_approval(&approval, 11).expect("ok");
    let restart = first
        .iter()
        .find_map(|a| match a {
            Action::Execute(EffectRequest::RecoveryStep { step, .. }) => Some(step.clone()),
            _ => None,
        })
        .expect("the restart starts");
    assert_eq!(restart.action, "restart_service");
    assert_eq!(
        restart.params["rolling"], "true",
        "the zero-interruption variant"
    );
    assert_eq!(
        outcomes(&drive_at(&mut o, first, &|_| true, 11))[0].outcome,
        Outcome::Succeeded
    );

    // A critical data failure would fail over for up to 15 minutes: escalate instead.
    let mut o = live();
    let plan = decided_with(FailureType::Data, Severity::Critical, "production");
    let first = o.on_plan(&plan, 10).expect("ok");
    let mut out = drive_at(&mut o, first, &|_| true, 10);
    for _ in 0..3 {
        if o.recoveries()["svc/production"].status != RecoveryStatus::AwaitingApproval {
            break;
        }
        let approval = Approval {
            recovery_id: plan.recovery_id.clone(),
            decision: ApprovalDecision::Approved,
            approver: "alice".into(),
            reason: None,
            decided_at: 12,
        };
        let first = o.on_approval(&approval, 12).expect("ok");
        out.extend(drive_at(&mut o, first, &|_| true, 12));
    }
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Failed);
    assert_eq!(
        outs[0].detail,
        "escalated: data could not be verified: database on-call paged, writes stay read-only; \
         because failover: refused: failover may interrupt production for up to 15 min; production allows 5 min; \
         left in place for a person: enable_readonly_mode (component: database)"
    );
    assert!(!outs[0].actions.contains(&"failover".to_string()));
    assert!(
        outs[0].actions.contains(&"escalate".to_string()),
        "the refused step's fallback (the escalate branch) ran: {:?}",
        outs[0].actions
    );
}

#[test]
fn notifications_are_best_effort_unless_the_environment_requires_them() {
    let not_notify = |s: &PlanStep| s.action != "notify";
    let mut o = orchestrate();
    let plan = decided_with(FailureType::Application, Severity::High, "development");
    let first = o.on_plan(&plan, 10).expect("ok");
    let outs = outcomes(&drive_at(&mut o, first, &not_notify, 10));
    assert_eq!(outs[0].outcome, Outcome::Succeeded, "{}", outs[0].detail);

    let mut o = orchestrate();
    let plan = decided_with(FailureType::Application, Severity::High, "staging");
    let first = o.on_plan(&plan, 10).expect("ok");
    let outs = outcomes(&drive_at(&mut o, first, &not_notify, 10));
    assert_eq!(
        outs[0].outcome,
        Outcome::Failed,
        "staging requires notifications"
    );
}

#[test]
fn a_resolved_recovery_removes_its_temporary_measures_in_the_cleanup_phase() {
    let mut o = orchestrate();
    let plan = decided_with(FailureType::Data, Severity::High, "staging");
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|_| true, 10);
    let ran = executed(&out);
    assert_eq!(ran.first().map(String::as_str), Some("notify"));
    assert!(ran.contains(&"enable_readonly_mode".to_string()), "{ran:?}");
    assert_eq!(
        ran.last().map(String::as_str),
        Some("disable_readonly_mode"),
        "{ran:?}"
    );
    let state = &o.recoveries()["svc/staging"];
    let undo = state.steps.last().expect("cleanup step");
    assert_eq!(
        (undo.phase, undo.params["cleanup_of"].as_str()),
        (Phase::Cleanup, "protect")
    );
    assert_eq!(undo.params["component"], "database");
    assert_eq!(state.phases.last().map(|p| p.phase), Some(Phase::Cleanup));
    assert_eq!(outcomes(&out)[0].outcome, Outcome::Succeeded);

    // A failed undo fails the recovery, saying so.
    let mut o = live();
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|s| s.action != "disable_readonly_mode", 10);
    let outs = outcomes(&out);
    assert_eq!(outs[0].outcome, Outcome::Failed);
    assert_eq!(
        outs[0].detail,
        "cleanup: disable_readonly_mode failed: done; left in place for a person: enable_readonly_mode (component: database)"
    );
    assert_eq!(
        outs[0].recommendations[0],
        "Undo by hand what the recovery left in place: enable_readonly_mode (component: database)"
    );

    // In a dry run nothing was switched on, so nothing is handed over.
    let mut o = orchestrate();
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|s| s.action != "disable_readonly_mode", 10);
    let outs = outcomes(&out);
    assert!(
        !outs[0].detail.contains("left in place"),
        "{}",
        outs[0].detail
    );
    assert!(outs[0]
        .recommendations
        .iter()
        .any(|r| r.starts_with("Dry run: nothing was done")));

    // Switched off: nothing is undone.
    let mut o = Orchestrate::new(
        Topics::default(),
        OrchestrateConfig {
            cleanup_temporary_measures: false,
            ..OrchestrateConfig::default()
        },
    );
    let first = o.on_plan(&plan, 10).expect("ok");
    let out = drive_at(&mut o, first, &|_| true, 10);
    assert!(!executed(&out).contains(&"disable_readonly_mode".to_string()));
}
