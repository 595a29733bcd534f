//! Steps: starting them on their executors, gates and approvals, and what a
//! step's result does to the recovery.

use super::*;

impl Orchestrate {
    /// Waits at the gate at position `i`: asks for an approval until its timeout.
    pub(super) fn wait_at_gate(
        &mut self,
        key: &str,
        i: usize,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        let step = &mut state.steps[i];
        let secs: i64 = param(step, "timeout_secs")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if step.status == StepStatus::Pending {
            step.status = StepStatus::Started;
            step.started_at = Some(now);
            step.attempts += 1;
        }
        let until = step.started_at.unwrap_or(now) + secs * 1000;
        let then = match param(step, "on_timeout") {
            Some(t) => format!("then {t}"),
            None => format!(
                "then on_hold_timeout: {}",
                self.config.on_hold_timeout.name()
            ),
        };
        let detail = format!(
            "gate {}: waiting up to {secs} s for a decision on the approvals topic ({then})",
            node_of(step).unwrap_or("?")
        );
        let step = step.clone();
        state.status = RecoveryStatus::AwaitingApproval;
        state.waiting_until = Some(until);
        state.updated_at = now;
        let recovery_id = state.recovery_id.clone();
        Ok(vec![
            self.step_audit(
                &recovery_id,
                key,
                &step,
                AuditEvent::ApprovalRequested,
                detail,
                now,
            )?,
            self.emit_state(key)?,
        ])
    }

    /// Starts executor steps (after the safety rules agree).
    pub(super) fn start_steps(
        &mut self,
        key: &str,
        list: &[usize],
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let mut actions = Vec::new();
        for &i in list {
            let Some(state) = self.recoveries.get(key) else {
                return Ok(actions);
            };
            let step = &state.steps[i];
            if step.status == StepStatus::Pending {
                let action = step.action.clone();
                if let Some(why) = self.cooldown(state, &action, now) {
                    actions.extend(self.block(key, why, now)?);
                    return Ok(actions);
                }
                let constraints = self.config.constraints.get(&state.environment);
                if let Some(why) = constraints.and_then(|c| downtime(c, step, &state.environment)) {
                    // Refused: the step's fallback, else the escalate branch, runs.
                    let Some(state) = self.recoveries.get_mut(key) else {
                        return Ok(actions);
                    };
                    let recovery_id = state.recovery_id.clone();
                    let step = &mut state.steps[i];
                    step.status = StepStatus::Failed;
                    step.finished_at = Some(now);
                    step.detail = Some(format!("{REFUSED}{why}"));
                    let step = step.clone();
                    state.updated_at = now;
                    actions.push(self.step_audit(
                        &recovery_id,
                        key,
                        &step,
                        AuditEvent::Skipped,
                        format!("{REFUSED}{why}"),
                        now,
                    )?);
                    actions.extend(self.advance(key, now)?);
                    return Ok(actions);
                }
                if automated(&action) && state.approver.is_none() {
                    if constraints.is_some_and(|c| c.requires_approval) {
                        let why = format!(
                            "{} requires a human's approval before automated actions",
                            state.environment
                        );
                        actions.extend(self.hold_for_approval(key, why, now)?);
                        return Ok(actions);
                    }
                    if let Some(why) = self.breaker_open(now) {
                        actions.extend(self.hold_for_approval(key, why, now)?);
                        return Ok(actions);
                    }
                }
            }
            let Some(state) = self.recoveries.get_mut(key) else {
                return Ok(actions);
            };
            let step = &mut state.steps[i];
            if step.status == StepStatus::Pending {
                if let Some(c) = self.config.constraints.get(&state.environment) {
                    variant(c, step);
                }
                if automated(&step.action) {
                    self.breaker.push_back(now);
                }
                if self.config.cooldown_actions.contains(&step.action) {
                    state.last_disruptive.insert(step.action.clone(), now);
                }
            }
            let step = &mut state.steps[i];
            // A wait on a check runs the check.
            let executor_action = if step.action == "wait" {
                "run_health_check".to_string()
            } else {
                step.action.clone()
            };
            let dry_run = self.config.dry_run.covers(&executor_action);
            step.simulated = dry_run;
            step.status = StepStatus::Started;
            step.attempts += 1;
            if step.action == "wait" {
                // A polled check keeps its first start: the deadline counts from it.
                step.started_at.get_or_insert(now);
            } else {
                step.started_at = Some(now);
            }
            let step = step.clone();
            state.waiting_until = None;
            state.updated_at = now;
            enter_phase(state, step.phase, now);
            let recovery_id = state.recovery_id.clone();
            let (service, environment, ci) = (
                state.service.clone(),
                state.environment.clone(),
                state.ci.clone().map(Box::new),
            );
            let context = Box::new(crate::stages::StepContext {
                failure_type: state.failure_type,
                severity: state.severity,
                strategy: state.strategy.clone(),
            });
            let idempotency_key = format!("{recovery_id}/{}", step.index);
            self.in_flight.insert(idempotency_key.clone());
            actions.push(self.emit_state(key)?);
            actions.push(self.step_audit(
                &recovery_id,
                key,
                &step,
                AuditEvent::StepStarted,
                format!("attempt {}", step.attempts),
                now,
            )?);
            actions.push(Action::Execute(EffectRequest::RecoveryStep {
                idempotency_key,
                recovery_id,
                deployment_key: key.to_string(),
                service,
                environment,
                step: PlanStep {
                    index: step.index,
                    phase: step.phase,
                    action: executor_action,
                    target: step.target.clone(),
                    params: shared_params(step.params.clone()),
                    timeout_ms: step.timeout_ms,
                },
                ci,
                context: Some(context),
                dry_run,
            }));
        }
        Ok(actions)
    }

    /// A safety rule forbids the next step: the recovery ends skipped, saying which.
    pub(super) fn block(
        &mut self,
        key: &str,
        why: String,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        let recovery_id = state.recovery_id.clone();
        let mut actions = vec![self.audit(
            &recovery_id,
            key,
            ACTOR,
            None,
            AuditEvent::Skipped,
            why.clone(),
            now,
        )?];
        actions.extend(self.finish(key, Outcome::Skipped, why, now)?);
        Ok(actions)
    }

    /// The circuit breaker is open: the recovery waits for a human.
    pub(super) fn hold_for_approval(
        &mut self,
        key: &str,
        why: String,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        let secs = self.config.hold_timeout_secs;
        state.status = RecoveryStatus::AwaitingApproval;
        state.waiting_until = Some(now.saturating_add((secs as i64).saturating_mul(1000)));
        state.updated_at = now;
        let recovery_id = state.recovery_id.clone();
        Ok(vec![
            self.audit(
                &recovery_id,
                key,
                ACTOR,
                None,
                AuditEvent::ApprovalRequested,
                format!(
                    "{why}; waiting up to {secs} s for a decision on the approvals topic (then on_hold_timeout: {})",
                    self.config.on_hold_timeout.name()
                ),
                now,
            )?,
            self.emit_state(key)?,
        ])
    }

    /// Records an executor's answer and moves the recovery on.
    pub(super) fn on_step_result(
        &mut self,
        result: EffectResult,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        self.in_flight.remove(&result.idempotency_key);
        let (recovery_id, index) = result
            .idempotency_key
            .rsplit_once('/')
            .and_then(|(r, i)| Some((r.to_string(), i.parse::<i32>().ok()?)))
            .ok_or_else(|| {
                ProcessError::Fatal(format!("bad step key {}", result.idempotency_key))
            })?;
        let key = DeploymentKey::of_recovery_id(&recovery_id)
            .ok_or_else(|| ProcessError::Fatal(format!("bad recovery id {recovery_id}")))?
            .to_string();
        let Some(state) = self
            .recoveries
            .get_mut(&key)
            .filter(|s| s.recovery_id == recovery_id)
        else {
            // The recovery ended (or was replaced) while the step ran.
            tracing::warn!(key = %result.idempotency_key, "result for a recovery that is no longer active");
            return Ok(Vec::new());
        };
        let Some(step) = state.steps.iter_mut().find(|s| s.index == index) else {
            return Err(ProcessError::Fatal(format!(
                "result for unknown step {}",
                result.idempotency_key
            )));
        };
        step.finished_at = Some(now);
        step.detail = Some(result.detail.clone());
        if let Some(m) = &result.observed {
            step.observed_metric = Some(m.metric.clone());
            step.observed_value = Some(m.value);
        }
        step.status = if result.success {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        };
        // A check waited on is polled again until its deadline.
        if !result.success && step.action == "wait" {
            let deadline_ms = step
                .params
                .get("deadline_secs")
                .and_then(|d| d.parse::<i64>().ok())
                .unwrap_or(0)
                * 1000;
            let deadline = step.started_at.unwrap_or(now) + deadline_ms;
            if now < deadline {
                step.status = StepStatus::Started;
                let step = step.clone();
                state.waiting_until = Some((now + POLL_MS).min(deadline));
                state.updated_at = now;
                let detail = format!("not yet: {}; trying again", result.detail);
                return Ok(vec![
                    self.step_audit(
                        &recovery_id,
                        &key,
                        &step,
                        AuditEvent::StepFailed,
                        detail,
                        now,
                    )?,
                    self.emit_state(&key)?,
                ]);
            }
        }
        let step = step.clone();
        state.updated_at = now;
        if state.status != RecoveryStatus::Running {
            // E.g. a parallel branch answering after the recovery ended.
            return Ok(vec![self.emit_state(&key)?]);
        }
        let event = if result.success {
            AuditEvent::StepSucceeded
        } else {
            AuditEvent::StepFailed
        };
        let mut actions =
            vec![self.step_audit(&recovery_id, &key, &step, event, result.detail, now)?];
        actions.extend(self.advance(&key, now)?);
        Ok(actions)
    }

    /// Resumes, once after a restore, recoveries whose step was started
    /// before the restart and never answered.
    pub(super) fn resume_orphans(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let keys: Vec<String> = self
            .recoveries
            .iter()
            .filter(|(_, s)| s.status == RecoveryStatus::Running && s.waiting_until.is_none())
            .filter(|(_, s)| s.steps.iter().any(|st| st.status == StepStatus::Started))
            .map(|(k, _)| k.clone())
            .collect();
        let mut actions = Vec::new();
        for key in keys {
            actions.extend(self.advance(&key, now)?);
        }
        Ok(actions)
    }
}
