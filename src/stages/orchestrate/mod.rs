//! Orchestrate: plans and approvals in; recovery state, outcomes and audit
//! records out. One recovery per deployment at a time.
//!
//! Each step is recorded as `started` in `medic.recovery.state` (and made
//! durable by the runner) *before* the executor is called, and as `succeeded`
//! or `failed` after. The state topic is compacted and keyed by deployment, and
//! is read back on partition assignment; a plan or approval redelivered after a
//! crash therefore resumes at the first unfinished step, and the executor sees
//! the same idempotency key (`recovery_id/step`) for a step it may already
//! have started.

use crate::codec;
use crate::config::OrchestrateConfig;
use crate::domain::*;
use crate::stages::{
    decode_input, Action, EffectRequest, EffectResult, InputRecord, OutputRecord, ProcessError,
    Processor, StageName,
};
use crate::topics::Topics;
use std::collections::{BTreeMap, VecDeque};

const ACTOR: &str = "medic/orchestrate";

/// The orchestrate stage.
pub struct Orchestrate {
    topics: Topics,
    config: OrchestrateConfig,
    /// Latest recovery per deployment key.
    recoveries: BTreeMap<String, RecoveryState>,
    /// Start times of automated actions, oldest first, for the circuit breaker.
    breaker: VecDeque<Millis>,
    /// Set by a restore: rebuild `breaker` from the restored states first.
    breaker_stale: bool,
}

/// Actions that change nothing: they do not count for the circuit breaker.
const PASSIVE_ACTIONS: &[&str] = &["notify", "run_health_check", "wait", "escalate"];

fn automated(action: &str) -> bool {
    !PASSIVE_ACTIONS.contains(&action)
}

impl Orchestrate {
    /// An orchestrate stage.
    pub fn new(topics: Topics, config: OrchestrateConfig) -> Self {
        Orchestrate {
            topics,
            config,
            recoveries: BTreeMap::new(),
            breaker: VecDeque::new(),
            breaker_stale: false,
        }
    }

    /// Why the circuit breaker holds automated actions at `now`, if it does.
    fn breaker_open(&mut self, now: Millis) -> Option<String> {
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
    fn cooldown(&self, state: &RecoveryState, action: &str, now: Millis) -> Option<String> {
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

    /// Latest recovery per deployment key.
    pub fn recoveries(&self) -> &BTreeMap<String, RecoveryState> {
        &self.recoveries
    }

    /// Handles a plan.
    pub fn on_plan(
        &mut self,
        plan: &RecoveryPlan,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        if let Some(current) = self.recoveries.get(&plan.deployment_key) {
            if current.recovery_id == plan.recovery_id {
                // Redelivered plan: resume a running recovery, ignore anything else.
                return match current.status {
                    RecoveryStatus::Running => self.advance(&plan.deployment_key, now),
                    _ => Ok(Vec::new()),
                };
            }
            if current.status.is_active() {
                let detail = format!(
                    "attached to recovery {} of this deployment, which is still {}",
                    current.recovery_id, current.status
                );
                let outcome = RecoveryOutcome {
                    recovery_id: plan.recovery_id.clone(),
                    failure_id: plan.failure_id.clone(),
                    deployment_key: plan.deployment_key.clone(),
                    service: plan.service.clone(),
                    environment: plan.environment.clone(),
                    failure_type: plan.failure_type,
                    severity: plan.severity,
                    strategy: plan.strategy.clone(),
                    outcome: Outcome::Skipped,
                    dry_run: self.config.dry_run,
                    started_at: now,
                    finished_at: now,
                    steps_total: plan.steps.len() as i32,
                    steps_succeeded: 0,
                    detail: detail.clone(),
                    ci: plan.ci.clone(),
                    approver: None,
                    actions: Vec::new(),
                };
                let key = plan.deployment_key.clone();
                if let Some(current) = self.recoveries.get_mut(&key) {
                    if !current.attached_failures.contains(&plan.failure_id) {
                        current.attached_failures.push(plan.failure_id.clone());
                    }
                    current.updated_at = now;
                }
                return Ok(vec![
                    self.audit(
                        &plan.recovery_id,
                        &plan.deployment_key,
                        ACTOR,
                        None,
                        AuditEvent::Skipped,
                        detail,
                        now,
                    )?,
                    self.emit_state(&key)?,
                    self.emit_outcome(&outcome)?,
                ]);
            }
        }
        let last_disruptive = self
            .recoveries
            .get(&plan.deployment_key)
            .map(|previous| previous.last_disruptive.clone())
            .unwrap_or_default();
        let breaker = if plan.steps.iter().any(|s| automated(&s.action)) {
            self.breaker_open(now)
        } else {
            None
        };
        let needs_approval = plan.requires_approval || breaker.is_some();
        let state = RecoveryState {
            recovery_id: plan.recovery_id.clone(),
            failure_id: plan.failure_id.clone(),
            deployment_key: plan.deployment_key.clone(),
            service: plan.service.clone(),
            environment: plan.environment.clone(),
            failure_type: plan.failure_type,
            severity: plan.severity,
            strategy: plan.strategy.clone(),
            status: if needs_approval {
                RecoveryStatus::AwaitingApproval
            } else {
                RecoveryStatus::Running
            },
            dry_run: self.config.dry_run,
            steps: plan
                .steps
                .iter()
                .map(|s| StepState {
                    index: s.index,
                    phase: s.phase,
                    action: s.action.clone(),
                    target: s.target.clone(),
                    params: s.params.clone(),
                    timeout_ms: s.timeout_ms,
                    status: StepStatus::Pending,
                    attempts: 0,
                    started_at: None,
                    finished_at: None,
                    detail: None,
                })
                .collect(),
            started_at: now,
            updated_at: now,
            approver: None,
            ci: plan.ci.clone(),
            last_disruptive,
            attached_failures: Vec::new(),
        };
        let key = plan.deployment_key.clone();
        let mut actions = vec![self.audit(
            &plan.recovery_id,
            &key,
            ACTOR,
            None,
            AuditEvent::PlanReceived,
            format!(
                "{} for {} {} failure, {} steps",
                plan.strategy,
                plan.severity,
                plan.failure_type,
                plan.steps.len()
            ),
            now,
        )?];
        self.recoveries.insert(key.clone(), state);
        if needs_approval {
            actions.push(self.audit(
                &plan.recovery_id,
                &key,
                ACTOR,
                None,
                AuditEvent::ApprovalRequested,
                match breaker {
                    Some(why) if !plan.requires_approval => {
                        format!("{why}; waiting for a decision on the approvals topic")
                    }
                    _ => "waiting for a decision on the approvals topic".into(),
                },
                now,
            )?);
            actions.push(self.emit_state(&key)?);
            return Ok(actions);
        }
        actions.extend(self.advance(&key, now)?);
        Ok(actions)
    }

    /// Handles an approval.
    pub fn on_approval(
        &mut self,
        approval: &Approval,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let key = DeploymentKey::of_recovery_id(&approval.recovery_id)
            .ok_or_else(|| {
                ProcessError::Invalid(format!("'{}' is not a recovery id", approval.recovery_id))
            })?
            .to_string();
        let state = self
            .recoveries
            .get_mut(&key)
            .filter(|s| s.recovery_id == approval.recovery_id)
            .ok_or_else(|| {
                ProcessError::Invalid(format!("no recovery {} is known", approval.recovery_id))
            })?;
        match state.status {
            RecoveryStatus::AwaitingApproval => {}
            RecoveryStatus::Running => return self.advance(&key, now),
            _ => return Ok(Vec::new()),
        }
        state.approver = Some(approval.approver.clone());
        state.updated_at = now;
        let reason = approval.reason.clone().unwrap_or_default();
        match approval.decision {
            ApprovalDecision::Approved => {
                state.status = RecoveryStatus::Running;
                let mut actions = vec![self.audit(
                    &approval.recovery_id,
                    &key,
                    &approval.approver,
                    None,
                    AuditEvent::Approved,
                    reason,
                    now,
                )?];
                actions.extend(self.advance(&key, now)?);
                Ok(actions)
            }
            ApprovalDecision::Rejected => {
                state.status = RecoveryStatus::Rejected;
                for step in &mut state.steps {
                    step.status = StepStatus::Skipped;
                }
                let mut actions = vec![self.audit(
                    &approval.recovery_id,
                    &key,
                    &approval.approver,
                    None,
                    AuditEvent::Rejected,
                    reason,
                    now,
                )?];
                actions.extend(self.finish(&key, now)?);
                Ok(actions)
            }
        }
    }

    /// Starts the next unfinished step, or finishes the recovery.
    fn advance(&mut self, key: &str, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let dry_run = self.config.dry_run;
        let Some(state) = self.recoveries.get(key) else {
            return Ok(Vec::new());
        };
        let Some(next) = state
            .steps
            .iter()
            .find(|s| matches!(s.status, StepStatus::Pending | StepStatus::Started))
        else {
            return self.finish(key, now);
        };
        // Safety rules, checked before a step starts (a step already started
        // before a crash is resumed as it was).
        if next.status == StepStatus::Pending {
            let action = next.action.clone();
            let approved = state.approver.is_some();
            if let Some(why) = self.cooldown(state, &action, now) {
                return self.block(key, why, now);
            }
            if automated(&action) && !approved {
                if let Some(why) = self.breaker_open(now) {
                    return self.hold_for_approval(key, why, now);
                }
            }
        }
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        let Some(step) = state
            .steps
            .iter_mut()
            .find(|s| matches!(s.status, StepStatus::Pending | StepStatus::Started))
        else {
            return Ok(Vec::new());
        };
        if step.status == StepStatus::Pending {
            if automated(&step.action) {
                self.breaker.push_back(now);
            }
            if self.config.cooldown_actions.contains(&step.action) {
                state.last_disruptive.insert(step.action.clone(), now);
            }
        }
        step.status = StepStatus::Started;
        step.attempts += 1;
        step.started_at = Some(now);
        state.updated_at = now;
        let step = step.clone();
        let recovery_id = state.recovery_id.clone();
        let (service, environment, ci) = (
            state.service.clone(),
            state.environment.clone(),
            state.ci.clone().map(Box::new),
        );
        let idempotency_key = format!("{recovery_id}/{}", step.index);
        Ok(vec![
            self.emit_state(key)?,
            self.step_audit(
                &recovery_id,
                key,
                &step,
                AuditEvent::StepStarted,
                format!("attempt {}", step.attempts),
                now,
            )?,
            Action::Execute(EffectRequest::RecoveryStep {
                idempotency_key,
                recovery_id,
                deployment_key: key.to_string(),
                service,
                environment,
                ci,
                step: PlanStep {
                    index: step.index,
                    phase: step.phase,
                    action: step.action.clone(),
                    target: step.target.clone(),
                    params: step.params.clone(),
                    timeout_ms: step.timeout_ms,
                },
                dry_run,
            }),
        ])
    }

    /// A safety rule forbids the next step: the recovery ends skipped, saying which.
    fn block(&mut self, key: &str, why: String, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        for step in state
            .steps
            .iter_mut()
            .filter(|s| s.status == StepStatus::Pending)
        {
            step.status = StepStatus::Skipped;
            step.detail = Some(why.clone());
        }
        state.status = RecoveryStatus::Failed;
        state.updated_at = now;
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
        actions.extend(self.finish_with(key, Some(why), now)?);
        Ok(actions)
    }

    /// The circuit breaker is open: the recovery waits for a human.
    fn hold_for_approval(
        &mut self,
        key: &str,
        why: String,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        state.status = RecoveryStatus::AwaitingApproval;
        state.updated_at = now;
        let recovery_id = state.recovery_id.clone();
        Ok(vec![
            self.audit(
                &recovery_id,
                key,
                ACTOR,
                None,
                AuditEvent::ApprovalRequested,
                format!("{why}; waiting for a decision on the approvals topic"),
                now,
            )?,
            self.emit_state(key)?,
        ])
    }

    fn finish(&mut self, key: &str, now: Millis) -> Result<Vec<Action>, ProcessError> {
        self.finish_with(key, None, now)
    }

    /// Ends the recovery; `blocked` names the safety rule that stopped it.
    fn finish_with(
        &mut self,
        key: &str,
        blocked: Option<String>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        let succeeded = state
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Succeeded)
            .count();
        let failed = state.steps.iter().find(|s| s.status == StepStatus::Failed);
        let outcome = match (state.status, failed) {
            _ if blocked.is_some() => Outcome::Skipped,
            (RecoveryStatus::Rejected, _) => Outcome::Rejected,
            (_, Some(_)) => Outcome::Failed,
            _ => Outcome::Succeeded,
        };
        if state.status == RecoveryStatus::Running {
            state.status = if outcome == Outcome::Succeeded {
                RecoveryStatus::Succeeded
            } else {
                RecoveryStatus::Failed
            };
        }
        state.updated_at = now;
        let detail = match (outcome, failed) {
            _ if blocked.is_some() => blocked.unwrap_or_default(),
            (Outcome::Rejected, _) => format!(
                "rejected by {}",
                state.approver.as_deref().unwrap_or("unknown")
            ),
            (_, Some(step)) => format!(
                "step {} ({}) failed: {}",
                step.index,
                step.action,
                step.detail.as_deref().unwrap_or("no detail")
            ),
            _ => format!(
                "{} of {} steps {}",
                succeeded,
                state.steps.len(),
                if state.dry_run {
                    "recorded (dry run)"
                } else {
                    "succeeded"
                }
            ),
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
            steps_total: state.steps.len() as i32,
            steps_succeeded: succeeded as i32,
            detail: detail.clone(),
            ci: state.ci.clone(),
            approver: state.approver.clone(),
            actions: state
                .steps
                .iter()
                .filter(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Failed))
                .map(|s| s.action.clone())
                .collect(),
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

    fn emit_state(&self, key: &str) -> Result<Action, ProcessError> {
        let state = self
            .recoveries
            .get(key)
            .ok_or_else(|| ProcessError::Fatal(format!("no state for {key}")))?;
        let id = format!("{}@{}", state.recovery_id, state.updated_at);
        Ok(Action::Emit(OutputRecord::encode(
            &self.topics.state,
            key,
            Some(id),
            state,
        )?))
    }

    fn emit_outcome(&self, outcome: &RecoveryOutcome) -> Result<Action, ProcessError> {
        Ok(Action::Emit(OutputRecord::encode(
            &self.topics.outcomes,
            &outcome.deployment_key,
            Some(outcome.recovery_id.clone()),
            outcome,
        )?))
    }

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        recovery_id: &str,
        key: &str,
        actor: &str,
        step: Option<&StepState>,
        event: AuditEvent,
        detail: String,
        now: Millis,
    ) -> Result<Action, ProcessError> {
        let step_part = step.map_or("-".to_string(), |s| format!("{}.{}", s.index, s.attempts));
        let record = AuditRecord {
            id: format!("{recovery_id}/{step_part}/{event}"),
            recovery_id: recovery_id.to_string(),
            deployment_key: key.to_string(),
            actor: actor.to_string(),
            action: step.map_or_else(|| event.to_string(), |s| s.action.clone()),
            target: step.map_or_else(|| key.to_string(), |s| s.target.clone()),
            phase: step.map(|s| s.phase),
            step_index: step.map(|s| s.index),
            event,
            dry_run: self.config.dry_run,
            idempotency_key: step.map(|s| format!("{recovery_id}/{}", s.index)),
            detail,
            at: now,
        };
        Ok(Action::Emit(OutputRecord::encode(
            &self.topics.audit,
            key,
            Some(record.id.clone()),
            &record,
        )?))
    }

    fn step_audit(
        &self,
        recovery_id: &str,
        key: &str,
        step: &StepState,
        event: AuditEvent,
        detail: String,
        now: Millis,
    ) -> Result<Action, ProcessError> {
        self.audit(recovery_id, key, ACTOR, Some(step), event, detail, now)
    }
}

impl Processor for Orchestrate {
    fn stage(&self) -> StageName {
        StageName::Orchestrate
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.topics.plans.clone(), self.topics.approvals.clone()]
    }

    fn state_topics(&self) -> Vec<String> {
        vec![self.topics.state.clone()]
    }

    fn reset(&mut self) {
        self.recoveries.clear();
        self.breaker.clear();
    }

    fn restore(
        &mut self,
        _topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), ProcessError> {
        let key = String::from_utf8_lossy(key).into_owned();
        match payload {
            None => {
                self.recoveries.remove(&key);
            }
            Some(bytes) => {
                let state: RecoveryState =
                    codec::decode(bytes).map_err(|e| ProcessError::Undecodable(e.to_string()))?;
                self.recoveries.insert(key, state);
            }
        }
        self.breaker_stale = true;
        Ok(())
    }

    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        if input.topic == self.topics.approvals {
            let approval: Approval = decode_input(input)?;
            return self.on_approval(&approval, now);
        }
        let plan: RecoveryPlan = decode_input(input)?;
        self.on_plan(&plan, now)
    }

    fn on_effect(
        &mut self,
        result: EffectResult,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
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
        let state = self
            .recoveries
            .get_mut(&key)
            .filter(|s| s.recovery_id == recovery_id)
            .ok_or_else(|| {
                ProcessError::Fatal(format!("result for unknown recovery {recovery_id}"))
            })?;
        let step = state
            .steps
            .iter_mut()
            .find(|s| s.index == index)
            .ok_or_else(|| {
                ProcessError::Fatal(format!(
                    "result for unknown step {}",
                    result.idempotency_key
                ))
            })?;
        step.status = if result.success {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        };
        step.finished_at = Some(now);
        step.detail = Some(result.detail.clone());
        let step = step.clone();
        if !result.success {
            for later in state
                .steps
                .iter_mut()
                .filter(|s| s.status == StepStatus::Pending)
            {
                later.status = StepStatus::Skipped;
            }
        }
        state.updated_at = now;
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
}

#[cfg(test)]
mod tests;
