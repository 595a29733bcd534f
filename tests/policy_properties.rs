//! Property: every strategy tree that validation accepts ends in a terminal
//! node on every failure, within as many steps as it has nodes.

use medic::domain::{CategorizedFailure, Component, FailureType, Severity};
use medic::stages::decide::policy::{Node, Policy};
use medic::stages::decide::tree::{walk, WalkOptions};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// One generated node: its kind and four target choices.
#[derive(Debug, Clone)]
struct Gen {
    kind: u8,
    targets: [usize; 4],
    forward: bool,
    check: u8,
}

fn node_strategy() -> impl Strategy<Value = Gen> {
    (
        0u8..6,
        [any::<usize>(); 4],
        prop::bool::weighted(0.9),
        0u8..6,
    )
        .prop_map(|(kind, targets, forward, check)| Gen {
            kind,
            targets,
            forward,
            check,
        })
}

/// A policy file with one strategy of `nodes` (node i is `n{i}`, root `n0`).
fn yaml(nodes: &[Gen]) -> String {
    let n = nodes.len();
    let mut out = String::from(
        "version: 1\nstrategies:\n  - id: generated\n    name: Generated\n    estimated_duration_minutes: 1\n    prior_success_rate: 0.5\n    root: n0\n    nodes:\n",
    );
    for (i, g) in nodes.iter().enumerate() {
        let t = |k: usize| {
            let raw = g.targets[k];
            if g.forward && i + 1 < n {
                // The first target goes to the next node so that most nodes are reachable.
                let step = if k == 0 { 0 } else { raw % (n - i - 1) };
                format!("n{}", i + 1 + step)
            } else {
                format!("n{}", raw % n)
            }
        };
        let check = match g.check {
            0 => "{field: severity, at_least: high}",
            1 => "{field: transient, equals: true}",
            2 => "{field: failure_type, in: [network, dependency]}",
            3 => "{health_check: readiness}",
            4 => "{metric: error_rate, below: 1.0}",
            _ => "{field: error_rate, at_least: 5}",
        };
        let kind = if i + 1 == n && g.forward { 5 } else { g.kind };
        let body = match kind {
            0 => format!("{{type: condition, check: {check}, on_true: {}, on_false: {}}}", t(0), t(1)),
            1 if g.targets[3] % 3 == 0 => "{type: action, action: clear_cache}".to_string(),
            1 => format!("{{type: action, action: restart_service, next: {}, on_failure: {}}}", t(0), t(1)),
            2 => format!("{{type: gate, timeout_secs: 60, on_timeout: {}, next: {}}}", t(0), t(1)),
            3 => format!("{{type: parallel, branches: [{}, {}], join: any, next: {}}}", t(0), t(1), t(2)),
            4 if g.targets[3] % 2 == 0 => format!("{{type: wait, delay_secs: 5, next: {}}}", t(0)),
            4 => format!(
                "{{type: wait, until: {{metric: lag, below: 1}}, deadline_secs: 60, on_deadline: {}, next: {}}}",
                t(0),
                t(1)
            ),
            _ => "{type: terminal, outcome: resolved, message: done}".to_string(),
        };
        out.push_str(&format!("      n{i}: {body}\n"));
    }
    out
}

fn failure(
    t: FailureType,
    severity: Severity,
    transient: bool,
    error_rate: Option<f64>,
) -> CategorizedFailure {
    CategorizedFailure {
        id: "svc/prod@1".into(),
        deployment_key: "svc/prod".into(),
        service: "svc".into(),
        environment: "prod".into(),
        failure_type: t,
        severity,
        confidence: 0.8,
        runner_up: None,
        evidence: vec![],
        components: vec![Component::Backend],
        transient,
        affected_users: None,
        error_rate,
        status_codes: vec![],
        rule_pack_version: String::new(),
        signal_count: 1,
        first_seen: 1,
        last_seen: 1,
        summary: String::new(),
        pattern_hits: vec![],
        ci: None,
    }
}

fn failures() -> impl Strategy<Value = CategorizedFailure> {
    (
        prop::sample::select(FailureType::ALL),
        prop::sample::select(Severity::ALL),
        any::<bool>(),
        prop::option::of(0.0f64..20.0),
    )
        .prop_map(|(t, s, tr, e)| failure(t, s, tr, e))
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..Config::default() })]

    #[test]
    fn accepted_trees_terminate(
        nodes in prop::collection::vec(node_strategy(), 1..12),
        inputs in prop::collection::vec(failures(), 1..6),
        gate_risky in any::<bool>(),
    ) {
        let text = yaml(&nodes);
        let Ok(policy) = Policy::load(&[("generated.yaml".into(), text.clone())]) else {
            return Ok(());
        };
        let s = policy.strategy("generated").expect("loaded");
        for f in &inputs {
            let w = walk(s, f, WalkOptions { gate_risky, gate_reason: "test", gate_timeout_secs: 60 });
            let last = w.decisions.last().expect("at least one decision");
            prop_assert!(
                matches!(s.nodes.get(&*last.node), Some(Node::Terminal { .. })),
                "walk of\n{text}\nstopped at {} ({})", last.node, w.message
            );
            prop_assert!(w.decisions.len() <= 2 * s.nodes.len());
        }
    }
}

/// The property above is only worth something if the generator produces
/// trees validation accepts, and some it refuses.
#[test]
fn the_generator_makes_both_valid_and_invalid_trees() {
    let mut runner = TestRunner::deterministic();
    let gen = prop::collection::vec(node_strategy(), 1..12);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..1000 {
        let nodes = gen.new_tree(&mut runner).expect("value").current();
        match Policy::load(&[("generated.yaml".into(), yaml(&nodes))]) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.file, "generated.yaml");
                refused += 1;
            }
        }
    }
    assert!(ok >= 100, "only {ok} of 1000 generated trees were valid");
    assert!(
        refused >= 100,
        "only {refused} of 1000 generated trees were refused"
    );
}
