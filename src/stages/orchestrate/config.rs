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
use std::collections::BTreeMap;

/// Recovery execution.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestrateConfig<X = ()> {
    /// Record what would be done instead of doing it. The only mode until real
    /// executors are configured.
    pub dry_run: bool,
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
            dry_run: true,
            cooldown_minutes: 15,
            cooldown_actions: vec!["restart_service".into(), "rollback_deployment".into()],
            circuit_breaker_max_actions: 30,
            circuit_breaker_window_minutes: 10,
            executors: X::default(),
            constraints: default_constraints(),
            cleanup_temporary_measures: true,
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
        }
    }
}
