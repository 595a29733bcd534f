use super::*;

fn failure(t: FailureType, severity: Severity, env: &str, transient: bool) -> CategorizedFailure {
    test_failure(t, severity, env, transient)
}

fn decide() -> Decide {
    Decide::new(
        Topics::default(),
        DecideConfig::default(),
        Arc::new(Policy::default_policy()),
    )
}

fn actions(plan: &RecoveryPlan) -> Vec<&str> {
    program::expected_path(&plan.steps)
        .iter()
        .map(|s| s.action.as_str())
        .collect()
}

#[test]
fn the_recovery_id_is_the_failure_id_with_a_hash() {
    let mut f = failure(FailureType::Network, Severity::Low, "staging", true);
    f.id = format!("{}@7.0a1b2c3d", f.deployment_key);
    assert_eq!(recovery_id(&f), "svc/staging#7.0a1b2c3d");
    f.id = "not-the-usual-shape".into();
    assert_eq!(recovery_id(&f), "svc/staging#7", "falls back to first_seen");
}

#[test]
fn the_plan_carries_the_failures_impact_for_the_outcomes_metrics() {
    let mut f = failure(FailureType::Network, Severity::High, "staging", false);
    f.affected_users = Some(340);
    f.error_rate = Some(4.2);
    let plan = decide().plan(&f, 10);
    assert_eq!(
        (plan.affected_users, plan.error_rate),
        (Some(340), Some(4.2))
    );
}

#[test]
fn each_type_gets_a_strategy_of_its_own_and_its_neighbour_stays_a_candidate() {
    for (t, want, neighbour) in [
        (FailureType::Infrastructure, "infrastructure_recovery", None),
        (
            FailureType::Resource,
            "resource_recovery",
            Some("infrastructure_recovery"),
        ),
        (FailureType::Application, "application_recovery", None),
        (
            FailureType::Timing,
            "timing_recovery",
            Some("application_recovery"),
        ),
        (FailureType::Data, "database_recovery", None),
        (FailureType::Configuration, "configuration_fix", None),
        (
            FailureType::HumanError,
            "human_error_response",
            Some("configuration_fix"),
        ),
        (FailureType::Security, "security_response", None),
        (FailureType::Network, "network_recovery", None),
        (
            FailureType::Dependency,
            "dependency_recovery",
            Some("network_recovery"),
        ),
    ] {
        let plan = decide().plan(&failure(t, Severity::Medium, "staging", false), 1);
        assert_eq!(plan.strategy, want, "{t}");
        assert_eq!(plan.recovery_id, "svc/staging#7");
        assert_eq!(plan.policy_version, Policy::default_policy().version());
        assert!(plan.terminal.is_some(), "{t}: the path ends in a terminal");
        let chosen: Vec<&Candidate> = plan
            .candidates
            .iter()
            .filter(|c| c.verdict == "chosen")
            .collect();
        assert_eq!(chosen.len(), 1);
        assert_eq!(plan.candidates.len(), 10, "every built-in is considered");
        let applicable: Vec<&str> = plan
            .candidates
            .iter()
            .filter(|c| c.verdict != format!("not for {t} failures"))
            .map(|c| c.strategy.as_str())
            .collect();
        let mut expected = vec![want];
        expected.extend(neighbour);
        let mut applicable_sorted = applicable.clone();
        applicable_sorted.sort();
        expected.sort();
        assert_eq!(applicable_sorted, expected, "{t}: {:?}", plan.candidates);
    }
}

#[test]
fn staging_application_failure_rolls_back_without_a_gate() {
    let plan = decide().plan(
        &failure(FailureType::Application, Severity::High, "staging", false),
        1,
    );
    assert!(!plan.requires_approval);
    assert_eq!(
        actions(&plan),
        [
            "notify",
            "rollback_deployment",
            "run_health_check",
            "notify"
        ]
    );
    assert_eq!(plan.steps[1].params["to_revision"], "previous");
    assert_eq!(plan.steps[1].params["on_failure"], "escalate");
    assert_eq!(plan.steps[2].params["if_unhealthy"], "escalate");
    assert_eq!(plan.terminal.as_deref(), Some("resolved"));
    let flaky = plan
        .decision_path
        .iter()
        .find(|d| &*d.node == "flaky")
        .expect("the transient check is on the path");
    assert_eq!(flaky.inputs["transient"], "false");
    assert!(flaky.answer.starts_with("no"), "{}", flaky.answer);
    let phases: Vec<Phase> = plan.steps.iter().map(|s| s.phase).collect();
    let mut sorted = phases.clone();
    sorted.sort();
    assert_eq!(phases, sorted, "steps run in phase order");
}

#[test]
fn production_gates_the_rollback_and_says_why() {
    let plan = decide().plan(
        &failure(
            FailureType::Application,
            Severity::High,
            "production",
            false,
        ),
        1,
    );
    assert!(plan.requires_approval);
    let approval = plan
        .decision_path
        .iter()
        .find(|s| &*s.node == "approval")
        .expect("approval node");
    assert_eq!(&*approval.answer, "yes: production requires approval");
    let gate = plan
        .decision_path
        .iter()
        .position(|s| &*s.node == "rollback" && s.question.starts_with("May rollback_deployment"))
        .expect("a gate before the rollback");
    let rollback = plan
        .decision_path
        .iter()
        .position(|s| &*s.node == "rollback" && s.question.starts_with("What does"))
        .expect("the rollback");
    assert!(gate < rollback);

    // The program the orchestrator walks: the transient check is decided,
    // a gate stands before the rollback, fallbacks are there.
    let node = |id: &str| {
        plan.steps
            .iter()
            .find(|s| s.params["node"] == id)
            .unwrap_or_else(|| panic!("no step {id} in {:#?}", plan.steps))
    };
    assert_eq!(plan.steps[0].params["node"], "announce");
    assert_eq!(node("announce").params["next"], "rollback.approval");
    let gate = node("rollback.approval");
    assert_eq!(gate.action, "gate");
    assert_eq!(gate.params["implicit"], "true");
    assert_eq!(gate.params["next"], "rollback");
    assert_eq!(gate.params["timeout_secs"], "3600");
    assert_eq!(node("escalate").action, "escalate");
    assert_eq!(node("escalated").params["outcome"], "escalated");
    assert!(
        plan.steps
            .iter()
            .all(|s| s.params["node"] != "flaky" && s.params["node"] != "retry"),
        "a decided condition and the branch it did not take are not in the program"
    );
    let indexes: Vec<i32> = plan.steps.iter().map(|s| s.index).collect();
    assert_eq!(indexes, (0..plan.steps.len() as i32).collect::<Vec<_>>());
}

#[test]
fn production_restart_needs_no_gate_unless_configured() {
    let f = failure(
        FailureType::Infrastructure,
        Severity::High,
        "production",
        false,
    );
    let plan = decide().plan(&f, 1);
    assert_eq!(actions(&plan)[1], "restart_service");
    assert!(!plan.requires_approval, "a restart is not a rollback");
    let mut config = DecideConfig::default();
    config.approval_environments.clear();
    let d = Decide::new(
        Topics::default(),
        config,
        Arc::new(Policy::default_policy()),
    );
    let f = failure(
        FailureType::Application,
        Severity::High,
        "production",
        false,
    );
    assert!(
        !d.plan(&f, 1).requires_approval,
        "without production in approval_environments the rollback runs"
    );
}

#[test]
fn resource_failures_scale_and_record_what_they_read() {
    let plan = decide().plan(
        &failure(FailureType::Resource, Severity::High, "staging", false),
        1,
    );
    assert_eq!(plan.strategy, "resource_recovery");
    assert_eq!(actions(&plan)[1], "scale_resources");
    assert_eq!(plan.steps[1].params["factor"], "1.5");
    let d = plan
        .decision_path
        .iter()
        .find(|d| &*d.node == "out_of_memory")
        .expect("decision");
    assert!(d.inputs.contains_key("rules"), "{:?}", d.inputs);
    assert!(d.answer.starts_with("no"), "no memory rule in the evidence");
}

#[test]
fn transient_failures_retry_first_and_info_only_notifies() {
    let plan = decide().plan(&failure(FailureType::Timing, Severity::Low, "ci", true), 1);
    assert_eq!(actions(&plan)[1], "retry_deployment");
    let plan = decide().plan(
        &failure(FailureType::HumanError, Severity::Info, "ci", false),
        1,
    );
    assert_eq!(plan.strategy, NOTIFY_ONLY);
    assert!(!plan.requires_approval);
    assert_eq!(actions(&plan), ["notify"]);
    assert!(plan.candidates.is_empty());
}

#[test]
fn network_failures_contain_in_parallel_and_wait_before_retrying() {
    let plan = decide().plan(
        &failure(FailureType::Network, Severity::High, "staging", false),
        1,
    );
    let parallel: Vec<&PlanStep> = plan
        .steps
        .iter()
        .filter(|s| s.params.get("parallel").map(String::as_str) == Some("contain"))
        .collect();
    assert_eq!(parallel.len(), 2);
    assert!(parallel.iter().all(|s| s.params["join"] == "all"));
    let plan = decide().plan(
        &failure(FailureType::Network, Severity::High, "staging", true),
        1,
    );
    assert_eq!(actions(&plan)[1..3], ["wait", "retry_deployment"]);
    assert_eq!(plan.steps[1].params["delay_secs"], "30");
}

fn outcome(i: usize, strategy: &str, result: Outcome) -> RecoveryOutcome {
    RecoveryOutcome {
        recovery_id: format!("svc/staging#{i}"),
        failure_id: String::new(),
        deployment_key: "svc/staging".into(),
        service: "svc".into(),
        environment: "staging".into(),
        failure_type: FailureType::Application,
        severity: Severity::Medium,
        strategy: strategy.into(),
        outcome: result,
        dry_run: false,
        started_at: 0,
        finished_at: 1,
        steps_total: 4,
        steps_succeeded: 1,
        detail: String::new(),
        ci: None,
        approver: None,
        actions: vec![],
        simulated_steps: Vec::new(),
        metrics: None,
        should_retry_deployment: false,
        recommendations: Vec::new(),
    }
}

const RESTART_FIRST: &str = r#"
version: 1
strategies:
  - id: restart_first
    name: Restart first
    applies_to: {types: [application]}
    estimated_duration_minutes: 5
    prior_success_rate: 0.70
    root: restart
    nodes:
      restart: {type: action, action: restart_service, next: done, on_failure: gave_up}
      done: {type: terminal, outcome: resolved, message: restarted}
      gave_up: {type: terminal, outcome: failed, message: restart failed}
"#;

#[test]
fn a_strategy_that_keeps_failing_is_demoted() {
    let policy = Policy::load(&[("restart.yaml".into(), RESTART_FIRST.into())]).expect("valid");
    let mut d = Decide::new(Topics::default(), DecideConfig::default(), Arc::new(policy));
    let f = failure(FailureType::Application, Severity::Medium, "staging", false);
    assert_eq!(
        d.plan(&f, 1).strategy,
        "application_recovery",
        "0.75 beats 0.70"
    );
    for i in 0..3 {
        d.learn(&outcome(i, "application_recovery", Outcome::Failed), 1);
        d.learn(&outcome(i, "application_recovery", Outcome::Failed), 1); // redelivered
    }
    assert_eq!(
        d.learned()["application_recovery/application"],
        StrategyCount {
            succeeded: 0,
            failed: 3
        },
        "each outcome counted once"
    );
    let plan = d.plan(&f, 2);
    assert_eq!(plan.strategy, "restart_first");
    let loser = plan
        .candidates
        .iter()
        .find(|c| c.strategy == "application_recovery")
        .expect("candidate");
    assert!((loser.expected_success - 7.5 / 13.0).abs() < 1e-9);
    assert!(
        loser.verdict.contains("against 0.70 for restart_first"),
        "{}",
        loser.verdict
    );
    assert!(!plan.requires_approval, "restart_first has not failed here");

    // With nothing to fall back to, the failing strategy needs a human here.
    let mut only = decide();
    for i in 0..3 {
        only.learn(&outcome(i, "application_recovery", Outcome::Failed), 1);
    }
    let plan = only.plan(&f, 2);
    assert_eq!(plan.strategy, "application_recovery");
    assert!(
        plan.requires_approval,
        "three failures here: a human approves the rollback"
    );

    // The changelog carries the counts to the next owner of the partition.
    let changelog = d.end_batch(2).expect("ok");
    assert_eq!(changelog.len(), 1, "stats written once per batch");
    let Action::Emit(record) = &changelog[0] else {
        panic!("an emit")
    };
    let mut next = Decide::new(Topics::default(), DecideConfig::default(), d.policy.clone());
    next.restore(
        &record.topic,
        record.key.as_bytes(),
        record.value.as_deref(),
    )
    .expect("restores");
    next.restore(
        &record.topic,
        record.key.as_bytes(),
        record.value.as_deref(),
    )
    .expect("a replayed changelog record replaces, not adds");
    assert_eq!(next.learned(), d.learned());
    assert_eq!(next.plan(&f, 3).strategy, "restart_first");
    next.restore(&record.topic, record.key.as_bytes(), None)
        .expect("tombstone");
    assert_eq!(next.plan(&f, 3).strategy, "application_recovery");
    // Dry runs and skipped recoveries teach nothing.
    let mut dry = outcome(9, "restart_first", Outcome::Failed);
    dry.dry_run = true;
    next.learn(&dry, 4);
    next.learn(&outcome(10, "restart_first", Outcome::Skipped), 4);
    assert!(next.learned().values().all(|c| c.failed == 0));
}

#[test]
fn precomputed_programs_equal_programs_built_for_the_failure() {
    let d = decide();
    let mut checked = 0;
    for &t in FailureType::ALL {
        for &severity in Severity::ALL {
            for env in ["production", "staging", "ci"] {
                for transient in [false, true] {
                    let f = failure(t, severity, env, transient);
                    let plan = d.plan(&f, 1);
                    let Some(s) = d.policy().strategy(&plan.strategy) else {
                        continue;
                    };
                    let gate = plan
                        .decision_path
                        .iter()
                        .any(|p| p.node == "approval" && p.answer != "no");
                    let options = WalkOptions {
                        gate_risky: gate,
                        gate_reason: "",
                        gate_timeout_secs: DecideConfig::default().approval_timeout_secs,
                    };
                    assert_eq!(
                        plan.steps,
                        program::program(s, &f, options),
                        "{t} {severity} {env} {transient}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 200, "{checked}");
}

#[test]
fn no_applicable_strategy_tells_the_owners() {
    let only_prod = r#"
version: 1
strategies:
  - id: network_recovery
    name: Network recovery, production only
    applies_to: {types: [network], environments: [production]}
    estimated_duration_minutes: 5
    prior_success_rate: 0.5
    root: done
    nodes:
      done: {type: terminal, outcome: escalated, message: paged}
"#;
    let policy = Policy::load(&[("p.yaml".into(), only_prod.into())]).expect("valid");
    let d = Decide::new(Topics::default(), DecideConfig::default(), Arc::new(policy));
    let plan = d.plan(
        &failure(FailureType::Network, Severity::High, "staging", false),
        1,
    );
    assert_eq!(plan.strategy, NOTIFY_ONLY);
    assert_eq!(plan.terminal.as_deref(), Some("escalated"));
    let c = plan
        .candidates
        .iter()
        .find(|c| c.strategy == "network_recovery")
        .expect("candidate");
    assert_eq!(c.verdict, "not for environment staging");
}
