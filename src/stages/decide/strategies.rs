//! The six built-in recovery strategies, as ordered steps by phase.

use crate::domain::{FailureType, Phase, PlanStep};
use std::collections::BTreeMap;

/// A strategy: id, the types it serves, and its steps.
#[derive(Debug, Clone, Copy)]
pub struct Strategy {
    /// Strategy id, carried in plans and outcomes.
    pub id: &'static str,
    /// `(phase, action, timeout seconds)` in execution order.
    pub steps: &'static [(Phase, &'static str, i64)],
}

use Phase::*;

/// Pods, nodes, runners and resource limits.
pub const INFRASTRUCTURE: Strategy = Strategy {
    id: "infrastructure_recovery",
    steps: &[
        (Preparation, "snapshot_state", 60),
        (ImmediateResponse, "restart_service", 300),
        (Stabilization, "reschedule_workload", 300),
        (Validation, "verify_health", 300),
        (Cleanup, "remove_temporary_resources", 120),
        (PostRecovery, "write_report", 60),
    ],
};

/// Our own code: roll back to the last good version.
pub const APPLICATION: Strategy = Strategy {
    id: "application_recovery",
    steps: &[
        (Preparation, "capture_diagnostics", 60),
        (ImmediateResponse, "rollback_deployment", 600),
        (Validation, "verify_health", 300),
        (PostRecovery, "write_report", 60),
    ],
};

/// Migrations and data state.
pub const DATABASE: Strategy = Strategy {
    id: "database_recovery",
    steps: &[
        (Preparation, "backup_database", 900),
        (ImmediateResponse, "rollback_migration", 900),
        (Validation, "verify_data_integrity", 600),
        (PostRecovery, "write_report", 60),
    ],
};

/// Settings, manifests and operator changes: revert the change.
pub const CONFIGURATION: Strategy = Strategy {
    id: "configuration_fix",
    steps: &[
        (Preparation, "diff_configuration", 60),
        (ImmediateResponse, "revert_configuration", 300),
        (Validation, "verify_health", 300),
        (PostRecovery, "write_report", 60),
    ],
};

/// Credentials, certificates, permissions.
pub const SECURITY: Strategy = Strategy {
    id: "security_response",
    steps: &[
        (Preparation, "notify_security_team", 60),
        (ImmediateResponse, "isolate_service", 300),
        (Stabilization, "rotate_credentials", 900),
        (Validation, "verify_access", 300),
        (PostRecovery, "write_incident_report", 60),
    ],
};

/// Connectivity and external dependencies: retry, then fail over.
pub const NETWORK: Strategy = Strategy {
    id: "network_recovery",
    steps: &[
        (ImmediateResponse, "retry_with_backoff", 300),
        (Stabilization, "failover_traffic", 600),
        (Validation, "verify_connectivity", 300),
        (PostRecovery, "write_report", 60),
    ],
};

/// Below the action threshold: tell the owners, touch nothing.
pub const NOTIFY_ONLY: Strategy = Strategy {
    id: "notify_only",
    steps: &[(PostRecovery, "notify_owners", 60)],
};

/// Every strategy a plan can name.
pub const ALL: [Strategy; 7] = [
    INFRASTRUCTURE,
    APPLICATION,
    DATABASE,
    CONFIGURATION,
    SECURITY,
    NETWORK,
    NOTIFY_ONLY,
];

/// The strategy serving a failure type.
pub fn for_type(t: FailureType) -> Strategy {
    match t {
        FailureType::Infrastructure | FailureType::Resource => INFRASTRUCTURE,
        FailureType::Application | FailureType::Timing => APPLICATION,
        FailureType::Data => DATABASE,
        FailureType::Configuration | FailureType::HumanError => CONFIGURATION,
        FailureType::Security => SECURITY,
        FailureType::Network | FailureType::Dependency => NETWORK,
    }
}

/// The plan steps of `strategy` for `target`; `retry_first` puts a retry of
/// the failed deployment before everything else (for transient failures).
pub fn steps(strategy: Strategy, target: &str, retry_first: bool) -> Vec<PlanStep> {
    let mut list: Vec<(Phase, &str, i64)> = Vec::new();
    if retry_first && strategy.id != NETWORK.id && strategy.id != NOTIFY_ONLY.id {
        list.push((ImmediateResponse, "retry_deployment", 600));
    }
    list.extend(strategy.steps.iter().copied());
    list.sort_by_key(|(phase, _, _)| *phase as u8);
    list.into_iter()
        .enumerate()
        .map(|(i, (phase, action, secs))| PlanStep {
            index: i as i32,
            phase,
            action: action.to_string(),
            target: target.to_string(),
            params: BTreeMap::new(),
            timeout_ms: secs * 1000,
        })
        .collect()
}
