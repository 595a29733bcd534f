//! Shadow: a candidate policy on live failures, acting on nothing.
//!
//! `medic run shadow` consumes `medic.failures` in its own consumer group,
//! plans each failure with the candidate policy (`shadow.policy_files`) and
//! walks the plan with the orchestrator's own code, but every step is
//! answered here as recorded-not-executed: no executor is ever called. Gates
//! are passed as if approved (the outcome names `shadow (auto-approved)` as
//! approver) so the rest of the path is seen; waits wait. Each recovery's
//! outcome goes to `medic.shadow.outcomes`, next to the live one on
//! `medic.recovery.outcomes`, so a policy change can be watched on real
//! traffic before it acts. Shadow keeps no changelog: recoveries in flight
//! when it restarts are not finished.

use crate::domain::{Approval, ApprovalDecision, CategorizedFailure, Millis, RecoveryStatus};
use crate::stages::decide::config::DecideConfig;
use crate::stages::decide::{policy::Policy, Decide};
use crate::stages::orchestrate::config::OrchestrateConfig;
use crate::stages::orchestrate::Orchestrate;
use crate::stages::{
    decode_input, Action, EffectRequest, EffectResult, InputRecord, ProcessError, Processor,
    StageName,
};
use crate::topics::Topics;
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

/// The `shadow` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// Policy files of the candidate policy, applied over the built-in one
    /// (not over `decide.policy_files`: list those too if the candidate keeps them).
    pub policy_files: Vec<PathBuf>,
}

/// Who passes the gates in shadow mode.
pub const SHADOW_APPROVER: &str = "shadow (auto-approved)";

/// The shadow stage.
pub struct Shadow {
    topics: Topics,
    decide: Decide,
    orchestrate: Orchestrate,
}

impl Shadow {
    /// A shadow stage planning with `candidate`.
    pub fn new(
        topics: Topics,
        decide: DecideConfig,
        orchestrate: OrchestrateConfig,
        candidate: Arc<Policy>,
    ) -> Shadow {
        let orchestrate = OrchestrateConfig {
            dry_run: crate::stages::orchestrate::config::DryRun::All,
            ..orchestrate
        };
        Shadow {
            decide: Decide::new(topics.clone(), decide, candidate),
            orchestrate: Orchestrate::new(topics.clone(), orchestrate),
            topics,
        }
    }

    /// Runs the inner orchestrator's actions to rest: steps are answered as
    /// recorded, gates approved, outcomes renamed to the shadow topic, all
    /// else dropped.
    fn settle(&mut self, actions: Vec<Action>, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let mut queue: VecDeque<Action> = actions.into();
        let mut out = Vec::new();
        loop {
            while let Some(action) = queue.pop_front() {
                match action {
                    Action::Emit(mut record) if record.topic == self.topics.outcomes => {
                        record.topic.clone_from(&self.topics.shadow_outcomes);
                        // Not a live recovery: not counted as one.
                        record.observation = None;
                        out.push(Action::Emit(record));
                    }
                    Action::Emit(_) => {}
                    Action::Execute(EffectRequest::RecoveryStep {
                        idempotency_key, ..
                    }) => queue.extend(self.orchestrate.on_effect(
                        EffectResult {
                            idempotency_key,
                            success: true,
                            detail: "shadow: recorded, not executed".into(),
                            attempts: 1,
                            http_status: None,
                            retries: Vec::new(),
                            observed: None,
                        },
                        now,
                    )?),
                    Action::Execute(_) => {}
                }
            }
            let waiting: Vec<String> = self
                .orchestrate
                .recoveries()
                .values()
                .filter(|s| s.status == RecoveryStatus::AwaitingApproval)
                .map(|s| s.recovery_id.clone())
                .collect();
            if waiting.is_empty() {
                return Ok(out);
            }
            for recovery_id in waiting {
                let approval = Approval {
                    recovery_id,
                    decision: ApprovalDecision::Approved,
                    approver: SHADOW_APPROVER.into(),
                    reason: Some("shadow mode passes every gate".into()),
                    decided_at: now,
                };
                queue.extend(self.orchestrate.on_approval(&approval, now)?);
            }
        }
    }
}

impl Processor for Shadow {
    fn stage(&self) -> StageName {
        StageName::Shadow
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.topics.failures.clone()]
    }

    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let failure: CategorizedFailure = decode_input(input)?;
        let plan = self.decide.plan(&failure, now);
        let actions = self.orchestrate.on_plan(&plan, now)?;
        self.settle(actions, now)
    }

    fn on_timer(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let actions = self.orchestrate.on_timer(now)?;
        self.settle(actions, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FailureType, Outcome, RecoveryOutcome, Severity};

    #[test]
    fn shadow_outcomes_go_to_their_own_topic_and_nothing_is_executed() {
        let topics = Topics::default();
        let mut shadow = Shadow::new(
            topics.clone(),
            DecideConfig::default(),
            OrchestrateConfig {
                dry_run: false.into(),
                ..OrchestrateConfig::default()
            },
            Arc::new(Policy::default_policy()),
        );
        let failure = crate::stages::decide::test_failure(
            FailureType::Application,
            Severity::High,
            "production",
            false,
        );
        let bytes = crate::codec::encode(&failure).expect("encodes");
        let input = InputRecord {
            topic: &topics.failures,
            partition: 0,
            offset: 0,
            key: Some(b"svc/production"),
            payload: Some(&bytes),
            timestamp: None,
        };
        let out = shadow.process(&input, 10).expect("ok");
        assert!(
            out.iter().all(|a| matches!(a, Action::Emit(_))),
            "no effect reaches the runner"
        );
        let outcomes: Vec<RecoveryOutcome> = out
            .iter()
            .filter_map(|a| match a {
                Action::Emit(r) => {
                    assert_eq!(r.topic, topics.shadow_outcomes);
                    crate::codec::decode(r.value.as_deref().expect("value")).ok()
                }
                _ => None,
            })
            .collect();
        assert_eq!(outcomes.len(), 1);
        let o = &outcomes[0];
        assert_eq!(o.outcome, Outcome::Succeeded);
        assert!(
            o.dry_run,
            "forced to dry run whatever the configuration says"
        );
        assert_eq!(
            o.approver.as_deref(),
            Some(SHADOW_APPROVER),
            "the production gate was passed"
        );
        assert_eq!(
            o.actions,
            [
                "notify",
                "rollback_deployment",
                "run_health_check",
                "notify"
            ]
        );
    }
}
