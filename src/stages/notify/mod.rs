//! Notify: recovery outcomes and state in, one [`NotificationRecord`] per thing
//! people must hear about out: every outcome, and every recovery waiting for
//! approval. With a webhook configured each notification is POSTed (by the
//! runner's executor) and the record says whether delivery worked; without one
//! the record is the notification (channel `log`).
//!
//! For a recovery of a failure that came with a CI run on GitHub or GitLab,
//! notify also sets a commit status when the recovery starts (pending) and
//! when it ends (success or failure), describing the failure type and the
//! action, linked to the run; the final one is recorded like any notification.

use crate::domain::*;
use crate::stages::{
    decode_input, Action, CommitState, EffectRequest, EffectResult, InputRecord, OutputRecord,
    ProcessError, Processor, StageName,
};
use crate::timefmt::format_millis;
use crate::topics::Topics;
use serde_json::json;
use std::collections::{BTreeMap, HashSet, VecDeque};

/// Notification ids remembered to drop redelivered sources.
const REMEMBERED: usize = 50_000;

/// The notify stage.
pub struct Notify {
    topics: Topics,
    webhook: bool,
    sent: HashSet<String>,
    order: VecDeque<String>,
    pending: BTreeMap<String, NotificationRecord>,
    status_platforms: Vec<CiPlatform>,
    /// Commit statuses in flight, with the record to write when they finish.
    pending_status: BTreeMap<String, Option<NotificationRecord>>,
}

impl Notify {
    /// A notify stage; `webhook` says whether a webhook URL is configured.
    pub fn new(topics: Topics, webhook: bool) -> Self {
        Notify {
            topics,
            webhook,
            sent: HashSet::new(),
            order: VecDeque::new(),
            pending: BTreeMap::new(),
            status_platforms: Vec::new(),
            pending_status: BTreeMap::new(),
        }
    }

    /// Also set commit statuses on these platforms.
    pub fn with_commit_statuses(mut self, platforms: Vec<CiPlatform>) -> Self {
        self.status_platforms = platforms;
        self
    }

    /// The commit status effect for a recovery of a CI failure, once per
    /// recovery and state; `None` when there is no CI run to report to.
    fn commit_status(
        &mut self,
        ci: Option<&CiRef>,
        recovery_id: &str,
        state: CommitState,
        description: String,
        record: Option<NotificationRecord>,
    ) -> Option<Action> {
        let ci = ci?;
        let platform: CiPlatform = ci.platform.parse().ok()?;
        if !self.status_platforms.contains(&platform) {
            return None;
        }
        let (repository, sha) = (ci.repository.clone()?, ci.commit_sha.clone()?);
        let key_of = |s: CommitState| format!("{recovery_id}/status/{s:?}").to_ascii_lowercase();
        // State and outcome arrive on different topics: a late "pending" must
        // not overwrite the final status on the commit page.
        if state == CommitState::Pending
            && [CommitState::Success, CommitState::Failure]
                .iter()
                .any(|s| self.sent.contains(&key_of(*s)))
        {
            return None;
        }
        let key = key_of(state);
        if !self.remember(&key) {
            return None;
        }
        self.pending_status.insert(key.clone(), record);
        Some(Action::Execute(EffectRequest::CommitStatus {
            idempotency_key: key,
            platform,
            repository,
            sha,
            state,
            description,
            target_url: ci.url.clone(),
        }))
    }

    fn remember(&mut self, id: &str) -> bool {
        if !self.sent.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.sent.remove(&old);
            }
        }
        true
    }

    fn notify(
        &mut self,
        mut record: NotificationRecord,
        body: serde_json::Value,
    ) -> Result<Vec<Action>, ProcessError> {
        if !self.remember(&record.id) {
            return Ok(Vec::new());
        }
        if self.webhook {
            record.channel = "webhook".into();
            let key = record.id.clone();
            self.pending.insert(key.clone(), record);
            return Ok(vec![Action::Execute(EffectRequest::Notify {
                idempotency_key: key,
                body: body.to_string(),
            })]);
        }
        tracing::info!(deployment = %record.deployment_key, recovery = %record.recovery_id, "{}", record.message);
        Ok(vec![self.emit(&record)?])
    }

    fn emit(&self, record: &NotificationRecord) -> Result<Action, ProcessError> {
        Ok(Action::Emit(OutputRecord::encode(
            &self.topics.notifications,
            &record.deployment_key,
            Some(record.id.clone()),
            record,
        )?))
    }
}

/// The sentence people read about an outcome.
pub fn outcome_message(o: &RecoveryOutcome) -> String {
    format!(
        "{}: {} {} failure; {} {}{} in {:.1}s: {}",
        o.deployment_key,
        o.severity,
        o.failure_type,
        o.strategy,
        o.outcome,
        if o.dry_run { " (dry run)" } else { "" },
        (o.finished_at - o.started_at).max(0) as f64 / 1000.0,
        o.detail
    )
}

impl Processor for Notify {
    fn stage(&self) -> StageName {
        StageName::Notify
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.topics.outcomes.clone(), self.topics.state.clone()]
    }

    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        if input.topic == self.topics.state {
            if input.payload.is_none() {
                return Ok(Vec::new());
            }
            let state: RecoveryState = decode_input(input)?;
            if state.status == RecoveryStatus::Running {
                let description = format!(
                    "medic is recovering from a {} failure: {}{}",
                    state.failure_type,
                    state.strategy,
                    if state.dry_run { " (dry run)" } else { "" }
                );
                let action = self.commit_status(
                    state.ci.as_ref(),
                    &state.recovery_id,
                    CommitState::Pending,
                    description,
                    None,
                );
                return Ok(action.into_iter().collect());
            }
            if state.status != RecoveryStatus::AwaitingApproval {
                return Ok(Vec::new());
            }
            let message = format!(
                "{}: {} {} failure; {} waits for approval of recovery {} since {}",
                state.deployment_key,
                state.severity,
                state.failure_type,
                state.strategy,
                state.recovery_id,
                format_millis(state.started_at)
            );
            let record = NotificationRecord {
                id: format!("{}/approval_needed", state.recovery_id),
                recovery_id: state.recovery_id.clone(),
                deployment_key: state.deployment_key.clone(),
                channel: "log".into(),
                trigger: NotificationTrigger::ApprovalNeeded,
                status: DeliveryStatus::Delivered,
                attempts: 1,
                http_status: None,
                message: message.clone(),
                error: None,
                at: now,
            };
            let body = json!({
                "kind": "approval_needed",
                "text": message,
                "recovery_id": state.recovery_id,
                "deployment_key": state.deployment_key,
                "failure_type": state.failure_type,
                "severity": state.severity,
                "strategy": state.strategy,
            });
            return self.notify(record, body);
        }
        let outcome: RecoveryOutcome = decode_input(input)?;
        let message = outcome_message(&outcome);
        let record = NotificationRecord {
            id: format!("{}/outcome", outcome.recovery_id),
            recovery_id: outcome.recovery_id.clone(),
            deployment_key: outcome.deployment_key.clone(),
            channel: "log".into(),
            trigger: NotificationTrigger::Outcome,
            status: DeliveryStatus::Delivered,
            attempts: 1,
            http_status: None,
            message: message.clone(),
            error: None,
            at: now,
        };
        let body = json!({
            "kind": "outcome",
            "text": message,
            "recovery_id": outcome.recovery_id,
            "deployment_key": outcome.deployment_key,
            "failure_type": outcome.failure_type,
            "severity": outcome.severity,
            "strategy": outcome.strategy,
            "outcome": outcome.outcome,
            "dry_run": outcome.dry_run,
        });
        let mut actions = self.notify(record, body)?;
        let state = match outcome.outcome {
            Outcome::Succeeded => Some(CommitState::Success),
            Outcome::Failed | Outcome::Rejected => Some(CommitState::Failure),
            Outcome::Skipped => None,
        };
        if let Some(state) = state {
            let description = format!(
                "medic: {} {} failure; {} {}{}",
                outcome.severity,
                outcome.failure_type,
                outcome.strategy,
                outcome.outcome,
                if outcome.dry_run { " (dry run)" } else { "" }
            );
            let channel = match outcome.ci.as_ref().map(|c| c.platform.as_str()) {
                Some("gitlab_ci") => "gitlab_status",
                _ => "github_status",
            };
            let record = NotificationRecord {
                id: format!("{}/status", outcome.recovery_id),
                recovery_id: outcome.recovery_id.clone(),
                deployment_key: outcome.deployment_key.clone(),
                channel: channel.into(),
                trigger: NotificationTrigger::Outcome,
                status: DeliveryStatus::Delivered,
                attempts: 1,
                http_status: None,
                message: description.clone(),
                error: None,
                at: now,
            };
            actions.extend(self.commit_status(
                outcome.ci.as_ref(),
                &outcome.recovery_id,
                state,
                description,
                Some(record),
            ));
        }
        Ok(actions)
    }

    fn on_effect(
        &mut self,
        result: EffectResult,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let record = match self.pending_status.remove(&result.idempotency_key) {
            Some(record) => {
                if !result.success {
                    tracing::warn!(key = %result.idempotency_key, detail = %result.detail, "commit status not set");
                }
                match record {
                    Some(record) => record,
                    None => return Ok(Vec::new()),
                }
            }
            None => self
                .pending
                .remove(&result.idempotency_key)
                .ok_or_else(|| {
                    ProcessError::Fatal(format!(
                        "result for unknown notification {}",
                        result.idempotency_key
                    ))
                })?,
        };
        let record = NotificationRecord {
            status: if result.success {
                DeliveryStatus::Delivered
            } else {
                DeliveryStatus::Failed
            },
            attempts: result.attempts as i32,
            http_status: result.http_status.map(i32::from),
            error: (!result.success).then_some(result.detail),
            at: now,
            ..record
        };
        Ok(vec![self.emit(&record)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn outcome() -> RecoveryOutcome {
        RecoveryOutcome {
            recovery_id: "web/staging#1".into(),
            failure_id: "web/staging@1".into(),
            deployment_key: "web/staging".into(),
            service: "web".into(),
            environment: "staging".into(),
            failure_type: FailureType::Network,
            severity: Severity::Medium,
            strategy: "network_recovery".into(),
            outcome: Outcome::Succeeded,
            dry_run: true,
            started_at: 1_000,
            finished_at: 3_500,
            steps_total: 4,
            steps_succeeded: 4,
            detail: "4 of 4 steps recorded (dry run)".into(),
            ci: None,
            approver: None,
            actions: vec![],
        }
    }

    #[test]
    fn one_record_per_outcome_even_when_redelivered() {
        let topics = Topics::default();
        let mut n = Notify::new(topics.clone(), false);
        let bytes = codec::encode(&outcome()).expect("encodes");
        let rec = InputRecord {
            topic: &topics.outcomes,
            partition: 0,
            offset: 0,
            key: None,
            payload: Some(&bytes),
            timestamp: None,
        };
        let first = n.process(&rec, 9).expect("ok");
        assert_eq!(first.len(), 1);
        assert!(n.process(&rec, 9).expect("ok").is_empty());
        let Action::Emit(out) = &first[0] else {
            panic!()
        };
        let record: NotificationRecord =
            codec::decode(out.value.as_deref().expect("value")).expect("decodes");
        assert_eq!(record.message, "web/staging: medium network failure; network_recovery succeeded (dry run) in 2.5s: 4 of 4 steps recorded (dry run)");
        assert_eq!(record.channel, "log");
    }

    #[test]
    fn with_a_webhook_the_delivery_result_is_recorded() {
        let topics = Topics::default();
        let mut n = Notify::new(topics.clone(), true);
        let bytes = codec::encode(&outcome()).expect("encodes");
        let rec = InputRecord {
            topic: &topics.outcomes,
            partition: 0,
            offset: 0,
            key: None,
            payload: Some(&bytes),
            timestamp: None,
        };
        let actions = n.process(&rec, 9).expect("ok");
        let [Action::Execute(EffectRequest::Notify {
            idempotency_key,
            body,
        })] = actions.as_slice()
        else {
            panic!("{actions:?}")
        };
        assert!(body.contains("\"outcome\":\"succeeded\""), "{body}");
        let out = n
            .on_effect(
                EffectResult {
                    idempotency_key: idempotency_key.clone(),
                    success: false,
                    detail: "HTTP 500".into(),
                    attempts: 3,
                    http_status: Some(500),
                },
                10,
            )
            .expect("ok");
        let [Action::Emit(o)] = out.as_slice() else {
            panic!()
        };
        let record: NotificationRecord =
            codec::decode(o.value.as_deref().expect("v")).expect("decodes");
        assert_eq!(
            (record.status, record.attempts, record.http_status),
            (DeliveryStatus::Failed, 3, Some(500))
        );
    }

    #[test]
    fn a_late_running_state_does_not_overwrite_the_final_commit_status() {
        let topics = Topics::default();
        let mut n = Notify::new(topics.clone(), false)
            .with_commit_statuses(vec![CiPlatform::GithubActions]);
        let ci = CiRef {
            event_id: "e".into(),
            platform: "github_actions".into(),
            status: "failure".into(),
            pipeline: "CodeQL".into(),
            job: None,
            url: None,
            commit_sha: Some("3484a3fb816e0859fd6e1cea078d76385ff50625".into()),
            repository: Some("Codertocat/Hello-World".into()),
            run_id: Some("30433642".into()),
            job_id: None,
        };
        let outcome = RecoveryOutcome {
            ci: Some(ci.clone()),
            ..outcome()
        };
        let bytes = codec::encode(&outcome).expect("encodes");
        let rec = InputRecord {
            topic: &topics.outcomes,
            partition: 0,
            offset: 0,
            key: None,
            payload: Some(&bytes),
            timestamp: None,
        };
        let actions = n.process(&rec, 9).expect("ok");
        let states: Vec<CommitState> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Execute(EffectRequest::CommitStatus { state, .. }) => Some(*state),
                _ => None,
            })
            .collect();
        assert_eq!(states, [CommitState::Success]);

        let state = RecoveryState {
            recovery_id: outcome.recovery_id.clone(),
            failure_id: outcome.failure_id.clone(),
            deployment_key: outcome.deployment_key.clone(),
            service: "web".into(),
            environment: "staging".into(),
            failure_type: FailureType::Network,
            severity: Severity::Medium,
            strategy: "network_recovery".into(),
            status: RecoveryStatus::Running,
            dry_run: true,
            steps: vec![],
            started_at: 1,
            updated_at: 2,
            approver: None,
            ci: Some(ci),
            last_disruptive: Default::default(),
            attached_failures: vec![],
            cursor: None,
            waiting_until: None,
            phases: vec![],
        };
        let bytes = codec::encode(&state).expect("encodes");
        let rec = InputRecord {
            topic: &topics.state,
            partition: 0,
            offset: 1,
            key: None,
            payload: Some(&bytes),
            timestamp: None,
        };
        assert!(
            n.process(&rec, 10).expect("ok").is_empty(),
            "no pending after success"
        );
    }
}
