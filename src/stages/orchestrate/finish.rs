//! How a recovery ends (outcome, cleanup of temporary measures, the
//! breaker's count) and the timers that move waiting recoveries on.

use super::*;

impl Orchestrate {
    /// Ends the recovery of `key` with `outcome`.
    pub(super) fn finish(
        &mut self,
        key: &str,
        outcome: Outcome,
        detail: String,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        let ran = |s: &&StepState| {
            !CONTROL_ACTIONS.contains(&s.action.as_str())
                && matches!(s.status, StepStatus::Succeeded | StepStatus::Failed)
        };
        let succeeded = state
            .steps
            .iter()
            .filter(ran)
            .filter(|s| s.status == StepStatus::Succeeded)
            .count();
        let total = state.steps.iter().filter(ran).count();
        for step in state.steps.iter_mut() {
            if step.status == StepStatus::Pending {
                step.status = StepStatus::Skipped;
            }
            // The end node reached is done too.
            if step.action == "end" && node_of(step) == state.cursor.as_deref() {
                step.status = StepStatus::Succeeded;
                step.finished_at = Some(now);
            }
        }
        state.status = match outcome {
            Outcome::Succeeded => RecoveryStatus::Succeeded,
            Outcome::Rejected => RecoveryStatus::Rejected,
            Outcome::Failed | Outcome::Skipped => RecoveryStatus::Failed,
        };
        if let Some(open) = state.phases.last_mut() {
            open.finished_at.get_or_insert(now);
        }
        state.waiting_until = None;
        state.updated_at = now;
        let simulated: Vec<String> = state
            .steps
            .iter()
            .filter(ran)
            .filter(|s| s.simulated)
            .map(|s| s.action.clone())
            .collect();
        let detail = if outcome == Outcome::Succeeded && state.dry_run {
            format!("{detail} ({succeeded} of {total} steps recorded, dry run)")
        } else if outcome == Outcome::Succeeded && !simulated.is_empty() {
            format!(
                "{detail} ({succeeded} of {total} steps succeeded, {} of them simulated)",
                simulated.len()
            )
        } else if outcome == Outcome::Succeeded {
            format!("{detail} ({succeeded} of {total} steps succeeded)")
        } else {
            detail
        };
        let outcome = RecoveryOutcome {
            recovery_id: state.recovery_id.clone(),
            failure_id: state.failure_id.clone(),
            deployment_key: state.deployment_key.clone(),
            service: state.service.clone(),
            environment: state.environment.clone(),
            failure_type: state.failure_type,
            severity: state.severity,
            strategy: state.strategy.clone(),
            outcome,
            dry_run: state.dry_run,
            started_at: state.started_at,
            finished_at: now,
            steps_total: total as i32,
            steps_succeeded: succeeded as i32,
            detail: detail.clone(),
            ci: state.ci.clone(),
            approver: state.approver.clone(),
            actions: state
                .steps
                .iter()
                .filter(ran)
                .map(|s| s.action.clone())
                .collect(),
            simulated_steps: simulated,
        };
        let recovery_id = state.recovery_id.clone();
        Ok(vec![
            self.emit_state(key)?,
            self.audit(
                &recovery_id,
                key,
                ACTOR,
                None,
                AuditEvent::RecoveryFinished,
                format!("{}: {detail}", outcome.outcome),
                now,
            )?,
            self.emit_outcome(&outcome)?,
        ])
    }

    /// Gates and waits whose time has come.
    pub(super) fn due(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let due: Vec<String> = self
            .recoveries
            .iter()
            .filter(|(_, s)| s.status.is_active() && s.waiting_until.is_some_and(|u| u <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut actions = Vec::new();
        for key in due {
            let Some(state) = self.recoveries.get_mut(&key) else {
                continue;
            };
            let at = state.cursor.clone().and_then(|c| {
                state
                    .steps
                    .iter()
                    .position(|s| node_of(s) == Some(c.as_str()))
            });
            match (state.status, at) {
                (RecoveryStatus::AwaitingApproval, Some(i)) if state.steps[i].action == "gate" => {
                    // Nobody answered: follow the gate's timeout policy.
                    let step = &mut state.steps[i];
                    let secs = param(step, "timeout_secs").unwrap_or("?").to_string();
                    step.status = StepStatus::Failed;
                    step.finished_at = Some(now);
                    step.detail = Some(format!("no decision within {secs} s"));
                    let on_timeout = param(step, "on_timeout").map(str::to_string);
                    let step = step.clone();
                    state.status = RecoveryStatus::Running;
                    state.waiting_until = None;
                    state.updated_at = now;
                    let recovery_id = state.recovery_id.clone();
                    let detail = format!(
                        "gate {}: no decision within {secs} s, {}",
                        node_of(&step).unwrap_or("?"),
                        on_timeout
                            .as_deref()
                            .map_or("the recovery ends escalated".to_string(), |t| format!(
                                "going to {t}"
                            ))
                    );
                    actions.push(self.step_audit(
                        &recovery_id,
                        &key,
                        &step,
                        AuditEvent::Skipped,
                        detail.clone(),
                        now,
                    )?);
                    match on_timeout {
                        Some(t) => {
                            if let Some(state) = self.recoveries.get_mut(&key) {
                                state.cursor = Some(t);
                            }
                            actions.extend(self.advance(&key, now)?);
                        }
                        None => actions.extend(self.finish(
                            &key,
                            Outcome::Failed,
                            format!("escalated: {detail}"),
                            now,
                        )?),
                    }
                }
                (RecoveryStatus::Running, Some(i)) if state.steps[i].action == "wait" => {
                    if state.steps[i].params.contains_key("delay_secs") {
                        actions.extend(self.advance(&key, now)?);
                    } else {
                        // Poll the check again.
                        state.waiting_until = None;
                        actions.extend(self.start_steps(&key, &[i], now)?);
                    }
                }
                _ => {}
            }
        }
        Ok(actions)
    }
}
