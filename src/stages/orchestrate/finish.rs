//! How a recovery ends (outcome, cleanup of temporary measures, the
//! breaker's count) and the timers that move waiting recoveries on.

use super::*;

/// How the detail of a gate or hold nobody answered begins.
const NO_DECISION: &str = "no decision within";

/// Where a gate or hold nobody answered goes.
enum Then {
    /// To this node (the gate's `on_timeout`, or the escalate branch).
    Go(String),
    /// On as if approved.
    Proceed,
    /// To the end, failed: `escalated` or `aborted`.
    End(&'static str),
}

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
        // Steps that ran: not control steps, not steps a constraint refused.
        let ran = |s: &&StepState| {
            !CONTROL_ACTIONS.contains(&s.action.as_str())
                && matches!(s.status, StepStatus::Succeeded | StepStatus::Failed)
                && !s.detail.as_deref().is_some_and(|d| d.starts_with(REFUSED))
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
        // Why a recovery ended where it did, when a hold or constraint sent it there.
        let because: Vec<String> = state
            .steps
            .iter()
            .filter_map(|s| {
                let d = s.detail.as_deref()?;
                (d.starts_with(REFUSED) || d.starts_with(NO_DECISION)).then(|| {
                    match node_of(s).filter(|n| *n != s.action) {
                        Some(node) => format!("{} {node}: {d}", s.action),
                        None => format!("{}: {d}", s.action),
                    }
                })
            })
            // Said already when the hold or refusal ended the recovery itself.
            .filter(|b| !detail.contains(b.as_str()))
            .collect();
        let left = left_in_place(state);
        let mut detail = detail;
        if outcome != Outcome::Succeeded && !because.is_empty() {
            detail = format!("{detail}; because {}", because.join("; "));
        }
        if !left.is_empty() {
            detail = format!("{detail}; left in place for a person: {}", left.join(", "));
        }
        let readonly_acceptable = self
            .config
            .constraints
            .get(&state.environment)
            .is_none_or(|c| c.readonly_mode_acceptable);
        let metrics = metrics_of(
            state,
            outcome,
            now,
            readonly_acceptable,
            &self.config.error_rate_metric,
            &|s| ran(&s),
        );
        let done: Vec<String> = state
            .steps
            .iter()
            .filter(ran)
            .filter(|s| s.status == StepStatus::Succeeded && !s.simulated)
            .map(|s| s.action.clone())
            .collect();
        let advice = advise(&Finished {
            failure_type: state.failure_type,
            transient: state.transient,
            outcome,
            done: &done,
            dry_run: state.dry_run,
            simulated: &simulated,
            left: &left,
            escalated: done.iter().any(|a| a == "escalate"),
        });
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
            metrics: Some(metrics),
            should_retry_deployment: advice.should_retry_deployment,
            recommendations: advice.recommendations,
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

    /// Nobody answered the gate or hold at position `i` in time: the gate's
    /// `on_timeout`, else `orchestrate.on_hold_timeout` (escalate: the
    /// tree's escalate branch; proceed: on as if approved; abort: the end).
    fn hold_expired(
        &mut self,
        key: &str,
        i: usize,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let policy = self.config.on_hold_timeout;
        let hold_secs = self.config.hold_timeout_secs;
        let Some(state) = self.recoveries.get_mut(key) else {
            return Ok(Vec::new());
        };
        let escalation = escalation_of(state, i);
        let step = &mut state.steps[i];
        let gate = step.action == "gate";
        let secs = if gate {
            param(step, "timeout_secs").unwrap_or("?").to_string()
        } else {
            hold_secs.to_string()
        };
        let on_timeout = param(step, "on_timeout").map(str::to_string);
        let what = match (gate, node_of(step)) {
            (true, Some(node)) => format!("gate {node}"),
            (_, node) => format!("hold before {} ({})", step.action, node.unwrap_or("?")),
        };
        let (then, said) = match (on_timeout, policy) {
            (Some(t), _) => {
                let said = format!("going to {t}");
                (Then::Go(t), said)
            }
            (None, HoldPolicy::Escalate) => match escalation {
                Some(e) => {
                    let said = format!("escalating ({e})");
                    (Then::Go(e), said)
                }
                None => (Then::End("escalated"), "the recovery ends escalated".into()),
            },
            (None, HoldPolicy::Proceed) => (
                Then::Proceed,
                "going on as if approved (on_hold_timeout: proceed)".into(),
            ),
            (None, HoldPolicy::Abort) => (
                Then::End("aborted"),
                "the recovery ends (on_hold_timeout: abort)".into(),
            ),
        };
        let detail = format!("{what}: no decision within {secs} s, {said}");
        let proceed = matches!(then, Then::Proceed);
        // A gate that proceeds is passed; a hold that proceeds runs its step.
        step.status = match (gate, proceed) {
            (true, true) => StepStatus::Succeeded,
            (true, false) => StepStatus::Failed,
            (false, true) => step.status,
            (false, false) => StepStatus::Skipped,
        };
        if gate {
            step.finished_at = Some(now);
        }
        step.detail = Some(format!("{NO_DECISION} {secs} s"));
        let step = step.clone();
        state.status = RecoveryStatus::Running;
        state.waiting_until = None;
        state.updated_at = now;
        if proceed {
            state.approver = Some(format!(
                "{NO_APPROVER}: no decision within {secs} s, on_hold_timeout: proceed"
            ));
        }
        let recovery_id = state.recovery_id.clone();
        let mut actions = vec![self.step_audit(
            &recovery_id,
            key,
            &step,
            AuditEvent::Skipped,
            detail.clone(),
            now,
        )?];
        match then {
            Then::Go(node) => {
                if let Some(state) = self.recoveries.get_mut(key) {
                    state.cursor = Some(node);
                }
                actions.extend(self.advance(key, now)?);
            }
            Then::Proceed => actions.extend(self.advance(key, now)?),
            Then::End(how) => actions.extend(self.finish(
                key,
                Outcome::Failed,
                format!("{how}: {detail}"),
                now,
            )?),
        }
        Ok(actions)
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
                (RecoveryStatus::AwaitingApproval, Some(i)) => {
                    actions.extend(self.hold_expired(&key, i, now)?);
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
