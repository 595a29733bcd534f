//! Whether every action a loaded policy can reach really runs: routed to an
//! executor that carries it out and accepts the parameters the strategy
//! gives it, or listed in `orchestrate.dry_run` to be simulated on purpose.
//!
//! Checked at start and by `medic check-config`, so that a tree whose
//! rollback no executor can carry out fails there, not during an incident.

use super::step::StepRouter;
use crate::stages::decide::policy::{Node, Policy, ACTIONS};
use crate::stages::decide::tree::{check_params, value_text};
use crate::stages::orchestrate::config::DryRun;
use crate::stages::orchestrate::TEMPORARY_MEASURES;
use std::collections::BTreeMap;

/// One step a strategy of the policy can run.
#[derive(Debug, Clone, PartialEq)]
pub struct Reachable {
    /// Strategy id.
    pub strategy: String,
    /// Node id (`<node>.cleanup` for the undo of a temporary measure).
    pub node: String,
    /// The action the executor is asked to carry out.
    pub action: String,
    /// The parameters the strategy gives it.
    pub params: BTreeMap<String, String>,
}

/// Every executor step the strategies of `policy` can run: action nodes,
/// conditions and waits on a signal (a `run_health_check`), and, when
/// `cleanup` is on, the undo of each temporary measure.
pub fn reachable(policy: &Policy, cleanup: bool) -> Vec<Reachable> {
    let mut out = Vec::new();
    for strategy in policy.strategies() {
        let mut push = |node: &str, action: &str, params: BTreeMap<String, String>| {
            out.push(Reachable {
                strategy: strategy.id.clone(),
                node: node.to_string(),
                action: action.to_string(),
                params,
            })
        };
        for (id, node) in &strategy.nodes {
            match node {
                Node::Action { action, params, .. } => {
                    let params: BTreeMap<String, String> = params
                        .iter()
                        .map(|(k, v)| (k.clone(), value_text(v)))
                        .collect();
                    if cleanup {
                        if let Some((_, undo)) =
                            TEMPORARY_MEASURES.iter().find(|(m, _)| m == action)
                        {
                            let kept = params
                                .iter()
                                .filter(|(k, _)| matches!(k.as_str(), "dependency" | "component"))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            push(&format!("{id}.cleanup"), undo, kept);
                        }
                    }
                    push(id, action, params);
                }
                Node::Condition { check, .. } if check.field.is_none() => {
                    push(id, "run_health_check", check_params(check));
                }
                Node::Wait {
                    until: Some(check), ..
                } => push(id, "run_health_check", check_params(check)),
                _ => {}
            }
        }
    }
    out
}

/// What keeps the policy from running as configured: actions no executor
/// carries out (grouped, with every strategy and node that reaches them),
/// parameters the routed executor refuses, and unknown actions in the
/// dry-run list. Empty when everything reachable really runs or is
/// simulated on purpose; always empty with `dry_run: true`.
pub fn problems(
    reach: &[Reachable],
    dry_run: &DryRun,
    routes: &BTreeMap<String, String>,
    default: &str,
    router: &StepRouter,
) -> Vec<String> {
    let mut problems = Vec::new();
    let listed = match dry_run {
        DryRun::All => return problems,
        DryRun::Actions(listed) => listed,
    };
    for action in listed {
        if !ACTIONS.iter().any(|(a, _)| a == action) {
            problems.push(format!(
                "orchestrate.dry_run: '{action}' is not an action medic knows"
            ));
        }
    }
    let mut unrouted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in reach.iter().filter(|r| !dry_run.covers(&r.action)) {
        let kind = routes.get(&r.action).map_or(default, String::as_str);
        if kind == "dry_run" {
            unrouted
                .entry(r.action.as_str())
                .or_default()
                .push(format!("{}.{}", r.strategy, r.node));
            continue;
        }
        let executor = router.route(&r.action);
        if let Err(why) = executor.check(&r.action, &r.params) {
            problems.push(format!(
                "strategy {} node {}: {} on the {} executor: {why}",
                r.strategy,
                r.node,
                r.action,
                executor.kind()
            ));
        }
    }
    for (action, nodes) in unrouted {
        problems.push(format!(
            "{action} has no executor (reached by {}): route it under \
             orchestrate.executors.routes, or list it in orchestrate.dry_run \
             to simulate it on purpose",
            nodes.join(", ")
        ));
    }
    problems
}
