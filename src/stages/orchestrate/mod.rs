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

use crate::codec;
use crate::config::OrchestrateConfig;
use crate::domain::*;
use crate::stages::{
    decode_input, Action, EffectRequest, EffectResult, InputRecord, Observation, OutputRecord,
    ProcessError, Processor, StageName,
};
use crate::topics::Topics;
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

/// Actions that change nothing: they do not count for the circuit breaker.
const PASSIVE_ACTIONS: &[&str] = &["notify", "run_health_check", "wait", "escalate"];

fn automated(action: &str) -> bool {
    !PASSIVE_ACTIONS.contains(&action) && !CONTROL_ACTIONS.contains(&action)
}

fn param<'a>(step: &'a StepState, name: &str) -> Option<&'a str> {
    step.params.get(name).map(String::as_str)
}

fn node_of(step: &StepState) -> Option<&str> {
    param(step, "node")
}

/// What to do next, decided from the state before anything is changed.
enum Next {
    /// Start (or, after a crash, start again) the step at this position.
    Run(usize),
    /// Start these parallel branches (positions).
    RunBranches(Vec<usize>),
    /// Move the cursor to a node (`None`: the program ends here) after
    /// marking the step at this position with a status.
    Move(usize, StepStatus, Option<String>),
    /// Wait at a gate (position).
    Gate(usize),
    /// Wait until a time (position, until).
    Sleep(usize, Millis),
    /// Nothing to do until an effect or timer arrives.
    Idle,
    /// Add and start these cleanup steps `(action, params of the measure)`.
    Cleanup(Vec<(String, BTreeMap<String, String>)>),
    /// End the recovery.
    End(Outcome, String),
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
            dry_run: self.config.dry_run,
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
            dry_run: self.config.dry_run,
            started_at: now,
            finished_at: now,
            steps_total: 0,
            steps_succeeded: 0,
            detail: detail.clone(),
            ci: plan.ci.clone(),
            approver: None,
            actions: Vec::new(),
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

    /// Decides the next move of the recovery of `key` from its state.
    fn next_move(&self, key: &str, now: Millis) -> Next {
        let Some(state) = self.recoveries.get(key) else {
            return Next::Idle;
        };
        if state.status != RecoveryStatus::Running {
            return Next::Idle;
        }
        let Some(cursor) = state.cursor.as_deref() else {
            return Next::End(Outcome::Succeeded, "nothing left to do".into());
        };
        let Some(i) = state.steps.iter().position(|s| node_of(s) == Some(cursor)) else {
            return Next::End(
                Outcome::Failed,
                format!("the plan's program has no node '{cursor}'"),
            );
        };
        let step = &state.steps[i];
        let next = param(step, "next").map(str::to_string);
        match step.action.as_str() {
            "end" => {
                let message = param(step, "message").unwrap_or_default();
                if param(step, "outcome") == Some("resolved")
                    && self.config.cleanup_temporary_measures
                {
                    match cleanup_of(state) {
                        Cleanup::Start(list) => return Next::Cleanup(list),
                        Cleanup::Running => return Next::Idle,
                        Cleanup::Failed(why) => return Next::End(Outcome::Failed, why),
                        Cleanup::Done => {}
                    }
                }
                match param(step, "outcome") {
                    Some("resolved") => Next::End(Outcome::Succeeded, message.to_string()),
                    Some(other) => Next::End(Outcome::Failed, format!("{other}: {message}")),
                    None => Next::End(Outcome::Failed, message.to_string()),
                }
            }
            "gate" => match step.status {
                StepStatus::Succeeded => Next::Move(i, StepStatus::Succeeded, next),
                _ if param(step, "implicit") == Some("true") && state.approver.is_some() => {
                    Next::Move(i, StepStatus::Succeeded, next)
                }
                _ => Next::Gate(i),
            },
            "parallel" => {
                let branches: Vec<usize> = param(step, "branches")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|b| state.steps.iter().position(|s| node_of(s) == Some(b)))
                    .collect();
                let status = |j: &usize| state.steps[*j].status;
                let ok = branches
                    .iter()
                    .filter(|j| status(j) == StepStatus::Succeeded)
                    .count();
                let failed = branches
                    .iter()
                    .filter(|j| status(j) == StepStatus::Failed)
                    .count();
                let any = param(step, "join") == Some("any");
                if (any && ok > 0) || (!any && ok == branches.len()) {
                    Next::Move(i, StepStatus::Succeeded, next)
                } else if (any && failed == branches.len())
                    || (!any && failed > 0 && ok + failed == branches.len())
                {
                    Next::End(
                        Outcome::Failed,
                        format!(
                            "parallel {cursor}: {failed} of {} branches failed",
                            branches.len()
                        ),
                    )
                } else {
                    let to_start: Vec<usize> = branches
                        .into_iter()
                        .filter(|j| match status(j) {
                            StepStatus::Pending => true,
                            StepStatus::Started => {
                                !self.in_flight.contains(&self.key_of(state, *j))
                            }
                            _ => false,
                        })
                        .collect();
                    if to_start.is_empty() {
                        Next::Idle
                    } else {
                        Next::RunBranches(to_start)
                    }
                }
            }
            "wait" if param(step, "delay_secs").is_some() => match state.waiting_until {
                Some(until) if now >= until => Next::Move(i, StepStatus::Succeeded, next),
                Some(_) => Next::Idle,
                None => {
                    let secs: i64 = param(step, "delay_secs")
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(0);
                    Next::Sleep(i, now + secs * 1000)
                }
            },
            _ => match step.status {
                StepStatus::Succeeded => Next::Move(i, StepStatus::Succeeded, next),
                // Notifications are best effort unless the environment requires them.
                StepStatus::Failed
                    if step.action == "notify"
                        && param(step, "on_failure").is_none()
                        && !self
                            .config
                            .constraints
                            .get(&state.environment)
                            .is_some_and(|c| c.notification_required) =>
                {
                    Next::Move(i, StepStatus::Failed, next)
                }
                StepStatus::Failed => {
                    let fallback = ["on_failure", "if_unhealthy", "on_deadline"]
                        .iter()
                        .find_map(|e| param(step, e))
                        .map(str::to_string);
                    match fallback {
                        Some(f) => Next::Move(i, StepStatus::Failed, Some(f)),
                        None => Next::End(
                            Outcome::Failed,
                            format!(
                                "step {} ({}) failed: {}",
                                step.index,
                                step.action,
                                step.detail.as_deref().unwrap_or("no detail")
                            ),
                        ),
                    }
                }
                // A check being polled waits for its timer.
                StepStatus::Started if state.waiting_until.is_some() => Next::Idle,
                // Running on an executor now.
                StepStatus::Started if self.in_flight.contains(&self.key_of(state, i)) => {
                    Next::Idle
                }
                // Pending, or started before a restart: run it (again, with
                // the same idempotency key).
                _ => Next::Run(i),
            },
        }
    }

    fn key_of(&self, state: &RecoveryState, i: usize) -> String {
        format!("{}/{}", state.recovery_id, state.steps[i].index)
    }

    /// Moves the recovery of `key` on until it waits for something or ends.
    fn advance(&mut self, key: &str, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let mut actions = Vec::new();
        // Every move changes the cursor; a program of n nodes needs at most n.
        let limit = self.recoveries.get(key).map_or(0, |s| s.steps.len()) + 2;
        for _ in 0..limit {
            match self.next_move(key, now) {
                Next::Idle => return Ok(actions),
                Next::End(outcome, detail) => {
                    actions.extend(self.finish(key, outcome, detail, now)?);
                    return Ok(actions);
                }
                Next::Move(i, status, to) => {
                    let Some(state) = self.recoveries.get_mut(key) else {
                        return Ok(actions);
                    };
                    let step = &mut state.steps[i];
                    if CONTROL_ACTIONS.contains(&step.action.as_str()) && step.status != status {
                        step.status = status;
                        step.finished_at.get_or_insert(now);
                    }
                    state.waiting_until = None;
                    state.cursor = to;
                    state.updated_at = now;
                }
                Next::Gate(i) => {
                    actions.extend(self.wait_at_gate(key, i, now)?);
                    return Ok(actions);
                }
                Next::Sleep(i, until) => {
                    let Some(state) = self.recoveries.get_mut(key) else {
                        return Ok(actions);
                    };
                    let step = &mut state.steps[i];
                    step.status = StepStatus::Started;
                    step.started_at = Some(now);
                    step.attempts += 1;
                    state.waiting_until = Some(until);
                    state.updated_at = now;
                    enter_phase(state, state.steps[i].phase, now);
                    actions.push(self.emit_state(key)?);
                    return Ok(actions);
                }
                Next::Run(i) => {
                    actions.extend(self.start_steps(key, &[i], now)?);
                    return Ok(actions);
                }
                Next::RunBranches(list) => {
                    actions.extend(self.start_steps(key, &list, now)?);
                    return Ok(actions);
                }
                Next::Cleanup(list) => {
                    let Some(state) = self.recoveries.get_mut(key) else {
                        return Ok(actions);
                    };
                    let mut added = Vec::new();
                    for (action, params) in list {
                        let index = state.steps.len();
                        state.steps.push(StepState {
                            index: index as i32,
                            phase: Phase::Cleanup,
                            action,
                            target: state.deployment_key.clone(),
                            params,
                            timeout_ms: 300_000,
                            status: StepStatus::Pending,
                            attempts: 0,
                            started_at: None,
                            finished_at: None,
                            detail: None,
                        });
                        added.push(index);
                    }
                    actions.extend(self.start_steps(key, &added, now)?);
                    return Ok(actions);
                }
            }
        }
        Err(ProcessError::Fatal(format!(
            "recovery of {key} did not settle: its program loops"
        )))
    }

    /// Waits at the gate at position `i`: asks for an approval until its timeout.
    fn wait_at_gate(
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
            None => "then the recovery ends escalated".into(),
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
    fn start_steps(
        &mut self,
        key: &str,
        list: &[usize],
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let dry_run = self.config.dry_run;
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
                    let recovery_id = state.recovery_id.clone();
                    actions.push(self.audit(
                        &recovery_id,
                        key,
                        ACTOR,
                        None,
                        AuditEvent::Skipped,
                        why.clone(),
                        now,
                    )?);
                    actions.extend(self.finish(
                        key,
                        Outcome::Failed,
                        format!("escalated: {why}"),
                        now,
                    )?);
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
            let idempotency_key = format!("{recovery_id}/{}", step.index);
            self.in_flight.insert(idempotency_key.clone());
            // A wait on a check runs the check.
            let executor_action = if step.action == "wait" {
                "run_health_check".to_string()
            } else {
                step.action.clone()
            };
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
                dry_run,
            }));
        }
        Ok(actions)
    }

    /// A safety rule forbids the next step: the recovery ends skipped, saying which.
    fn block(&mut self, key: &str, why: String, now: Millis) -> Result<Vec<Action>, ProcessError> {
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

    /// Ends the recovery of `key` with `outcome`.
    fn finish(
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
        let detail = if outcome == Outcome::Succeeded && state.dry_run {
            format!("{detail} ({succeeded} of {total} steps recorded, dry run)")
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
    fn due(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
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

    /// Records an executor's answer and moves the recovery on.
    fn on_step_result(
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
    fn resume_orphans(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
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
        let first_seen = crate::domain::recovery_first_seen(&outcome.recovery_id);
        let time_to_recover_ms = first_seen
            .filter(|_| outcome.outcome == Outcome::Succeeded)
            .map(|start| (outcome.finished_at - start).max(0));
        Ok(Action::Emit(
            OutputRecord::encode(
                &self.topics.outcomes,
                &outcome.deployment_key,
                Some(outcome.recovery_id.clone()),
                outcome,
            )?
            .observed(Observation::Recovery {
                strategy: outcome.strategy.clone(),
                outcome: outcome.outcome,
                time_to_recover_ms,
            }),
        ))
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

/// Temporary measures and the actions that undo them.
const TEMPORARY_MEASURES: &[(&str, &str)] = &[
    ("enable_circuit_breaker", "disable_circuit_breaker"),
    ("enable_readonly_mode", "disable_readonly_mode"),
];

/// Where the cleanup of a resolving recovery stands.
enum Cleanup {
    /// Nothing (more) to undo.
    Done,
    /// Undo steps to add and start.
    Start(Vec<(String, BTreeMap<String, String>)>),
    /// Undo steps are running.
    Running,
    /// An undo step failed.
    Failed(String),
}

fn cleanup_of(state: &RecoveryState) -> Cleanup {
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

/// Why `step` would interrupt `environment` longer than its constraints
/// allow, if it would. Failover and isolating a component interrupt for up
/// to their timeout; so does read-only mode where it is not acceptable.
fn downtime(
    c: &crate::config::EnvironmentConstraints,
    step: &StepState,
    environment: &str,
) -> Option<String> {
    let interrupts = match step.action.as_str() {
        "failover" | "isolate_component" => true,
        "enable_readonly_mode" => !c.readonly_mode_acceptable,
        _ => false,
    };
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
fn variant(c: &crate::config::EnvironmentConstraints, step: &mut StepState) {
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

/// Enters `phase` if the recovery is not in it: the phase log is
/// chronological (a fallback may go back to stabilization, cleanup comes
/// after the report that led to the end).
fn enter_phase(state: &mut RecoveryState, phase: Phase, now: Millis) {
    match state.phases.last_mut() {
        Some(current) if current.phase == phase => {}
        Some(current) => {
            current.finished_at = Some(now);
            state.phases.push(PhaseSpan {
                phase,
                started_at: now,
                finished_at: None,
            });
        }
        None => state.phases.push(PhaseSpan {
            phase,
            started_at: now,
            finished_at: None,
        }),
    }
}

/// The steps of `plan` as a program, and where it starts. A plan without a
/// program (no `node` parameters) becomes one: its steps in order, behind a
/// gate when it requires approval, ending resolved.
fn program_of(plan: &RecoveryPlan) -> (Vec<StepState>, String) {
    let state = |s: &PlanStep| StepState {
        index: s.index,
        phase: s.phase,
        action: s.action.clone(),
        target: s.target.clone(),
        params: s.owned_params(),
        timeout_ms: s.timeout_ms,
        status: StepStatus::Pending,
        attempts: 0,
        started_at: None,
        finished_at: None,
        detail: None,
    };
    let has_program = plan
        .steps
        .first()
        .is_some_and(|s| s.params.contains_key("node"));
    if has_program {
        let start = plan.steps[0].params["node"].to_string();
        return (plan.steps.iter().map(state).collect(), start);
    }
    let n = plan.steps.len();
    let mut steps: Vec<StepState> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut st = state(s);
            st.index = i as i32;
            st.params.insert("node".into(), format!("step{i}"));
            st.params.insert("next".into(), format!("step{}", i + 1));
            st
        })
        .collect();
    let end = |i: usize, params: BTreeMap<String, String>, action: &str| StepState {
        index: i as i32,
        phase: Phase::PostRecovery,
        action: action.into(),
        target: plan.deployment_key.clone(),
        params,
        timeout_ms: 0,
        status: StepStatus::Pending,
        attempts: 0,
        started_at: None,
        finished_at: None,
        detail: None,
    };
    steps.push(end(
        n,
        BTreeMap::from([
            ("node".into(), format!("step{n}")),
            ("outcome".into(), "resolved".into()),
            ("message".into(), "every step done".into()),
        ]),
        "end",
    ));
    if plan.requires_approval {
        steps.push(end(
            n + 1,
            BTreeMap::from([
                ("node".into(), "approval".into()),
                ("next".into(), "step0".into()),
                ("timeout_secs".into(), "86400".into()),
            ]),
            "gate",
        ));
        return (steps, "approval".into());
    }
    (steps, "step0".into())
}

#[cfg(test)]
mod tests;
