//! Recovery policy: strategies as decision trees in YAML, validated at load.
//!
//! A strategy says which failures it is for (`applies_to`), how long it takes,
//! how often it worked before (`prior_success_rate`), and a tree of nodes
//! starting at `root`. Six node types:
//!
//! | type | fields | meaning |
//! |---|---|---|
//! | `condition` | `check`, `on_true`, `on_false` | branch on a field of the failure, a health check or a metric threshold |
//! | `action` | `action`, `params`, `phase`, `timeout_secs`, `next`, `on_failure` | do something (one of [`ACTIONS`]) |
//! | `gate` | `timeout_secs`, `on_timeout`, `next` | a human must approve; what to do when nobody answers |
//! | `parallel` | `branches`, `join` (`all`/`any`), `next` | run the branch actions together |
//! | `wait` | `delay_secs`, or `until` + `deadline_secs` + `on_deadline`; `next` | wait |
//! | `terminal` | `outcome` (`resolved`/`escalated`/`failed`), `message` | the end |
//!
//! Validation refuses, naming file, strategy and node: references to unknown
//! nodes, cycles, unreachable nodes, paths that end without a terminal, gates
//! without a timeout or a timeout branch, actions the executors do not know,
//! parameters of the wrong type. The compiled-in policy has ten built-in
//! strategies (the original six and four for the types those covered only
//! as a neighbour); policy files add strategies or replace them by id.
//!
//! Here: the policy model (strategies, nodes, checks, the action catalogue).
//! Loading and layering files is in `load.rs`, validation in `validate.rs`.

mod load;
mod validate;

use crate::domain::{Component, FailureType, Phase, Severity};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
pub use validate::validate;

/// The built-in policy.
pub const DEFAULT_POLICY: &str = include_str!("../default_strategies.yaml");

/// Parameter types an action accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Whole number.
    Int,
    /// Number.
    Float,
    /// true/false.
    Bool,
    /// Text.
    Text,
}

/// Every action the executors know, with its parameters.
pub const ACTIONS: &[(&str, &[(&str, ParamType)])] = &[
    (
        "restart_service",
        &[
            ("graceful", ParamType::Bool),
            ("component", ParamType::Text),
        ],
    ),
    (
        "rollback_deployment",
        &[
            ("to_revision", ParamType::Text),
            ("strategy", ParamType::Text),
        ],
    ),
    (
        "scale_resources",
        &[
            ("factor", ParamType::Float),
            ("max_replicas", ParamType::Int),
            ("resource", ParamType::Text),
        ],
    ),
    (
        "retry_deployment",
        &[
            ("attempts", ParamType::Int),
            ("backoff_secs", ParamType::Int),
        ],
    ),
    ("clear_cache", &[("cache", ParamType::Text)]),
    (
        "disable_circuit_breaker",
        &[("dependency", ParamType::Text)],
    ),
    ("disable_readonly_mode", &[("component", ParamType::Text)]),
    ("failover", &[("to", ParamType::Text)]),
    (
        "enable_circuit_breaker",
        &[
            ("dependency", ParamType::Text),
            ("open_secs", ParamType::Int),
        ],
    ),
    (
        "shift_traffic",
        &[("percent", ParamType::Int), ("to", ParamType::Text)],
    ),
    ("enable_readonly_mode", &[("component", ParamType::Text)]),
    ("rotate_credentials", &[("credential", ParamType::Text)]),
    ("isolate_component", &[("component", ParamType::Text)]),
    (
        "run_health_check",
        &[("check", ParamType::Text), ("expect", ParamType::Text)],
    ),
    (
        "notify",
        &[("channel", ParamType::Text), ("message", ParamType::Text)],
    ),
    (
        "escalate",
        &[("team", ParamType::Text), ("page", ParamType::Bool)],
    ),
];

/// Actions that change or roll back what runs, or touch data: production
/// puts a gate before them unless its environment says otherwise.
pub const RISKY_ACTIONS: &[&str] = &[
    "rollback_deployment",
    "failover",
    "shift_traffic",
    "enable_readonly_mode",
    "rotate_credentials",
    "isolate_component",
];

/// Which failures a strategy is for. An empty list matches everything.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AppliesTo {
    /// Failure types.
    #[serde(default)]
    pub types: Vec<FailureType>,
    /// Severities.
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Components (any one in common is enough).
    #[serde(default)]
    pub components: Vec<Component>,
    /// Environments.
    #[serde(default)]
    pub environments: Vec<String>,
}

/// A recovery strategy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// Unique id, carried in plans and outcomes.
    pub id: String,
    /// Name for people.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// Typical duration.
    pub estimated_duration_minutes: u32,
    /// Share of recoveries it fixed before medic saw any (Beta prior mean).
    pub prior_success_rate: f64,
    /// How many pseudo-observations the prior is worth.
    #[serde(default = "default_prior_weight")]
    pub prior_weight: f64,
    /// First node.
    pub root: String,
    /// The tree.
    pub nodes: BTreeMap<String, Node>,
    /// File it came from (set at load).
    #[serde(skip)]
    pub file: String,
    /// Per-node texts and step templates, worked out at load.
    #[serde(skip)]
    pub(crate) prepared: BTreeMap<String, super::tree::Prepared>,
}

fn default_prior_weight() -> f64 {
    10.0
}

/// A field of the failure a condition can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Failure type.
    FailureType,
    /// Severity.
    Severity,
    /// Environment.
    Environment,
    /// Transient flag.
    Transient,
    /// Confidence in [0, 1].
    Confidence,
    /// Users affected.
    AffectedUsers,
    /// Error rate, percent.
    ErrorRate,
    /// Components.
    Components,
    /// Signals folded into the failure.
    SignalCount,
    /// Service name.
    Service,
    /// Whether a CI run was part of the failure.
    FromCi,
    /// The ids of the rules whose evidence named the failure
    /// (`human-error.helm-operation-in-progress`): `in` holds when any
    /// of them is listed.
    Rules,
}

impl Field {
    /// Name, as in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Field::FailureType => "failure_type",
            Field::Severity => "severity",
            Field::Environment => "environment",
            Field::Transient => "transient",
            Field::Confidence => "confidence",
            Field::AffectedUsers => "affected_users",
            Field::ErrorRate => "error_rate",
            Field::Components => "components",
            Field::SignalCount => "signal_count",
            Field::Service => "service",
            Field::FromCi => "from_ci",
            Field::Rules => "rules",
        }
    }
}

/// What a condition checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Field of the failure (known when the plan is made).
    #[serde(default)]
    pub field: Option<Field>,
    /// Equal to this value (text, number or boolean).
    #[serde(default)]
    pub equals: Option<serde_yaml_ng::Value>,
    /// One of these values.
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<serde_yaml_ng::Value>>,
    /// At least this number (for severities: at least this severe).
    #[serde(default)]
    pub at_least: Option<serde_yaml_ng::Value>,
    /// At most this number.
    #[serde(default)]
    pub at_most: Option<f64>,
    /// A health check run during the recovery (known only then).
    #[serde(default)]
    pub health_check: Option<String>,
    /// A metric read during the recovery (known only then).
    #[serde(default)]
    pub metric: Option<String>,
    /// Metric threshold: healthy below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Metric threshold: healthy above this.
    #[serde(default)]
    pub above: Option<f64>,
}

/// How a parallel node finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Join {
    /// Every branch must succeed.
    All,
    /// One branch succeeding is enough.
    Any,
}

/// How a terminal node ends the recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalOutcome {
    /// The failure is dealt with.
    Resolved,
    /// Handed to people.
    Escalated,
    /// Gave up.
    Failed,
}

impl TerminalOutcome {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalOutcome::Resolved => "resolved",
            TerminalOutcome::Escalated => "escalated",
            TerminalOutcome::Failed => "failed",
        }
    }
}

/// One node of a strategy's tree.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Branch on a check.
    Condition {
        /// What to check.
        check: Check,
        /// Next node when the check holds.
        on_true: String,
        /// Next node when it does not.
        on_false: String,
    },
    /// Do something.
    Action {
        /// Action type.
        action: String,
        /// Parameters.
        #[serde(default)]
        params: BTreeMap<String, serde_yaml_ng::Value>,
        /// Recovery phase.
        #[serde(default = "default_phase")]
        phase: Phase,
        /// Longest the action may take.
        #[serde(default = "default_action_timeout")]
        timeout_secs: u64,
        /// Next node; absent only for a parallel branch.
        #[serde(default)]
        next: Option<String>,
        /// Next node when the action fails (default: fail the recovery).
        #[serde(default)]
        on_failure: Option<String>,
    },
    /// A human must approve.
    Gate {
        /// How long to wait for an answer.
        #[serde(default)]
        timeout_secs: Option<u64>,
        /// Where to go when nobody answers.
        #[serde(default)]
        on_timeout: Option<String>,
        /// Where to go when approved.
        next: String,
    },
    /// Run actions together.
    Parallel {
        /// Action nodes run together (each without `next`).
        branches: Vec<String>,
        /// All or any must succeed.
        #[serde(default = "default_join")]
        join: Join,
        /// Next node.
        next: String,
    },
    /// Wait.
    Wait {
        /// Fixed delay.
        #[serde(default)]
        delay_secs: Option<u64>,
        /// Or until this holds...
        #[serde(default)]
        until: Option<Check>,
        /// ...for at most this long.
        #[serde(default)]
        deadline_secs: Option<u64>,
        /// Where to go when the deadline passes.
        #[serde(default)]
        on_deadline: Option<String>,
        /// Next node.
        next: String,
    },
    /// The end.
    Terminal {
        /// How it ends.
        outcome: TerminalOutcome,
        /// What people read.
        message: String,
    },
}

fn default_phase() -> Phase {
    Phase::ImmediateResponse
}

fn default_action_timeout() -> u64 {
    300
}

fn default_join() -> Join {
    Join::All
}

impl Node {
    /// Node type name, as in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Condition { .. } => "condition",
            Node::Action { .. } => "action",
            Node::Gate { .. } => "gate",
            Node::Parallel { .. } => "parallel",
            Node::Wait { .. } => "wait",
            Node::Terminal { .. } => "terminal",
        }
    }

    /// Every node this one can lead to, with the edge label.
    pub fn edges(&self) -> Vec<(&'static str, &str)> {
        let mut e: Vec<(&'static str, &str)> = Vec::new();
        match self {
            Node::Condition {
                on_true, on_false, ..
            } => {
                e.push(("true", on_true));
                e.push(("false", on_false));
            }
            Node::Action {
                next, on_failure, ..
            } => {
                e.extend(next.as_deref().map(|n| ("next", n)));
                e.extend(on_failure.as_deref().map(|n| ("on failure", n)));
            }
            Node::Gate {
                on_timeout, next, ..
            } => {
                e.push(("approved", next));
                e.extend(on_timeout.as_deref().map(|n| ("timeout", n)));
            }
            Node::Parallel { branches, next, .. } => {
                e.extend(branches.iter().map(|b| ("branch", b.as_str())));
                e.push(("joined", next));
            }
            Node::Wait {
                on_deadline, next, ..
            } => {
                e.push(("next", next));
                e.extend(on_deadline.as_deref().map(|n| ("deadline", n)));
            }
            Node::Terminal { .. } => {}
        }
        e
    }
}

/// A policy that cannot work, located.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {}{}{reason}", strategy.as_ref().map(|s| format!("strategy {s}: ")).unwrap_or_default(), node.as_ref().map(|n| format!("node {n}: ")).unwrap_or_default())]
pub struct PolicyError {
    /// Policy file.
    pub file: String,
    /// Strategy id.
    pub strategy: Option<String>,
    /// Node id.
    pub node: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// A validated set of strategies.
#[derive(Debug, Clone)]
pub struct Policy {
    strategies: Vec<Strategy>,
    version: String,
}

impl Policy {
    /// The strategies, in load order.
    pub fn strategies(&self) -> &[Strategy] {
        &self.strategies
    }

    /// One strategy by id.
    pub fn strategy(&self, id: &str) -> Option<&Strategy> {
        self.strategies.iter().find(|s| s.id == id)
    }

    /// Short hash of every policy file's name and text, carried by every plan.
    pub fn version(&self) -> &str {
        &self.version
    }
}

#[cfg(test)]
mod tests;
