//! The `orchestrate` section: dry run, cooldown, the circuit breaker, cleanup
//! and what a recovery may do to each environment.
//!
//! The section in the file also holds `executors` (which executor carries out
//! which action). That type belongs to the executors, which sit above the
//! stages, so this one is generic over it: `Config` holds
//! `OrchestrateConfig<ExecutorsConfig>`, and the stage keeps
//! `OrchestrateConfig` (`OrchestrateConfig<()>`, see
//! [`OrchestrateConfig::without_executors`]).

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Recovery execution.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestrateConfig<X = ()> {
    /// What is only recorded instead of done: `true` (every step, the
    /// default), `false` (nothing: every reachable action must be routed to
    /// a real executor), or a list of actions simulated on purpose
    /// (`[shift_traffic]`) while the rest runs.
    pub dry_run: DryRun,
    /// No second disruptive action (see `cooldown_actions`) on the same
    /// deployment within this many minutes.
    pub cooldown_minutes: u64,
    /// The actions the cooldown applies to.
    pub cooldown_actions: Vec<String>,
    /// Global circuit breaker: after this many automated actions within
    /// `circuit_breaker_window_minutes` (per orchestrate instance), every
    /// further action waits for a human's approval. 0 turns it off.
    pub circuit_breaker_max_actions: u32,
    /// The circuit breaker's window.
    pub circuit_breaker_window_minutes: u64,
    /// Which executor carries out which action, and their settings: the
    /// executors' own section (`ExecutorsConfig`) where `Config` holds it,
    /// nothing (`()`) in the copy the stage keeps.
    pub executors: X,
    /// What a recovery may do to each environment (the original design's
    /// `recovery_constraints`); environments not listed have none.
    pub constraints: BTreeMap<String, EnvironmentConstraints>,
    /// When a recovery resolves, remove the temporary measures it took (an
    /// opened circuit breaker, read-only mode) in the cleanup phase.
    pub cleanup_temporary_measures: bool,
    /// How long a recovery held for a human (an environment's
    /// `requires_approval`, the open circuit breaker) waits for a decision.
    pub hold_timeout_secs: u64,
    /// What an unanswered hold, or a gate without its own `on_timeout`,
    /// does when its time is up.
    pub on_hold_timeout: HoldPolicy,
    /// The metric whose last check in a recovery is its error rate at the
    /// end (`RecoveryMetrics.error_rate_at_end`).
    pub error_rate_metric: String,
}

/// What a hold or gate nobody answered does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldPolicy {
    /// Run the tree's escalate branch (the default): a person is paged.
    #[default]
    Escalate,
    /// Go on as if approved; the approver is recorded as the timeout.
    Proceed,
    /// End the recovery failed, running nothing more.
    Abort,
}

impl HoldPolicy {
    /// The policy's name, as configured.
    pub fn name(self) -> &'static str {
        match self {
            HoldPolicy::Escalate => "escalate",
            HoldPolicy::Proceed => "proceed",
            HoldPolicy::Abort => "abort",
        }
    }
}

/// What a recovery may do to one environment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConstraints {
    /// Longest interruption a single action may cause. Restarts and rollbacks
    /// run as rolling variants (no interruption); failover, isolating a
    /// component and (unless acceptable) read-only mode are expected to
    /// interrupt for up to their timeout, and a recovery that would exceed
    /// this escalates instead.
    pub max_downtime_minutes: u64,
    /// Passed to executors with every restart, rollback and scale, for
    /// rollout settings (`min_availability_percent` parameter).
    pub min_availability_percent: Option<f64>,
    /// Whether read-only mode counts as acceptable (not as downtime).
    pub readonly_mode_acceptable: bool,
    /// A human approves before the first automated action, whatever the plan says.
    pub requires_approval: bool,
    /// A failed notification fails the recovery; elsewhere notifications are
    /// best effort and the recovery goes on.
    pub notification_required: bool,
}

impl Default for EnvironmentConstraints {
    fn default() -> Self {
        EnvironmentConstraints {
            max_downtime_minutes: 30,
            min_availability_percent: None,
            readonly_mode_acceptable: true,
            requires_approval: false,
            notification_required: false,
        }
    }
}

fn default_constraints() -> BTreeMap<String, EnvironmentConstraints> {
    let env = |downtime, approval, notification| EnvironmentConstraints {
        max_downtime_minutes: downtime,
        requires_approval: approval,
        notification_required: notification,
        ..EnvironmentConstraints::default()
    };
    BTreeMap::from([
        ("production".to_string(), env(5, true, true)),
        ("staging".to_string(), env(15, false, true)),
        ("development".to_string(), env(30, false, false)),
    ])
}

impl<X: Default> Default for OrchestrateConfig<X> {
    fn default() -> Self {
        OrchestrateConfig {
            dry_run: DryRun::All,
            cooldown_minutes: 15,
            cooldown_actions: vec!["restart_service".into(), "rollback_deployment".into()],
            circuit_breaker_max_actions: 30,
            circuit_breaker_window_minutes: 10,
            executors: X::default(),
            constraints: default_constraints(),
            cleanup_temporary_measures: true,
            hold_timeout_secs: 3600,
            on_hold_timeout: HoldPolicy::Escalate,
            error_rate_metric: "upstream_error_rate".into(),
        }
    }
}

impl<X> OrchestrateConfig<X> {
    /// The section without its executors' settings: what the orchestrate
    /// stage (and shadow) keep, since executing is not theirs to do.
    pub fn without_executors(self) -> OrchestrateConfig {
        OrchestrateConfig {
            dry_run: self.dry_run,
            cooldown_minutes: self.cooldown_minutes,
            cooldown_actions: self.cooldown_actions,
            circuit_breaker_max_actions: self.circuit_breaker_max_actions,
            circuit_breaker_window_minutes: self.circuit_breaker_window_minutes,
            executors: (),
            constraints: self.constraints,
            cleanup_temporary_measures: self.cleanup_temporary_measures,
            hold_timeout_secs: self.hold_timeout_secs,
            on_hold_timeout: self.on_hold_timeout,
            error_rate_metric: self.error_rate_metric,
        }
    }
}

/// What a recovery only records instead of doing (`orchestrate.dry_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    /// Every step (`dry_run: true`).
    All,
    /// These actions (`dry_run: [shift_traffic]`); none for `dry_run: false`.
    Actions(BTreeSet<String>),
}

impl DryRun {
    /// Nothing is simulated (`dry_run: false`).
    pub fn off() -> DryRun {
        DryRun::Actions(BTreeSet::new())
    }

    /// Whether every step is simulated.
    pub fn is_all(&self) -> bool {
        matches!(self, DryRun::All)
    }

    /// Whether steps of `action` are simulated.
    pub fn covers(&self, action: &str) -> bool {
        match self {
            DryRun::All => true,
            DryRun::Actions(actions) => actions.contains(action),
        }
    }

    /// The setting as written in the file: `true`, `false` or `[a, b]`.
    pub fn describe(&self) -> String {
        match self {
            DryRun::All => "true".into(),
            DryRun::Actions(a) if a.is_empty() => "false".into(),
            DryRun::Actions(a) => format!("[{}]", a.iter().cloned().collect::<Vec<_>>().join(", ")),
        }
    }
}

impl From<bool> for DryRun {
    fn from(all: bool) -> DryRun {
        if all {
            DryRun::All
        } else {
            DryRun::off()
        }
    }
}

impl<'de> Deserialize<'de> for DryRun {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DryRun, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DryRun;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or a list of actions to simulate")
            }
            fn visit_bool<E: serde::de::Error>(self, all: bool) -> Result<DryRun, E> {
                Ok(all.into())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<DryRun, A::Error> {
                let mut actions = BTreeSet::new();
                while let Some(action) = seq.next_element::<String>()? {
                    actions.insert(action);
                }
                Ok(DryRun::Actions(actions))
            }
        }
        d.deserialize_any(Visitor)
    }
}
