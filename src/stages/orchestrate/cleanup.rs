//! Cleanup: the temporary measures a recovery put in place (traffic shifts,
//! feature flags, scaled-up replicas) and what undoes each when it ends.

use super::*;

/// Temporary measures and the actions that undo them.
pub const TEMPORARY_MEASURES: &[(&str, &str)] = &[
    ("enable_circuit_breaker", "disable_circuit_breaker"),
    ("enable_readonly_mode", "disable_readonly_mode"),
];

/// Measures a person must know are still in place when a recovery ends
/// without undoing them: the temporary ones (when not undone) and those
/// medic has no undo for.
const HANDED_OVER: &[&str] = &[
    "enable_circuit_breaker",
    "enable_readonly_mode",
    "shift_traffic",
    "isolate_component",
    "failover",
];

/// The measures the recovery took and did not undo, in words
/// (`enable_readonly_mode (component: primary)`), in the order they ran.
pub(super) fn left_in_place(state: &RecoveryState) -> Vec<String> {
    let undone = |node: &str| {
        state
            .steps
            .iter()
            .any(|u| param(u, "cleanup_of") == Some(node) && u.status == StepStatus::Succeeded)
    };
    let mut taken: Vec<&StepState> = state
        .steps
        .iter()
        // A simulated step changed nothing: there is nothing to hand over.
        .filter(|s| {
            s.status == StepStatus::Succeeded
                && !s.simulated
                && HANDED_OVER.contains(&s.action.as_str())
        })
        .filter(|s| node_of(s).is_none_or(|n| !undone(n)))
        .collect();
    taken.sort_by_key(|s| s.finished_at);
    taken
        .iter()
        .map(|s| {
            let what: Vec<String> = s
                .params
                .iter()
                .filter(|(k, _)| {
                    matches!(k.as_str(), "dependency" | "component" | "to" | "percent")
                })
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            if what.is_empty() {
                s.action.clone()
            } else {
                format!("{} ({})", s.action, what.join(", "))
            }
        })
        .collect()
}

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
