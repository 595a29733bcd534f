//! The `policy` target: a strategy policy file through loading, walking and rendering.

use super::*;

/// The failures every accepted strategy is walked for: the schema example,
/// once per failure type with varying severity, transience and impact.
static FAILURES: LazyLock<Vec<CategorizedFailure>> = LazyLock::new(|| {
    let base: Option<CategorizedFailure> = AVRO_EXAMPLES
        .iter()
        .find(|(name, _)| *name == "CategorizedFailure")
        .and_then(|(_, json)| serde_json::from_str(json).ok());
    let Some(base) = base else {
        return Vec::new();
    };
    FailureType::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut f = base.clone();
            f.failure_type = *t;
            f.severity = Severity::ALL[i % Severity::ALL.len()];
            f.transient = i % 2 == 0;
            f.error_rate = (i % 3 != 0).then_some(i as f64 * 2.5);
            f.affected_users = (i % 4 != 0).then_some(i as i64 * 100);
            f.confidence = (i as f64 / 10.0).min(1.0);
            f.signal_count = i as i64;
            f.components = Component::ALL.iter().copied().skip(i).take(2).collect();
            if i % 2 == 1 {
                f.environment = "staging".into();
                f.deployment_key = format!("{}/staging", f.service);
            }
            f
        })
        .collect()
});

/// `policy`: the input is one strategy (policy) YAML file, loaded over the
/// built-in policy as `decide.policy_files` loads it, validation included.
///
/// Properties: loading never panics; every strategy of an accepted file ends
/// in a terminal node within twice as many decisions as it has nodes, for
/// every test failure, with and without medic's gates; the program
/// precomputed per combination of field conditions is the one built per
/// plan; every program, and every plan's steps, is closed (each edge names
/// a step of it); pictures draw; the decide stage plans every failure into
/// a plan that encodes.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::load(&[("fuzz.yaml".to_string(), text.to_string())]) else {
        return;
    };
    let own: Vec<&Strategy> = policy
        .strategies()
        .iter()
        .filter(|s| s.file == "fuzz.yaml")
        .collect();
    for strategy in &own {
        check_strategy(strategy);
    }
    if own.is_empty() {
        return;
    }
    let _ = render::docs(&policy);
    let decide = Decide::new(
        Topics::default(),
        DecideConfig::default(),
        Arc::new(policy.clone()),
    );
    for failure in FAILURES.iter() {
        let plan = decide.plan(failure, 1_700_000_000_000);
        check_program(&plan.steps, &plan.strategy);
        codec::encode(&plan).expect("a plan encodes");
    }
}

/// A program is closed: steps are numbered in order, each names its node
/// once, and every edge (and parallel branch) names a step of the program,
/// so the orchestrator never follows an edge into nothing.
fn check_program(steps: &[PlanStep], strategy: &str) {
    let nodes: Vec<&str> = steps
        .iter()
        .map(|s| {
            s.param("node")
                .unwrap_or_else(|| panic!("a step of {strategy} names no node: {s:?}"))
        })
        .collect();
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step.index, i as i32, "step numbers of {strategy}");
        assert!(
            !nodes[..i].contains(&nodes[i]),
            "{strategy}: node {} is two steps",
            nodes[i]
        );
        let branches = step
            .param("branches")
            .into_iter()
            .flat_map(|b| b.split(','));
        let edges = program::EDGES.iter().filter_map(|e| step.param(e));
        for to in edges.chain(branches) {
            assert!(
                nodes.contains(&to),
                "{strategy}: step {} leads to {to}, which is not a step",
                nodes[i]
            );
        }
    }
    let _ = program::expected_path(steps);
}

fn check_strategy(strategy: &Strategy) {
    let _ = render::render(strategy, render::Format::Mermaid);
    let _ = render::render(strategy, render::Format::Dot);
    let conditions = program::field_conditions(strategy);
    for failure in FAILURES.iter() {
        for gate_risky in [false, true] {
            let options = WalkOptions {
                gate_risky,
                gate_reason: "fuzz",
                gate_timeout_secs: 60,
            };
            let w = walk(strategy, failure, options);
            let last = w.decisions.last().expect("a walk decides something");
            assert!(
                matches!(strategy.nodes.get(&*last.node), Some(Node::Terminal { .. })),
                "the walk of {} stopped at {} ({})",
                strategy.id,
                last.node,
                w.message
            );
            assert!(w.decisions.len() <= 2 * strategy.nodes.len());

            let per_plan = program::program(strategy, failure, options);
            check_program(&per_plan, &strategy.id);
            if conditions.len() <= 64 {
                let bits = program::condition_bits(strategy, &conditions, failure);
                let holds = |id: &str| {
                    conditions
                        .iter()
                        .position(|c| *c == id)
                        .is_some_and(|i| bits & (1 << i) != 0)
                };
                let mut precomputed = program::program_with(strategy, &holds, options);
                for step in &mut precomputed {
                    step.target.clone_from(&failure.deployment_key);
                }
                assert_eq!(
                    per_plan, precomputed,
                    "the precomputed program of {} differs from the per-plan one",
                    strategy.id
                );
            }
        }
    }
}
