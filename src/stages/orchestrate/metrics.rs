//! What a recovery measures about itself when it ends ([`RecoveryMetrics`]):
//! how long it took, how long it could have and did interrupt service, what
//! it brought back, which fallbacks it took, how often people had to act,
//! and the error rate it measured last.

use super::*;

/// The metrics of the recovery in `state`, ending `outcome` at `now`;
/// `ran` says which steps ran (not control steps, not refused ones).
pub(super) fn metrics_of(
    state: &RecoveryState,
    outcome: Outcome,
    now: Millis,
    readonly_acceptable: bool,
    error_rate_metric: &str,
    ran: &dyn Fn(&StepState) -> bool,
) -> RecoveryMetrics {
    let taken: Vec<&StepState> = state.steps.iter().filter(|s| ran(s)).collect();
    let interrupting = taken
        .iter()
        .filter(|s| interrupts(&s.action, readonly_acceptable));
    let estimated_downtime_ms = interrupting.clone().map(|s| s.timeout_ms.max(0)).sum();
    let observed_downtime_ms = interrupting
        .filter(|s| !s.simulated)
        .filter_map(|s| Some((s.finished_at? - s.started_at?).max(0)))
        .sum();
    let mut components_recovered = Vec::new();
    if outcome == Outcome::Succeeded {
        components_recovered.push(state.service.clone());
        for s in taken.iter().filter(|s| s.status == StepStatus::Succeeded) {
            if let Some(c) = param(s, "component") {
                if !components_recovered.iter().any(|x| x == c) {
                    components_recovered.push(c.to_string());
                }
            }
        }
    }
    // A failed step (or one a constraint refused) whose fallback node ran.
    let reached = |node: &str| {
        state.steps.iter().any(|s| {
            node_of(s) == Some(node)
                && !matches!(s.status, StepStatus::Pending | StepStatus::Skipped)
        })
    };
    let mut failed: Vec<&StepState> = state
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    failed.sort_by_key(|s| s.finished_at);
    let fallbacks_used = failed
        .iter()
        .filter_map(|s| {
            // A gate nobody answered in time follows its on_timeout.
            let to = FALLBACK_EDGES
                .iter()
                .chain(&["on_timeout"])
                .find_map(|e| param(s, e))?;
            reached(to).then(|| format!("{} -> {to}", node_of(s).unwrap_or(&s.action)))
        })
        .collect();
    let decisions = state
        .steps
        .iter()
        .filter(|s| s.action == "gate")
        .filter(|s| {
            s.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("approved by") || d.starts_with("rejected by"))
        })
        .count();
    // A hold approved by a person has no gate to say so.
    let by_person = approved_by_person(state.approver.as_deref());
    let approvals = if decisions == 0 && by_person {
        1
    } else {
        decisions
    };
    let escalations = taken
        .iter()
        .filter(|s| s.action == "escalate" && s.status == StepStatus::Succeeded)
        .count();
    RecoveryMetrics {
        duration_ms: (now - state.started_at).max(0),
        estimated_downtime_ms,
        observed_downtime_ms,
        components_recovered,
        fallbacks_used,
        manual_interventions: (approvals + escalations) as i32,
        affected_users_at_start: state.affected_users,
        error_rate_at_start: state.error_rate,
        error_rate_at_end: state
            .steps
            .iter()
            .filter(|s| !s.simulated && s.observed_metric.as_deref() == Some(error_rate_metric))
            .filter_map(|s| Some((s.finished_at?, s.observed_value?)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, value)| value),
    }
}
