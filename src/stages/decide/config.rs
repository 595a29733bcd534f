//! The `decide` section: strategy choice.

use crate::domain::Severity;
use serde::Deserialize;
use std::path::PathBuf;

/// Strategy choice.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecideConfig {
    /// Environments where a human approves every recovery first.
    pub approval_environments: Vec<String>,
    /// Elsewhere, failures at or above this severity still need approval.
    pub approval_min_severity: Severity,
    /// Failures below this severity get a plan with no actions (notify only).
    pub act_min_severity: Severity,
    /// Policy files (YAML strategies) applied over the built-in policy, in
    /// order: a strategy with an existing id replaces it.
    pub policy_files: Vec<PathBuf>,
    /// How long a gate medic adds before a risky action waits for an answer.
    pub approval_timeout_secs: u64,
}

impl Default for DecideConfig {
    fn default() -> Self {
        DecideConfig {
            approval_environments: vec!["production".into()],
            approval_min_severity: Severity::Critical,
            act_min_severity: Severity::Low,
            policy_files: Vec::new(),
            approval_timeout_secs: 3600,
        }
    }
}
