//! The records orchestrate emits: recovery state, outcomes and audit events.

use super::*;

impl Orchestrate {
    pub(super) fn emit_state(&self, key: &str) -> Result<Action, ProcessError> {
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

    pub(super) fn emit_outcome(&self, outcome: &RecoveryOutcome) -> Result<Action, ProcessError> {
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
    pub(super) fn audit(
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
            dry_run: step.map_or(self.config.dry_run.is_all(), |s| s.simulated),
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

    pub(super) fn step_audit(
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
