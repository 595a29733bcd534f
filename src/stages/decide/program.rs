//! The program a plan carries: every node of the chosen tree the recovery can
//! reach, as plan steps the orchestrator walks at run time.
//!
//! Conditions on fields of the failure are decided when the plan is made, so
//! they do not appear: an edge to one leads straight to the branch it chose.
//! Every other node is one step (a parallel node is its control step followed
//! by its branches), linked by node ids in its parameters:
//!
//! | action | parameters |
//! |---|---|
//! | any executor action | `next`, `on_failure` (optional), the strategy's own |
//! | `run_health_check` | `next` (healthy), `if_unhealthy`, `check` or `metric` + `below`/`above` |
//! | `gate` | `next` (approved), `on_timeout` (absent: the recovery ends escalated), `timeout_secs`, `implicit` |
//! | `parallel` | `branches` (node ids), `join` (`all`/`any`), `next` |
//! | `wait` | `next`, `delay_secs`, or `check`/`metric` + `deadline_secs` + `on_deadline` |
//! | `end` | `outcome` (`resolved`/`escalated`/`failed`), `message` |
//!
//! Every step also has `node`, its id. The first step is where the recovery
//! starts; the steps of the expected path (every action succeeds, every check
//! passes) come first, in order. Where medic requires approval before risky
//! actions, a gate `<node>.approval` (`implicit: true`) stands before each
//! risky action the tree does not already gate; the orchestrator asks only
//! the first time a recovery reaches one.

use super::policy::{Node, Strategy, RISKY_ACTIONS};
use super::tree::{evaluate, gate_template, WalkOptions};
use crate::domain::{CategorizedFailure, PlanStep};
use std::borrow::Cow;

/// Suffix of the gates medic adds before risky actions.
pub const APPROVAL_SUFFIX: &str = ".approval";

/// Step parameters that name another node, the expected edge last.
pub(crate) const EDGES: &[&str] = &[
    "on_failure",
    "if_unhealthy",
    "on_deadline",
    "on_timeout",
    "next",
];

/// Follows conditions on fields from `raw` to the node they lead to;
/// `holds(node)` answers a condition node.
fn resolve<'s>(strategy: &'s Strategy, holds: &dyn Fn(&str) -> bool, raw: &'s str) -> &'s str {
    let mut id = raw;
    for _ in 0..=strategy.nodes.len() {
        match strategy.nodes.get(id) {
            Some(Node::Condition {
                check,
                on_true,
                on_false,
            }) if check.field.is_some() => {
                id = if holds(id) { on_true } else { on_false };
            }
            _ => break,
        }
    }
    id
}

/// The ids of `strategy`'s conditions on fields of the failure, in id order.
pub fn field_conditions(strategy: &Strategy) -> Vec<&str> {
    strategy
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n, Node::Condition { check, .. } if check.field.is_some()))
        .map(|(id, _)| id.as_str())
        .collect()
}

/// Whether the condition node `id` of `strategy`, a condition on a field of
/// the failure, holds for `failure` (false for any other node).
fn field_holds(strategy: &Strategy, id: &str, failure: &CategorizedFailure) -> bool {
    match strategy.nodes.get(id) {
        Some(Node::Condition {
            check:
                check @ super::policy::Check {
                    field: Some(field), ..
                },
            ..
        }) => evaluate(*field, check, failure).0,
        _ => false,
    }
}

/// Which field conditions hold for `failure`: bit `i` for the `i`th of
/// `conditions` (see [`field_conditions`]; at most 64).
pub fn condition_bits(
    strategy: &Strategy,
    conditions: &[impl AsRef<str>],
    failure: &CategorizedFailure,
) -> u64 {
    conditions
        .iter()
        .take(64)
        .enumerate()
        .filter(|(_, id)| field_holds(strategy, id.as_ref(), failure))
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// The program of `strategy` for `failure`.
pub fn program(
    strategy: &Strategy,
    failure: &CategorizedFailure,
    options: WalkOptions<'_>,
) -> Vec<PlanStep> {
    let holds = |id: &str| field_holds(strategy, id, failure);
    let mut steps = program_with(strategy, &holds, options);
    for step in &mut steps {
        step.target.clone_from(&failure.deployment_key);
    }
    steps
}

/// The program of `strategy` when the field conditions `holds` says hold,
/// with an empty `target` (the plan's deployment fills it in).
pub fn program_with<'s>(
    strategy: &'s Strategy,
    holds: &dyn Fn(&str) -> bool,
    options: WalkOptions<'_>,
) -> Vec<PlanStep> {
    let resolve = |raw: &'s str| resolve(strategy, holds, raw);
    // Risky actions that need a gate medic adds: not already behind a tree gate.
    let gated_by_tree: Vec<&str> = if options.gate_risky {
        strategy
            .nodes
            .values()
            .filter_map(|n| match n {
                Node::Gate { next, .. } => Some(resolve(next)),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    let needs_gate = |id: &str| {
        options.gate_risky
            && !gated_by_tree.contains(&id)
            && matches!(strategy.nodes.get(id), Some(Node::Action { action, .. }) if RISKY_ACTIONS.contains(&action.as_str()))
    };
    let target = |raw: &'s str| -> Cow<'s, str> {
        let id = resolve(raw);
        if needs_gate(id) {
            Cow::Owned(format!("{id}{APPROVAL_SUFFIX}"))
        } else {
            Cow::Borrowed(id)
        }
    };
    let mut out: Vec<PlanStep> = Vec::with_capacity(strategy.nodes.len() + 2);
    // Trees are small: a list beats a set.
    let mut seen: Vec<Cow<'s, str>> = Vec::with_capacity(strategy.nodes.len() + 2);
    let mut stack: Vec<Cow<'s, str>> = vec![target(&strategy.root)];
    while let Some(id) = stack.pop() {
        if seen.contains(&id) {
            continue;
        }
        seen.push(id.clone());
        if let Some(risky) = id.strip_suffix(APPROVAL_SUFFIX) {
            let mut gate = gate_template(&id, risky, None, options.gate_timeout_secs, true);
            gate.index = out.len() as i32;
            out.push(gate);
            stack.push(Cow::Owned(risky.to_string()));
            continue;
        }
        let Some(prepared) = strategy.prepared.get(id.as_ref()) else {
            continue;
        };
        // Successors, the expected one pushed last so it is visited first.
        let mut successors: Vec<Cow<'s, str>> = Vec::new();
        for (k, template) in prepared.steps.iter().enumerate() {
            let mut step = template.clone();
            step.index = out.len() as i32;
            for (edge, raw) in prepared.edges.get(k).into_iter().flatten() {
                let to = target(raw);
                if to.as_ref() != raw.as_str() {
                    std::sync::Arc::make_mut(&mut step.params)
                        .insert((*edge).into(), to.to_string());
                }
                successors.push(to);
            }
            out.push(step);
        }
        stack.extend(successors);
    }
    out
}

/// The steps of a program's expected path, in order: from the first step along
/// `next` (a parallel step stands for its branches; gates and the end are
/// left out).
pub fn expected_path(steps: &[PlanStep]) -> Vec<&PlanStep> {
    let by_node = |id: &str| steps.iter().find(|s| s.param("node") == Some(id));
    let mut out = Vec::new();
    let mut current = steps.first();
    for _ in 0..=steps.len() {
        let Some(step) = current else { break };
        match step.action.as_str() {
            "end" => break,
            "gate" => {}
            "parallel" => {
                for branch in step.param("branches").unwrap_or_default().split(',') {
                    out.extend(by_node(branch));
                }
            }
            _ => out.push(step),
        }
        current = step.param("next").and_then(by_node);
    }
    out
}
