//! Cleanup: the temporary measures a recovery put in place (traffic shifts,
//! feature flags, scaled-up replicas) and what undoes each when it ends.

use super::*;

/// Temporary measures and the actions that undo them.
pub const TEMPORARY_MEASURES: &[(&str, &str)] = &[
    ("enable_circuit_breaker", "disable_circuit_breaker"),
    ("enable_readonly_mode", "disable_readonly_mode"),
];

/// Where the cleanup of a resolving recovery stands.
pub(super) enum Cleanup {
    /// Nothing (more) to undo.
    Done,
    /// Undo steps to add and start.
    Start(Vec<(String, BTreeMap<String, String>)>),
    /// Undo steps are running.
    Running,
    /// An undo step failed.
    Failed(String),
}

pub(super) fn cleanup_of(state: &RecoveryState) -> Cleanup {
    let undo: Vec<&StepState> = state
        .steps
        .iter()
        .filter(|s| param(s, "cleanup_of").is_some())
        .collect();
    if let Some(failed) = undo.iter().find(|s| s.status == StepStatus::Failed) {
        return Cleanup::Failed(format!(
            "cleanup: {} failed: {}",
            failed.action,
            failed.detail.as_deref().unwrap_or("no detail")
        ));
    }
    if undo.iter().any(|s| s.status != StepStatus::Succeeded) {
        return Cleanup::Running;
    }
    let start: Vec<(String, BTreeMap<String, String>)> = state
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Succeeded)
        .filter_map(|s| {
            let (_, undo_action) = TEMPORARY_MEASURES.iter().find(|(m, _)| *m == s.action)?;
            let node = node_of(s)?;
            if undo.iter().any(|u| param(u, "cleanup_of") == Some(node)) {
                return None;
            }
            let mut params: BTreeMap<String, String> = s
                .params
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "dependency" | "component"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            params.insert("node".into(), format!("{node}.cleanup"));
            params.insert("cleanup_of".into(), node.to_string());
            Some((undo_action.to_string(), params))
        })
        .collect();
    if start.is_empty() {
        Cleanup::Done
    } else {
        Cleanup::Start(start)
    }
}
