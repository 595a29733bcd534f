//! The recovery state machine: what the next move is, decided from the state
//! before anything changes, and carrying it out; the program a plan carries.

use super::*;

/// What to do next, decided from the state before anything is changed.
pub(super) enum Next {
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

/// Enters `phase` if the recovery is not in it: the phase log is
/// chronological (a fallback may go back to stabilization, cleanup comes
/// after the report that led to the end).
pub(super) fn enter_phase(state: &mut RecoveryState, phase: Phase, now: Millis) {
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
pub(super) fn program_of(plan: &RecoveryPlan) -> (Vec<StepState>, String) {
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
        simulated: false,
        observed_metric: None,
        observed_value: None,
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
        simulated: false,
        observed_metric: None,
        observed_value: None,
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

/// Edges a failed step (or unhealthy check, or missed deadline) follows.
pub(super) const FALLBACK_EDGES: &[&str] = &["on_failure", "if_unhealthy", "on_deadline"];

/// How the detail of a step a constraint refused begins.
pub(super) const REFUSED: &str = "refused: ";

/// The node of the program's escalate branch (its first `escalate` step),
/// unless that is the step at `from` itself.
pub(super) fn escalation_of(state: &RecoveryState, from: usize) -> Option<String> {
    state
        .steps
        .iter()
        .enumerate()
        .filter(|(j, s)| *j != from && s.action == "escalate" && param(s, "cleanup_of").is_none())
        .min_by_key(|(_, s)| s.index)
        .and_then(|(_, s)| node_of(s).map(str::to_string))
}

impl Orchestrate {
    /// Decides the next move of the recovery of `key` from its state.
    pub(super) fn next_move(&self, key: &str, now: Millis) -> Next {
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
                    let refused = step
                        .detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with(REFUSED));
                    let fallback = FALLBACK_EDGES
                        .iter()
                        .find_map(|e| param(step, e))
                        .map(str::to_string)
                        // A step a constraint refused hands over to a person.
                        .or_else(|| refused.then(|| escalation_of(state, i)).flatten());
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

    pub(super) fn key_of(&self, state: &RecoveryState, i: usize) -> String {
        format!("{}/{}", state.recovery_id, state.steps[i].index)
    }

    /// Moves the recovery of `key` on until it waits for something or ends.
    pub(super) fn advance(&mut self, key: &str, now: Millis) -> Result<Vec<Action>, ProcessError> {
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
                            simulated: false,
                            observed_metric: None,
                            observed_value: None,
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
}
