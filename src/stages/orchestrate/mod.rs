//! Orchestrate: plans and approvals in; recovery state, outcomes and audit
//! records out. One recovery per deployment at a time.
//!
//! A plan carries a program (see [`crate::stages::decide::program`]): the
//! nodes of its strategy's tree the recovery can reach, linked by node id.
//! The orchestrator walks it: an action runs on its executor and goes to
//! `next`, or to `on_failure` when it fails; a health check goes to
//! `if_unhealthy` when it fails; a gate waits for an approval until its
//! timeout, then follows `on_timeout`; a wait waits (or polls its check until
//! the deadline); parallel branches run together and join; an `end` node ends
//! the recovery. A plan without a program (no `node` parameters) runs its
//! steps in order, behind one gate when it requires approval.
//!
//! Each step is recorded as `started` in `medic.recovery.state` (and made
//! durable by the runner) *before* the executor is called, and as `succeeded`
//! or `failed` after; the state also records the node the recovery is at and
//! every phase entered. The state topic is compacted and keyed by deployment,
//! and is read back on partition assignment; a plan or approval redelivered
//! after a crash therefore resumes where the recovery was, never repeats a
//! finished step, and re-invokes a started one with the same idempotency key
//! (`recovery_id/step`).
//!
//! Safety rules are checked before every automated step: the per-deployment
//! cooldown for restarts and rollbacks, and the circuit breaker across
//! deployments. A new plan for a deployment under recovery is attached to the
//! running recovery.
//!
//! Here: the stage, plans and approvals in, the [`Processor`] contract. The
//! state machine is in `machine.rs` (next move, advance, the program of a
//! plan), steps and gates in `steps.rs`, the end of a recovery and its timers
//! in `finish.rs`, the safety rules in `safety.rs`, the undoing of temporary
//! measures in `cleanup.rs`, what a recovery measures about itself in
//! `metrics.rs`, and the records it emits (state, outcome, audit) in
//! `records.rs`.

mod advice;
mod cleanup;
pub use cleanup::TEMPORARY_MEASURES;
pub mod config;
mod finish;
mod machine;
mod metrics;
mod records;
mod safety;
mod steps;

use crate::codec;
use crate::domain::*;
use crate::stages::{
    decode_input, Action, EffectRequest, EffectResult, InputRecord, Observation, OutputRecord,
    ProcessError, Processor, StageName,
};
use crate::topics::Topics;
use advice::*;
use cleanup::*;
use config::{HoldPolicy, OrchestrateConfig};
use machine::*;
use metrics::*;
use safety::*;
use std::collections::{BTreeMap, VecDeque};

const ACTOR: &str = "medic/orchestrate";

/// How often a wait-until check is tried again while it fails.
const POLL_MS: Millis = 30_000;

/// Steps the orchestrator carries out itself, without an executor.
const CONTROL_ACTIONS: &[&str] = &["gate", "parallel", "wait", "end"];

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
    /// Idempotency keys of steps handed to an executor by this instance and
    /// not answered yet. A started step not in here was started before a
    /// restart: it is run again, with the same key.
    in_flight: std::collections::BTreeSet<String>,
    /// Set by a restore: the next timer resumes recoveries left mid-step.
    sweep: bool,
}

fn param<'a>(step: &'a StepState, name: &str) -> Option<&'a str> {
    step.params.get(name).map(String::as_str)
}

fn node_of(step: &StepState) -> Option<&str> {
    param(step, "node")
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
            in_flight: std::collections::BTreeSet::new(),
            sweep: false,
        }
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
                return self.attach(plan, now);
            }
        }
        let last_disruptive = self
            .recoveries
            .get(&plan.deployment_key)
            .map(|previous| previous.last_disruptive.clone())
            .unwrap_or_default();
        let (steps, cursor) = program_of(plan);
        let state = RecoveryState {
            recovery_id: plan.recovery_id.clone(),
            failure_id: plan.failure_id.clone(),
            deployment_key: plan.deployment_key.clone(),
            service: plan.service.clone(),
            environment: plan.environment.clone(),
            failure_type: plan.failure_type,
            severity: plan.severity,
            strategy: plan.strategy.clone(),
            status: RecoveryStatus::Running,
            dry_run: self.config.dry_run.is_all(),
            steps,
            started_at: now,
            updated_at: now,
            approver: None,
            ci: plan.ci.clone(),
            last_disruptive,
            attached_failures: Vec::new(),
            cursor: Some(cursor),
            waiting_until: None,
            phases: Vec::new(),
            affected_users: plan.affected_users,
            error_rate: plan.error_rate,
            transient: plan.transient,
        };
        let key = plan.deployment_key.clone();
        let actions = vec![self.audit(
            &plan.recovery_id,
            &key,
            ACTOR,
            None,
            AuditEvent::PlanReceived,
            format!(
                "{} for {} {} failure, {} steps in the program",
                plan.strategy,
                plan.severity,
                plan.failure_type,
                plan.steps.len()
            ),
            now,
        )?];
        self.recoveries.insert(key.clone(), state);
        let mut actions = actions;
        actions.extend(self.advance(&key, now)?);
        Ok(actions)
    }

    /// A plan for a deployment under recovery: attached to the running one.
    fn attach(&mut self, plan: &RecoveryPlan, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let key = plan.deployment_key.clone();
        let Some(current) = self.recoveries.get_mut(&key) else {
            return Ok(Vec::new());
        };
        let detail = format!(
            "attached to recovery {} of this deployment, which is still {}",
            current.recovery_id, current.status
        );
        if !current.attached_failures.contains(&plan.failure_id) {
            current.attached_failures.push(plan.failure_id.clone());
        }
        current.updated_at = now;
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
            dry_run: self.config.dry_run.is_all(),
            started_at: now,
            finished_at: now,
            steps_total: 0,
            steps_succeeded: 0,
            detail: detail.clone(),
            ci: plan.ci.clone(),
            approver: None,
            actions: Vec::new(),
            simulated_steps: Vec::new(),
            metrics: Some(RecoveryMetrics::default()),
            should_retry_deployment: false,
            recommendations: vec![format!(
                "Wait for the outcome of recovery {}",
                current.recovery_id
            )],
        };
        Ok(vec![
            self.audit(
                &plan.recovery_id,
                &key,
                ACTOR,
                None,
                AuditEvent::Skipped,
                detail,
                now,
            )?,
            self.emit_state(&key)?,
            self.emit_outcome(&outcome)?,
        ])
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
        state.waiting_until = None;
        let reason = approval.reason.clone().unwrap_or_default();
        // The gate the recovery waits at (a held automated step has none).
        let gate = state.cursor.clone().and_then(|c| {
            state
                .steps
                .iter()
                .position(|s| node_of(s) == Some(c.as_str()) && s.action == "gate")
        });
        let recovery_id = approval.recovery_id.clone();
        match approval.decision {
            ApprovalDecision::Approved => {
                state.status = RecoveryStatus::Running;
                if let Some(i) = gate {
                    let step = &mut state.steps[i];
                    step.status = StepStatus::Succeeded;
                    step.finished_at = Some(now);
                    step.detail = Some(format!("approved by {}", approval.approver));
                    state.cursor = step.params.get("next").cloned();
                }
                let mut actions = vec![self.audit(
                    &recovery_id,
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
                if let Some(i) = gate {
                    let step = &mut state.steps[i];
                    step.status = StepStatus::Failed;
                    step.finished_at = Some(now);
                    step.detail = Some(format!("rejected by {}", approval.approver));
                }
                let mut actions = vec![self.audit(
                    &recovery_id,
                    &key,
                    &approval.approver,
                    None,
                    AuditEvent::Rejected,
                    reason,
                    now,
                )?];
                let detail = match approval.reason.as_deref() {
                    Some(why) if !why.is_empty() => {
                        format!("escalated: rejected by {} ({why})", approval.approver)
                    }
                    _ => format!("escalated: rejected by {}", approval.approver),
                };
                actions.extend(self.finish(&key, Outcome::Rejected, detail, now)?);
                Ok(actions)
            }
        }
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
        self.in_flight.clear();
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
        self.sweep = true;
        Ok(())
    }

    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        if input.topic == self.topics.approvals {
            let approval: Approval = decode_input(input)?;
            crate::telemetry::record_recovery(&approval.recovery_id);
            return self.on_approval(&approval, now);
        }
        let plan: RecoveryPlan = decode_input(input)?;
        crate::telemetry::record_recovery(&plan.recovery_id);
        self.on_plan(&plan, now)
    }

    fn concurrent_effects(&self) -> bool {
        // Every step is recorded as started in the state topic before its
        // executor is called, and results are matched by idempotency key.
        true
    }

    fn on_effect(
        &mut self,
        result: EffectResult,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        self.on_step_result(result, now)
    }

    fn on_timer(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let mut actions = Vec::new();
        if std::mem::take(&mut self.sweep) {
            actions.extend(self.resume_orphans(now)?);
        }
        actions.extend(self.due(now)?);
        Ok(actions)
    }
}

#[cfg(test)]
mod tests;
