//! Walking a strategy's tree for one failure: the expected path.
//!
//! Conditions on fields of the failure are decided now, and the values read
//! are recorded. Health checks and metrics are only known during the
//! recovery: they become `run_health_check` steps that carry the node to go to
//! when the check fails, and the walk follows the healthy branch. Actions are
//! assumed to succeed; their `on_failure` node travels with the step. Every
//! node visited adds one [`DecisionStep`] saying what was read, the branch
//! taken and why.

pub use super::condition::{describe, evaluate, read, FieldValue};
use super::policy::{Check, Join, Node, Strategy, TerminalOutcome, RISKY_ACTIONS};
use crate::domain::{CategorizedFailure, DecisionStep, Phase, PlanStep};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;

/// Where the walk ended and what it passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// One entry per node visited (and per gate added).
    pub decisions: Vec<DecisionStep>,
    /// How the expected path ends.
    pub terminal: TerminalOutcome,
    /// The terminal node's message.
    pub message: String,
    /// Whether the path passes a gate (from the tree, or added before a risky action).
    pub gated: bool,
}

/// What the walk needs besides the failure.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions<'a> {
    /// Put a gate before the first risky action ([`RISKY_ACTIONS`]) unless the tree already has one on the path.
    pub gate_risky: bool,
    /// Why, for the decision path (e.g. "production requires approval").
    pub gate_reason: &'a str,
    /// How long such a gate waits for an answer.
    pub gate_timeout_secs: u64,
}

/// What a node contributes to every plan that passes it, worked out once
/// when the policy is loaded: its decision text and its step templates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prepared {
    /// The decision, when it does not depend on the failure.
    pub(super) decision: Option<DecisionStep>,
    /// Program steps with `index` and `target` still to fill in; edges
    /// (`next`, `on_failure`, ...) name the tree's nodes as written.
    pub(super) steps: Vec<PlanStep>,
    /// Per step, the parameters that name another node: `(parameter, node)`,
    /// in [`super::program::EDGES`] order.
    pub(super) edges: Vec<Vec<(&'static str, String)>>,
}

/// Prepares every node of `strategy` (see [`Prepared`]).
pub fn prepare(strategy: &Strategy) -> BTreeMap<String, Prepared> {
    strategy
        .nodes
        .iter()
        .map(|(id, node)| {
            let mut p = prepare_node(strategy, id, node);
            p.edges = p
                .steps
                .iter()
                .map(|step| {
                    super::program::EDGES
                        .iter()
                        .filter_map(|e| step.params.get(*e).map(|to| (*e, to.clone())))
                        .collect()
                })
                .collect();
            (id.clone(), p)
        })
        .collect()
}

fn template(phase: Phase, action: &str, params: BTreeMap<String, String>, secs: u64) -> PlanStep {
    PlanStep {
        index: 0,
        phase,
        action: action.to_string(),
        target: String::new(),
        params: crate::domain::shared_params(params),
        timeout_ms: (secs as i64).saturating_mul(1000),
    }
}

/// A gate step: `implicit` when medic added it before a risky action.
pub(super) fn gate_template(
    id: &str,
    next: &str,
    on_timeout: Option<&str>,
    timeout_secs: u64,
    implicit: bool,
) -> PlanStep {
    let mut params = BTreeMap::from([
        ("node".into(), id.to_string()),
        ("next".into(), next.to_string()),
        ("timeout_secs".into(), timeout_secs.to_string()),
    ]);
    if let Some(t) = on_timeout {
        params.insert("on_timeout".into(), t.to_string());
    }
    if implicit {
        params.insert("implicit".into(), "true".into());
    }
    template(Phase::Preparation, "gate", params, timeout_secs)
}

fn prepare_node(strategy: &Strategy, id: &str, node: &Node) -> Prepared {
    let fixed =
        |question: String, answer: String| Some(decision(id, question, answer, BTreeMap::new()));
    match node {
        Node::Terminal { outcome, message } => Prepared {
            edges: Vec::new(),
            decision: fixed(
                "How does the recovery end?".into(),
                format!("{}: {message}", outcome.as_str()),
            ),
            steps: vec![template(
                Phase::PostRecovery,
                "end",
                BTreeMap::from([
                    ("node".into(), id.to_string()),
                    ("outcome".into(), outcome.as_str().into()),
                    ("message".into(), message.clone()),
                ]),
                0,
            )],
        },
        // The answer depends on the failure; only the question is fixed.
        Node::Condition { check, .. } if check.field.is_some() => Prepared {
            edges: Vec::new(),
            decision: fixed(format!("Is {}?", describe(check)), String::new()),
            steps: Vec::new(),
        },
        Node::Condition {
            check,
            on_true,
            on_false,
        } => {
            let mut params = check_params(check);
            params.insert("node".into(), id.to_string());
            params.insert("next".into(), on_true.clone());
            params.insert("if_unhealthy".into(), on_false.clone());
            Prepared {
                edges: Vec::new(),
                decision: fixed(
                    format!("Is {}?", describe(check)),
                    format!(
                        "measured during the recovery: expected path assumes yes and goes to {on_true}; otherwise {on_false}"
                    ),
                ),
                steps: vec![template(Phase::Validation, "run_health_check", params, 300)],
            }
        }
        Node::Action {
            action,
            params,
            phase,
            timeout_secs,
            next,
            on_failure,
        } => {
            let mut p = stringify(params);
            p.insert("node".into(), id.to_string());
            if let Some(n) = next {
                p.insert("next".into(), n.clone());
            }
            if let Some(f) = on_failure {
                p.insert("on_failure".into(), f.clone());
            }
            Prepared {
                edges: Vec::new(),
                decision: fixed(
                    format!("What does {id} do?"),
                    format!(
                        "{action} ({} phase), then {}{}",
                        phase.as_str(),
                        next.as_deref().unwrap_or("nothing"),
                        on_failure
                            .as_deref()
                            .map(|f| format!("; on failure {f}"))
                            .unwrap_or_default()
                    ),
                ),
                steps: vec![template(*phase, action, p, *timeout_secs)],
            }
        }
        Node::Gate {
            timeout_secs,
            on_timeout,
            next,
        } => Prepared {
            edges: Vec::new(),
            decision: fixed(
                "Does a human approve?".into(),
                format!(
                    "the policy always asks: waits up to {} s, then {}",
                    timeout_secs.unwrap_or(0),
                    on_timeout.as_deref().unwrap_or("fails")
                ),
            ),
            steps: vec![gate_template(
                id,
                next,
                on_timeout.as_deref(),
                timeout_secs.unwrap_or(0),
                false,
            )],
        },
        Node::Parallel {
            branches,
            join,
            next,
        } => Prepared {
            edges: Vec::new(),
            decision: fixed(
                format!("What runs together at {id}?"),
                format!(
                    "{} together, {} must succeed, then {next}",
                    branches.join(" and "),
                    if *join == Join::All { "all" } else { "any one" }
                ),
            ),
            steps: std::iter::once(template(
                branches
                    .first()
                    .and_then(|b| match strategy.nodes.get(b) {
                        Some(Node::Action { phase, .. }) => Some(*phase),
                        _ => None,
                    })
                    .unwrap_or(Phase::ImmediateResponse),
                "parallel",
                BTreeMap::from([
                    ("node".into(), id.to_string()),
                    ("branches".into(), branches.join(",")),
                    ("join".into(), join.as_str().into()),
                    ("next".into(), next.clone()),
                ]),
                0,
            ))
            .chain(
                branches
                    .iter()
                    .filter_map(|branch| match strategy.nodes.get(branch) {
                        Some(Node::Action {
                            action,
                            params,
                            phase,
                            timeout_secs,
                            ..
                        }) => {
                            let mut params = stringify(params);
                            params.insert("node".into(), branch.clone());
                            params.insert("parallel".into(), id.to_string());
                            params.insert("join".into(), join.as_str().into());
                            Some(template(*phase, action, params, *timeout_secs))
                        }
                        _ => None,
                    }),
            )
            .collect(),
        },
        Node::Wait {
            delay_secs,
            until,
            deadline_secs,
            on_deadline,
            next,
        } => {
            let mut params = until.as_ref().map(check_params).unwrap_or_default();
            params.insert("node".into(), id.to_string());
            params.insert("next".into(), next.clone());
            // A wait belongs to the phase of what it waits for.
            let phase = match strategy.nodes.get(next) {
                Some(Node::Action { phase, .. }) => *phase,
                _ => Phase::Validation,
            };
            let (secs, answer) = match (delay_secs, until) {
                (Some(d), _) => {
                    params.insert("delay_secs".into(), d.to_string());
                    (*d, format!("{d} s, then {next}"))
                }
                (None, Some(check)) => {
                    let deadline = deadline_secs.unwrap_or(0);
                    let on_deadline = on_deadline.as_deref().unwrap_or("fail");
                    params.insert("deadline_secs".into(), deadline.to_string());
                    params.insert("on_deadline".into(), on_deadline.into());
                    (
                        deadline,
                        format!(
                            "until {} (at most {deadline} s), then {next}; past the deadline {on_deadline}",
                            describe(check)
                        ),
                    )
                }
                (None, None) => (0, format!("no wait, then {next}")),
            };
            Prepared {
                edges: Vec::new(),
                decision: fixed("How long to wait?".into(), answer),
                steps: vec![template(phase, "wait", params, secs)],
            }
        }
    }
}

/// Walks `strategy` for `failure`. Validated trees are acyclic, so this ends
/// at a terminal; a tree that was not validated is cut off after as many
/// steps as it has nodes and ends `failed`.
pub fn walk(strategy: &Strategy, failure: &CategorizedFailure, options: WalkOptions<'_>) -> Walk {
    let mut w = Walk {
        decisions: Vec::with_capacity(12),
        terminal: TerminalOutcome::Failed,
        message: String::new(),
        gated: false,
    };
    let mut current = strategy.root.as_str();
    for _ in 0..=strategy.nodes.len() {
        let Some(node) = strategy.nodes.get(current) else {
            w.message = format!("node '{current}' does not exist");
            return w;
        };
        let scratch;
        let prepared = match strategy.prepared.get(current) {
            Some(p) => p,
            None => {
                scratch = prepare_node(strategy, current, node);
                &scratch
            }
        };
        let next = match node {
            Node::Terminal { outcome, message } => {
                w.decisions.extend(prepared.decision.clone());
                w.terminal = *outcome;
                w.message.clone_from(message);
                return w;
            }
            Node::Condition {
                check,
                on_true,
                on_false,
            } => match check.field {
                Some(field) => {
                    let (holds, read) = evaluate(field, check, failure);
                    let next = if holds { on_true } else { on_false };
                    let answer = [
                        yes_no(holds),
                        ": ",
                        field.name(),
                        " is ",
                        &read,
                        ", go to ",
                        next,
                    ]
                    .concat();
                    let question: String = match &prepared.decision {
                        Some(d) => d.question.clone(),
                        None => format!("Is {}?", describe(check)),
                    };
                    w.decisions.push(decision(
                        current,
                        question,
                        answer,
                        BTreeMap::from([(field.name().to_string(), read)]),
                    ));
                    next
                }
                None => {
                    w.decisions.extend(prepared.decision.clone());
                    on_true
                }
            },
            Node::Action { action, next, .. } => {
                if options.gate_risky && !w.gated && RISKY_ACTIONS.contains(&action.as_str()) {
                    w.gated = true;
                    w.decisions.push(decision(
                        current,
                        format!("May {action} run without a human's approval?"),
                        format!(
                            "no: {}; a gate waits up to {} s before {current}",
                            options.gate_reason, options.gate_timeout_secs
                        ),
                        BTreeMap::from([("action".into(), action.clone())]),
                    ));
                }
                let Some(next) = next else {
                    w.message = format!("action '{current}' has no next node");
                    return w;
                };
                w.decisions.extend(prepared.decision.clone());
                next
            }
            Node::Gate { next, .. } => {
                w.gated = true;
                w.decisions.extend(prepared.decision.clone());
                next
            }
            Node::Parallel { next, .. } => {
                w.decisions.extend(prepared.decision.clone());
                next
            }
            Node::Wait { next, .. } => {
                w.decisions.extend(prepared.decision.clone());
                next
            }
        };
        current = next;
    }
    w.message = format!(
        "cut off after {} nodes: the tree loops",
        strategy.nodes.len() + 1
    );
    w
}

fn decision(
    node: &str,
    question: impl Into<String>,
    answer: impl Into<String>,
    inputs: BTreeMap<String, String>,
) -> DecisionStep {
    DecisionStep {
        node: node.into(),
        question: question.into(),
        answer: answer.into(),
        inputs,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Parameters as text, the way plan steps carry them.
fn stringify(params: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), value_text(v)))
        .collect()
}

/// A YAML scalar as text.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// The parameters of the `run_health_check` step a check on a signal becomes.
pub fn check_params(check: &Check) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    if let Some(h) = &check.health_check {
        p.insert("check".into(), h.clone());
    }
    if let Some(m) = &check.metric {
        p.insert("metric".into(), m.clone());
    }
    if let Some(b) = check.below {
        p.insert("below".into(), b.to_string());
    }
    if let Some(a) = check.above {
        p.insert("above".into(), a.to_string());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FailureType;
    use crate::domain::Severity;
    use crate::stages::decide::policy::Policy;

    const EVERY_NODE: &str = r#"
version: 1
strategies:
  - id: every_node
    name: Every node type
    estimated_duration_minutes: 5
    prior_success_rate: 0.5
    root: severe
    nodes:
      severe: {type: condition, check: {field: severity, at_least: high}, on_true: approve, on_false: calm}
      approve: {type: gate, timeout_secs: 600, on_timeout: gave_up, next: together}
      together: {type: parallel, branches: [flush, breaker], join: any, next: settle}
      flush: {type: action, action: clear_cache, params: {cache: cdn}, phase: immediate_response}
      breaker: {type: action, action: enable_circuit_breaker, params: {open_secs: 60}, phase: immediate_response}
      settle: {type: wait, until: {metric: error_rate, below: 2.5}, deadline_secs: 300, on_deadline: gave_up, next: errors}
      errors: {type: condition, check: {metric: p99_latency_ms, below: 500}, on_true: fixed, on_false: gave_up}
      calm: {type: wait, delay_secs: 45, next: fixed}
      fixed: {type: terminal, outcome: resolved, message: fixed}
      gave_up: {type: terminal, outcome: failed, message: gave up}
"#;

    fn run(severity: Severity) -> (Walk, Vec<PlanStep>) {
        let policy = Policy::load(&[("t.yaml".into(), EVERY_NODE.into())]).expect("valid");
        let s = policy.strategy("every_node").expect("loaded");
        let f =
            crate::stages::decide::test_failure(FailureType::Network, severity, "staging", false);
        let options = WalkOptions {
            gate_risky: false,
            gate_reason: "",
            gate_timeout_secs: 1,
        };
        (
            walk(s, &f, options),
            crate::stages::decide::program::program(s, &f, options),
        )
    }

    #[test]
    fn every_node_type_leaves_its_trace() {
        let (w, program) = run(Severity::Critical);
        let path = crate::stages::decide::program::expected_path(&program);
        assert!(w.gated, "the explicit gate is on the path");
        assert_eq!(w.terminal, TerminalOutcome::Resolved);
        let actions: Vec<&str> = path.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "clear_cache",
                "enable_circuit_breaker",
                "wait",
                "run_health_check"
            ]
        );
        assert_eq!(path[0].params["parallel"], "together");
        assert_eq!(path[1].params["join"], "any");
        let wait = path[2];
        assert_eq!(
            (
                wait.params["metric"].as_str(),
                wait.params["below"].as_str()
            ),
            ("error_rate", "2.5")
        );
        assert_eq!(wait.params["on_deadline"], "gave_up");
        assert_eq!(wait.timeout_ms, 300_000);
        let check = path[3];
        assert_eq!(check.params["metric"], "p99_latency_ms");
        assert_eq!(check.params["if_unhealthy"], "gave_up");
        assert_eq!(check.phase, Phase::Validation);
        let nodes: Vec<&str> = w.decisions.iter().map(|d| &*d.node).collect();
        assert_eq!(
            nodes,
            ["severe", "approve", "together", "settle", "errors", "fixed"]
        );
        assert_eq!(w.decisions[0].inputs["severity"], "critical");
        assert_eq!(
            &*w.decisions[1].answer,
            "the policy always asks: waits up to 600 s, then gave_up"
        );

        let (calm, calm_program) = run(Severity::Low);
        assert!(!calm.gated);
        let calm_path = crate::stages::decide::program::expected_path(&calm_program);
        assert_eq!(calm_path.len(), 1);
        assert_eq!(calm_path[0].params["delay_secs"], "45");
        assert_eq!(
            calm_program
                .iter()
                .map(|s| s.action.as_str())
                .collect::<Vec<_>>(),
            ["wait", "end"],
            "the severe branch cannot be reached: it is not in the program"
        );
        let gate = &program[0];
        assert_eq!(
            (
                gate.action.as_str(),
                gate.params["next"].as_str(),
                gate.params["on_timeout"].as_str()
            ),
            ("gate", "together", "gave_up")
        );
        assert_eq!(
            &*calm.decisions[0].answer,
            "no: severity is low, go to calm"
        );
    }

    #[test]
    fn field_checks_compare_as_their_type() {
        let mut f = crate::stages::decide::test_failure(
            FailureType::Network,
            Severity::Medium,
            "staging",
            true,
        );
        let check = |yaml: &str| -> Check { serde_yaml_ng::from_str(yaml).expect("check") };
        let eval = |c: &Check, f: &CategorizedFailure| evaluate(c.field.expect("field"), c, f).0;
        assert!(eval(&check("{field: severity, at_least: medium}"), &f));
        assert!(!eval(&check("{field: severity, at_least: high}"), &f));
        assert!(eval(
            &check("{field: failure_type, in: [network, dependency]}"),
            &f
        ));
        assert!(eval(&check("{field: components, equals: backend}"), &f));
        assert!(eval(&check("{field: transient, equals: true}"), &f));
        let rate = check("{field: error_rate, at_least: 5}");
        assert!(!eval(&rate, &f), "an unknown error rate holds nothing");
        f.error_rate = Some(7.5);
        assert!(eval(&rate, &f));
        assert!(!eval(
            &check("{field: error_rate, at_least: 5, at_most: 6}"),
            &f
        ));
    }
}
