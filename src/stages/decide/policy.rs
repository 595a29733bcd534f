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
//! parameters of the wrong type. The compiled-in policy has the six built-in
//! strategies; policy files add strategies or replace them by id.

use crate::domain::{Component, FailureType, Phase, Severity};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The built-in policy.
pub const DEFAULT_POLICY: &str = include_str!("default_strategies.yaml");

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    strategies: Vec<Strategy>,
}

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
    /// The built-in policy.
    pub fn default_policy() -> Policy {
        // Compiled-in; the tests load it on every run.
        Policy::load(&[]).unwrap_or_else(|e| panic!("the built-in policy is invalid: {e}"))
    }

    /// The built-in policy with `files` (`(name, YAML)`) applied in order:
    /// a strategy with an existing id replaces it.
    pub fn load(files: &[(String, String)]) -> Result<Policy, PolicyError> {
        let mut all = vec![(
            "default_strategies.yaml".to_string(),
            DEFAULT_POLICY.to_string(),
        )];
        all.extend(files.iter().cloned());
        let mut strategies: Vec<Strategy> = Vec::new();
        let mut digest = Sha256::new();
        for (file, text) in &all {
            digest.update(file.as_bytes());
            digest.update(text.as_bytes());
            let err = |reason: String| PolicyError {
                file: file.clone(),
                strategy: None,
                node: None,
                reason,
            };
            let parsed: PolicyFile =
                serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
            if parsed.version != 1 {
                return Err(err(format!(
                    "unsupported policy version {} (this medic reads version 1)",
                    parsed.version
                )));
            }
            let mut seen = BTreeSet::new();
            for mut s in parsed.strategies {
                if !seen.insert(s.id.clone()) {
                    return Err(PolicyError {
                        file: file.clone(),
                        strategy: Some(s.id),
                        node: None,
                        reason: "duplicate strategy id".into(),
                    });
                }
                s.file = file.clone();
                validate(&s)?;
                s.prepared = super::tree::prepare(&s);
                match strategies.iter().position(|x| x.id == s.id) {
                    Some(i) => strategies[i] = s,
                    None => strategies.push(s),
                }
            }
        }
        let version = crate::stages::short_version(digest);
        Ok(Policy {
            strategies,
            version,
        })
    }

    /// Loads every `*.yaml` file of a directory (sorted by name) over the built-in policy.
    pub fn load_dir(dir: &std::path::Path) -> Result<Policy, PolicyError> {
        let err = |reason: String| PolicyError {
            file: dir.display().to_string(),
            strategy: None,
            node: None,
            reason,
        };
        let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        Policy::load_files(&paths)
    }

    /// Loads the given files over the built-in policy.
    pub fn load_files(paths: &[std::path::PathBuf]) -> Result<Policy, PolicyError> {
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
                file: path.display().to_string(),
                strategy: None,
                node: None,
                reason: e.to_string(),
            })?;
            files.push((path.display().to_string(), text));
        }
        Policy::load(&files)
    }

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

fn type_of(value: &serde_yaml_ng::Value) -> Option<ParamType> {
    match value {
        serde_yaml_ng::Value::Bool(_) => Some(ParamType::Bool),
        serde_yaml_ng::Value::Number(n) if n.is_i64() || n.is_u64() => Some(ParamType::Int),
        serde_yaml_ng::Value::Number(_) => Some(ParamType::Float),
        serde_yaml_ng::Value::String(_) => Some(ParamType::Text),
        _ => None,
    }
}

/// Whether the values a field check compares with fit the field.
fn check_field_values(field: Field, check: &Check) -> Result<(), String> {
    use serde_yaml_ng::Value;
    let fits = |v: &Value| -> Result<(), String> {
        let ok = match field {
            Field::FailureType => v.as_str().is_some_and(|s| s.parse::<FailureType>().is_ok()),
            Field::Severity => v.as_str().is_some_and(|s| s.parse::<Severity>().is_ok()),
            Field::Components => v.as_str().is_some_and(|s| s.parse::<Component>().is_ok()),
            Field::Environment | Field::Service => v.is_string(),
            Field::Transient | Field::FromCi => v.is_bool(),
            Field::Confidence | Field::AffectedUsers | Field::ErrorRate | Field::SignalCount => {
                v.is_number()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} cannot be compared with {}",
                field.name(),
                super::tree::value_text(v)
            ))
        }
    };
    for v in check
        .equals
        .iter()
        .chain(check.one_of.iter().flatten())
        .chain(check.at_least.iter())
    {
        fits(v)?;
    }
    let ordered = matches!(
        field,
        Field::Severity
            | Field::Confidence
            | Field::AffectedUsers
            | Field::ErrorRate
            | Field::SignalCount
    );
    if (check.at_least.is_some() || check.at_most.is_some()) && !ordered {
        return Err(format!("{} has no order: use equals or in", field.name()));
    }
    if check.at_most.is_some() && field == Field::Severity {
        return Err("severity takes at_least (at least this severe), not at_most".into());
    }
    Ok(())
}

/// Checks one strategy; see the module documentation for the rules.
pub fn validate(s: &Strategy) -> Result<(), PolicyError> {
    let err = |node: Option<&str>, reason: String| PolicyError {
        file: s.file.clone(),
        strategy: Some(s.id.clone()),
        node: node.map(str::to_string),
        reason,
    };
    if !(0.0..=1.0).contains(&s.prior_success_rate) {
        return Err(err(
            None,
            format!(
                "prior_success_rate {} is not in [0, 1]",
                s.prior_success_rate
            ),
        ));
    }
    if !(s.prior_weight.is_finite() && s.prior_weight > 0.0) {
        return Err(err(
            None,
            format!("prior_weight {} must be positive", s.prior_weight),
        ));
    }
    if !s.nodes.contains_key(&s.root) {
        return Err(err(None, format!("root '{}' is not a node", s.root)));
    }
    let mut branch_nodes = BTreeSet::new();
    for (id, node) in &s.nodes {
        let id = id.as_str();
        for (_, target) in node.edges() {
            if !s.nodes.contains_key(target) {
                return Err(err(Some(id), format!("refers to unknown node '{target}'")));
            }
        }
        match node {
            Node::Action { action, params, .. } => {
                let (_, schema) =
                    ACTIONS
                        .iter()
                        .find(|(name, _)| name == action)
                        .ok_or_else(|| {
                            err(
                                Some(id),
                                format!(
                                    "unknown action '{action}' (known: {})",
                                    ACTIONS
                                        .iter()
                                        .map(|(n, _)| *n)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?;
                for (name, value) in params {
                    let (_, want) = schema.iter().find(|(p, _)| p == name).ok_or_else(|| {
                        err(Some(id), format!("{action} has no parameter '{name}'"))
                    })?;
                    let got = type_of(value);
                    let fits = got == Some(*want)
                        || (*want == ParamType::Float && got == Some(ParamType::Int));
                    if !fits {
                        return Err(err(
                            Some(id),
                            format!(
                                "parameter '{name}' of {action} must be {want:?}, not {value:?}"
                            ),
                        ));
                    }
                }
            }
            Node::Gate {
                timeout_secs,
                on_timeout,
                ..
            } => {
                if timeout_secs.unwrap_or(0) == 0 {
                    return Err(err(Some(id), "a gate needs a timeout_secs above 0".into()));
                }
                if on_timeout.is_none() {
                    return Err(err(
                        Some(id),
                        "a gate needs on_timeout: what happens when nobody answers".into(),
                    ));
                }
            }
            Node::Wait {
                delay_secs,
                until,
                deadline_secs,
                on_deadline,
                ..
            } => match (delay_secs, until) {
                (Some(_), None) => {}
                (None, Some(_)) if deadline_secs.unwrap_or(0) > 0 && on_deadline.is_some() => {}
                (None, Some(_)) => {
                    return Err(err(
                        Some(id),
                        "waiting until a condition needs deadline_secs and on_deadline".into(),
                    ))
                }
                _ => {
                    return Err(err(
                        Some(id),
                        "a wait needs either delay_secs or until".into(),
                    ))
                }
            },
            Node::Parallel { branches, .. } => {
                if branches.len() < 2 {
                    return Err(err(
                        Some(id),
                        "a parallel node needs at least two branches".into(),
                    ));
                }
                for b in branches {
                    match s.nodes.get(b) {
                        Some(Node::Action {
                            next: None,
                            on_failure: None,
                            ..
                        }) => {
                            branch_nodes.insert(b.as_str());
                        }
                        _ => {
                            return Err(err(
                                Some(id),
                                format!(
                                    "branch '{b}' must be an action without next or on_failure"
                                ),
                            ))
                        }
                    }
                }
            }
            Node::Condition { check, .. } => {
                let kinds = [
                    check.field.is_some(),
                    check.health_check.is_some(),
                    check.metric.is_some(),
                ];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    return Err(err(
                        Some(id),
                        "a check reads exactly one of field, health_check, metric".into(),
                    ));
                }
                if check.field.is_some()
                    && check.equals.is_none()
                    && check.one_of.is_none()
                    && check.at_least.is_none()
                    && check.at_most.is_none()
                {
                    return Err(err(
                        Some(id),
                        "a field check needs equals, in, at_least or at_most".into(),
                    ));
                }
                if check.metric.is_some() && check.below.is_none() && check.above.is_none() {
                    return Err(err(Some(id), "a metric check needs below or above".into()));
                }
                if let Some(field) = check.field {
                    check_field_values(field, check).map_err(|reason| err(Some(id), reason))?;
                }
            }
            Node::Terminal { .. } => {}
        }
    }
    // A branch runs only inside its parallel node: nothing else may lead to it.
    for (id, node) in &s.nodes {
        for (edge, target) in node.edges() {
            if edge != "branch" && branch_nodes.contains(target) {
                return Err(err(
                    Some(id),
                    format!(
                        "'{target}' is a parallel branch; only its parallel node may lead to it"
                    ),
                ));
            }
        }
        if let Node::Parallel { branches, .. } = node {
            let distinct: BTreeSet<&String> = branches.iter().collect();
            if distinct.len() != branches.len() {
                return Err(err(Some(id), "a branch is listed twice".into()));
            }
        }
    }
    if branch_nodes.contains(s.root.as_str()) {
        return Err(err(None, format!("root '{}' is a parallel branch", s.root)));
    }
    // An action without `next` ends a path without a terminal, unless it is a parallel branch.
    for (id, node) in &s.nodes {
        if let Node::Action { next: None, .. } = node {
            if !branch_nodes.contains(id.as_str()) {
                return Err(err(
                    Some(id),
                    "the path ends here without a terminal (add next)".into(),
                ));
            }
        }
    }
    // Cycles and reachability, by depth-first search from the root.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on the stack, 2 = done
    fn visit<'a>(
        s: &'a Strategy,
        id: &'a str,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        match state.get(id) {
            Some(2) => return Ok(()),
            Some(_) => {
                path.push(id);
                let start = path.iter().position(|n| *n == id).unwrap_or(0);
                return Err(path[start..].join(" -> "));
            }
            None => {}
        }
        state.insert(id, 1);
        path.push(id);
        if let Some(node) = s.nodes.get(id) {
            for (_, next) in node.edges() {
                visit(s, next, state, path)?;
            }
        }
        path.pop();
        state.insert(id, 2);
        Ok(())
    }
    visit(s, &s.root, &mut state, &mut Vec::new())
        .map_err(|cycle| err(None, format!("cycle: {cycle}")))?;
    if let Some(unreachable) = s.nodes.keys().find(|id| !state.contains_key(id.as_str())) {
        return Err(err(
            Some(unreachable),
            format!("unreachable from root '{}'", s.root),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(nodes: &str) -> String {
        format!(
            "version: 1\nstrategies:\n  - id: s\n    name: S\n    estimated_duration_minutes: 5\n    prior_success_rate: 0.5\n    root: a\n    nodes:\n{nodes}"
        )
    }

    fn refused(nodes: &str) -> PolicyError {
        Policy::load(&[("user.yaml".into(), strategy(nodes))]).expect_err("refused")
    }

    const END: &str = "      end: {type: terminal, outcome: resolved, message: done}\n";

    #[test]
    fn the_built_in_policy_is_valid_and_has_the_six_strategies() {
        let p = Policy::default_policy();
        let ids: Vec<&str> = p.strategies().iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "infrastructure_recovery",
                "application_recovery",
                "database_recovery",
                "configuration_fix",
                "security_response",
                "network_recovery"
            ]
        );
        let priors: Vec<f64> = p
            .strategies()
            .iter()
            .map(|s| s.prior_success_rate)
            .collect();
        assert_eq!(priors, [0.85, 0.75, 0.80, 0.90, 0.70, 0.80]);
        let kinds: BTreeSet<&str> = p
            .strategies()
            .iter()
            .flat_map(|s| s.nodes.values().map(Node::kind))
            .collect();
        assert_eq!(
            kinds.len(),
            6,
            "the built-ins use every node type: {kinds:?}"
        );
    }

    #[test]
    fn a_user_file_replaces_a_strategy_by_id_and_changes_the_version() {
        let base = Policy::default_policy();
        let text = strategy(&format!(
            "      a: {{type: action, action: notify, next: end}}\n{END}"
        ))
        .replace("id: s", "id: network_recovery");
        let p = Policy::load(&[("user.yaml".into(), text)]).expect("valid");
        assert_eq!(p.strategies().len(), 6);
        let s = p.strategy("network_recovery").expect("replaced");
        assert_eq!((s.name.as_str(), s.file.as_str()), ("S", "user.yaml"));
        assert_ne!(p.version(), base.version());
    }

    #[test]
    fn every_error_names_file_strategy_and_node() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            ("      a: {type: action, action: notify, next: nowhere}\n", "unknown node 'nowhere'", Some("a"), "unknown reference"),
            (
                "      a: {type: action, action: notify, next: b}\n      b: {type: action, action: notify, next: a}\n",
                "cycle: a -> b -> a",
                None,
                "cycle",
            ),
            (
                &format!("      a: {{type: action, action: notify, next: end}}\n      orphan: {{type: terminal, outcome: failed, message: x}}\n{END}"),
                "unreachable from root 'a'",
                Some("orphan"),
                "unreachable",
            ),
            ("      a: {type: action, action: notify}\n", "without a terminal", Some("a"), "dead end"),
            (&format!("      a: {{type: gate, on_timeout: end, next: end}}\n{END}"), "timeout_secs above 0", Some("a"), "gate without timeout"),
            (&format!("      a: {{type: gate, timeout_secs: 60, next: end}}\n{END}"), "needs on_timeout", Some("a"), "gate without timeout branch"),
            (&format!("      a: {{type: action, action: reboot_datacenter, next: end}}\n{END}"), "unknown action 'reboot_datacenter'", Some("a"), "unknown action"),
            (
                &format!("      a: {{type: action, action: scale_resources, params: {{max_replicas: many}}, next: end}}\n{END}"),
                "parameter 'max_replicas' of scale_resources must be Int",
                Some("a"),
                "wrong parameter type",
            ),
            (&format!("      a: {{type: action, action: notify, params: {{colour: red}}, next: end}}\n{END}"), "notify has no parameter 'colour'", Some("a"), "unknown parameter"),
            (
                &format!("      a: {{type: condition, check: {{field: severity, at_least: apocalyptic}}, on_true: end, on_false: end}}\n{END}"),
                "severity cannot be compared with apocalyptic",
                Some("a"),
                "bad field value",
            ),
            (
                &format!("      a: {{type: condition, check: {{field: severity, health_check: readiness, at_least: high}}, on_true: end, on_false: end}}\n{END}"),
                "exactly one of",
                Some("a"),
                "two checks",
            ),
            (
                &format!("      a: {{type: wait, until: {{metric: lag, below: 5}}, next: end}}\n{END}"),
                "deadline_secs and on_deadline",
                Some("a"),
                "wait without deadline",
            ),
            (
                &format!("      a: {{type: parallel, branches: [x, y], next: end}}\n      x: {{type: action, action: notify, next: end}}\n      y: {{type: action, action: notify}}\n{END}"),
                "branch 'x' must be an action without next",
                Some("a"),
                "parallel branch that goes on",
            ),
        ];
        let branch_as_next = "      a: {type: parallel, branches: [x, y], join: any, next: x}\n      x: {type: action, action: clear_cache}\n      y: {type: action, action: notify}\n";
        let cases: Vec<(&str, &str, Option<&str>, &str)> = cases
            .iter()
            .copied()
            .chain([(
                branch_as_next,
                "'x' is a parallel branch; only its parallel node may lead to it",
                Some("a"),
                "parallel that goes on into its own branch (found by the property test)",
            )])
            .collect();
        for (nodes, reason, node, what) in &cases {
            let e = refused(nodes);
            assert_eq!(e.file, "user.yaml", "{what}");
            assert_eq!(e.strategy.as_deref(), Some("s"), "{what}");
            assert_eq!(e.node.as_deref(), *node, "{what}: {e}");
            assert!(e.reason.contains(reason), "{what}: {e}");
            assert!(e.to_string().starts_with("user.yaml: strategy s: "), "{e}");
        }
    }

    #[test]
    fn file_level_errors_name_the_file() {
        let e = Policy::load(&[("bad.yaml".into(), "version: 2\nstrategies: []\n".into())])
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "bad.yaml: unsupported policy version 2 (this medic reads version 1)"
        );
        let e = Policy::load(&[("typo.yaml".into(), strategy(END).replace("root:", "roots:"))])
            .expect_err("refused");
        assert!(e.to_string().starts_with("typo.yaml: "), "{e}");
        assert!(e.reason.contains("roots"), "{e}");
        let twice = format!("{}{}", strategy(&format!("      a: {{type: action, action: notify, next: end}}\n{END}")), "  - id: s\n    name: again\n    estimated_duration_minutes: 1\n    prior_success_rate: 0.5\n    root: end\n    nodes:\n      end: {type: terminal, outcome: failed, message: x}\n");
        let e = Policy::load(&[("dup.yaml".into(), twice)]).expect_err("refused");
        assert_eq!(e.to_string(), "dup.yaml: strategy s: duplicate strategy id");
    }
}
