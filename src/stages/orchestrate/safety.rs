//! The safety rules checked before every automated step: the circuit breaker
//! across deployments, the per-deployment cooldown, downtime windows and the
//! per-environment variants of a step.

use super::*;

/// Actions that change nothing: they do not count for the circuit breaker.
pub(super) const PASSIVE_ACTIONS: &[&str] = &["notify", "run_health_check", "wait", "escalate"];

pub(super) fn automated(action: &str) -> bool {
    !PASSIVE_ACTIONS.contains(&action) && !CONTROL_ACTIONS.contains(&action)
}

/// Whether `action` is expected to interrupt service while it runs:
/// failover, isolating a component, and read-only mode unless the
/// environment accepts it.
pub(super) fn interrupts(action: &str, readonly_acceptable: bool) -> bool {
    match action {
        "failover" | "isolate_component" => true,
        "enable_readonly_mode" => !readonly_acceptable,
        _ => false,
    }
}

/// Why `step` would interrupt `environment` longer than its constraints
/// allow, if it would. Failover and isolating a component interrupt for up
/// to their timeout; so does read-only mode where it is not acceptable.
pub(super) fn downtime(
    c: &super::config::EnvironmentConstraints,
    step: &StepState,
    environment: &str,
) -> Option<String> {
    let interrupts = interrupts(&step.action, c.readonly_mode_acceptable);
    let minutes = (step.timeout_ms.max(0) as u64).div_ceil(60_000);
    (interrupts && minutes > c.max_downtime_minutes).then(|| {
        format!(
            "{} may interrupt {environment} for up to {minutes} min; {environment} allows {} min",
            step.action, c.max_downtime_minutes
        )
    })
}

/// The variant of `step` the constraints call for: restarts and rollbacks
/// roll (no interruption), and executors learn the availability to keep.
pub(super) fn variant(c: &super::config::EnvironmentConstraints, step: &mut StepState) {
    if matches!(
        step.action.as_str(),
        "restart_service" | "rollback_deployment" | "scale_resources"
    ) {
        if step.action != "scale_resources" {
            step.params.insert("rolling".into(), "true".into());
        }
        if let Some(p) = c.min_availability_percent {
            step.params
                .insert("min_availability_percent".into(), p.to_string());
        }
    }
}

impl Orchestrate {
    /// Why the circuit breaker holds automated actions at `now`, if it does.
    pub(super) fn breaker_open(&mut self, now: Millis) -> Option<String> {
        let max = self.config.circuit_breaker_max_actions as usize;
        if max == 0 {
            return None;
        }
        if self.breaker_stale {
            // The window, rebuilt from every automated step the restored states started.
            let mut starts: Vec<Millis> = self
                .recoveries
                .values()
                .flat_map(|r| r.steps.iter())
                .filter(|s| automated(&s.action))
                .filter_map(|s| s.started_at)
                .collect();
            starts.sort_unstable();
            self.breaker = starts.into();
            self.breaker_stale = false;
        }
        let window = self.config.circuit_breaker_window_minutes as i64 * 60_000;
        while self.breaker.front().is_some_and(|t| *t <= now - window) {
            self.breaker.pop_front();
        }
        (self.breaker.len() >= max).then(|| {
            format!(
                "circuit breaker open: {} automated actions in the last {} minutes (limit {max})",
                self.breaker.len(),
                self.config.circuit_breaker_window_minutes
            )
        })
    }

    /// Why the cooldown forbids `action` on `state`'s deployment at `now`, if it does.
    pub(super) fn cooldown(
        &self,
        state: &RecoveryState,
        action: &str,
        now: Millis,
    ) -> Option<String> {
        if !self.config.cooldown_actions.iter().any(|a| a == action) {
            return None;
        }
        let window = self.config.cooldown_minutes as i64 * 60_000;
        let (last_action, at) = state
            .last_disruptive
            .iter()
            .filter(|(a, _)| self.config.cooldown_actions.contains(a))
            .max_by_key(|(_, at)| **at)?;
        (now - at < window).then(|| {
            format!(
                "cooldown: {last_action} ran on {} {} min ago; no {action} before {} min have passed",
                state.deployment_key,
                (now - at) / 60_000,
                self.config.cooldown_minutes
            )
        })
    }
}
