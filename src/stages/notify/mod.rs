//! Notify: recovery outcomes and state in, one [`NotificationRecord`] per
//! thing people must hear about and per channel out: every outcome, and
//! every approval gate a recovery waits at.
//!
//! Channels ([`Channel`], configured in `notify.channels`) each take some
//! environments, CI platforms, severities and events. The same recovery and
//! event reaches a channel once, however often its source record is
//! redelivered. A channel sends at most `rate_limit.max` messages per window;
//! the rest are held and sent as one digest when the window ends, each held
//! notification recorded with the digest's id. Delivery (Slack, signed
//! webhook, e-mail) is the executor's: the record says whether it worked,
//! after how many attempts and why earlier attempts failed. With no channel
//! configured the record itself is the notification (channel `log`).
//!
//! For a recovery of a failure that came with a CI run on GitHub or GitLab,
//! notify also sets a commit status when the recovery starts (pending) and
//! when it ends (success or failure), describing the failure type and the
//! action, linked to the run; the final one is recorded like any notification.

pub mod config;
mod message;
mod status;

pub use message::{
    approval_command, digest, shell_quote, usable_link, About, Message, MessageKind, DIGEST_LINES,
};
pub use status::{cut, reportable, StatusReport, RECOVERING_TAG};

use crate::domain::*;
use crate::stages::{
    decode_input, Action, CommitState, EffectRequest, EffectResult, InputRecord, OutputRecord,
    ProcessError, Processor, StageName,
};
use crate::timefmt::format_millis;
use crate::topics::Topics;
use config::{ChannelConfig, ChannelKind, RateLimit};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Notification ids remembered to drop redelivered sources.
const REMEMBERED: usize = 50_000;

/// Where notifications go, and which ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Configured name.
    pub name: String,
    /// How messages are delivered.
    pub kind: ChannelKind,
    /// Environments heard about; empty: all.
    pub environments: Vec<String>,
    /// CI platforms heard about; empty: all, including failures from logs.
    pub platforms: Vec<CiPlatform>,
    /// Least severity heard about.
    pub min_severity: Option<Severity>,
    /// Events heard about.
    pub events: Vec<NotificationTrigger>,
    /// Messages per window.
    pub rate_limit: RateLimit,
}

impl Channel {
    /// The channel a configuration entry describes.
    pub fn from_config(c: &ChannelConfig) -> Channel {
        Channel {
            name: c.name.clone(),
            kind: c.kind,
            environments: c.environments.clone(),
            platforms: c.platforms.clone(),
            min_severity: c.min_severity,
            events: c.events.clone(),
            rate_limit: c.rate_limit,
        }
    }

    fn wants(&self, trigger: NotificationTrigger, about: &About, ci: Option<&CiRef>) -> bool {
        let platform = ci.and_then(|c| c.platform.parse::<CiPlatform>().ok());
        self.events.contains(&trigger)
            && (self.environments.is_empty()
                || self
                    .environments
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&about.environment)))
            && (self.platforms.is_empty() || platform.is_some_and(|p| self.platforms.contains(&p)))
            && (self.min_severity.is_none_or(|m| about.severity <= m)
                // A success resolves the deployment's open page whatever
                // its own severity: the page came from a worse failure.
                || (self.kind.pages() && about.outcome == Some(Outcome::Succeeded)))
    }
}

/// One channel's current rate-limit window.
#[derive(Debug)]
struct Window {
    channel: Channel,
    started: Millis,
    sent: u32,
    held: Vec<NotificationRecord>,
}

/// The notify stage.
pub struct Notify {
    topics: Topics,
    windows: Vec<Window>,
    link_url: Option<String>,
    sent: HashSet<String>,
    order: VecDeque<String>,
    pending: BTreeMap<String, Vec<NotificationRecord>>,
    /// The last phase seen per running recovery, for messages about outcomes.
    phases: HashMap<String, Phase>,
    status_platforms: Vec<CiPlatform>,
    /// Commit statuses in flight, with the record to write when they finish.
    pending_status: BTreeMap<String, Option<NotificationRecord>>,
}

impl Notify {
    /// A notify stage delivering on `channels` (none: records only).
    pub fn new(topics: Topics, channels: Vec<Channel>) -> Self {
        Notify {
            topics,
            windows: channels
                .into_iter()
                .map(|channel| Window {
                    channel,
                    started: Millis::MIN,
                    sent: 0,
                    held: Vec::new(),
                })
                .collect(),
            link_url: None,
            sent: HashSet::new(),
            order: VecDeque::new(),
            pending: BTreeMap::new(),
            phases: HashMap::new(),
            status_platforms: Vec::new(),
            pending_status: BTreeMap::new(),
        }
    }

    /// Link messages about failures without a CI run to `url`.
    pub fn with_link(mut self, url: Option<String>) -> Self {
        self.link_url = url;
        self
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
        report: StatusReport,
        record: Option<NotificationRecord>,
    ) -> Option<Action> {
        let ci = ci?;
        let platform: CiPlatform = ci.platform.parse().ok()?;
        if !self.status_platforms.contains(&platform) || !reportable(platform, ci) {
            return None;
        }
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
            ci: Box::new(ci.clone()),
            state,
            report: Box::new(report),
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

    /// Notifies every channel that wants `trigger` for this recovery, once
    /// per `event` (`recovery_id/...`) and channel.
    fn notify(
        &mut self,
        trigger: NotificationTrigger,
        event: &str,
        message: Message,
        ci: Option<&CiRef>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let message = Arc::new(message);
        let Some(about) = message.about.as_ref() else {
            return Ok(Vec::new());
        };
        let record = |id: String, channel: &str| NotificationRecord {
            id,
            recovery_id: about.recovery_id.clone(),
            deployment_key: about.deployment_key.clone(),
            channel: channel.to_string(),
            trigger,
            status: DeliveryStatus::Delivered,
            attempts: 0,
            http_status: None,
            message: message.text.clone(),
            error: None,
            at: now,
            phase: about.phase,
            retries: Vec::new(),
            digest: None,
        };
        if self.windows.is_empty() {
            let record = record(format!("{event}/log"), "log");
            if !self.remember(&record.id) {
                return Ok(Vec::new());
            }
            tracing::info!(deployment = %record.deployment_key, recovery = %record.recovery_id, "{}", record.message);
            return Ok(vec![self.emit(&record)?]);
        }
        let mut actions = Vec::new();
        for i in 0..self.windows.len() {
            let channel = &self.windows[i].channel;
            if !channel.wants(trigger, about, ci) {
                continue;
            }
            let channel = channel.name.clone();
            let record = record(format!("{event}/{channel}"), &channel);
            if !self.remember(&record.id) {
                continue;
            }
            actions.extend(self.roll(i, now));
            let window = &mut self.windows[i];
            // A paging channel's messages are never held for a digest: the
            // service groups them per deployment already, and a held
            // resolve would leave the deployment's incident open.
            if window.sent >= window.channel.rate_limit.max && !window.channel.kind.pages() {
                window.held.push(record);
                continue;
            }
            window.sent += 1;
            let key = record.id.clone();
            self.pending.insert(key.clone(), vec![record]);
            actions.push(Action::Execute(EffectRequest::Notify {
                idempotency_key: key,
                channel,
                message: message.clone(),
            }));
        }
        Ok(actions)
    }

    /// Starts a new window on channel `i` when the current one is over, and
    /// sends what the old one held back as a digest; each held notification
    /// is recorded with the digest's id.
    fn roll(&mut self, i: usize, now: Millis) -> Option<Action> {
        let window = &mut self.windows[i];
        let length = (window.channel.rate_limit.per_seconds as i64).saturating_mul(1_000);
        if now < window.started.saturating_add(length) {
            return None;
        }
        let mut held = std::mem::take(&mut window.held);
        let opened = window.started;
        window.started = now;
        window.sent = 0;
        if held.is_empty() {
            return None;
        }
        window.sent = 1;
        let channel = window.channel.name.clone();
        let key = format!("digest/{channel}/{}", format_millis(opened));
        let lines: Vec<String> = held.iter().map(|r| r.message.clone()).collect();
        let limit = window.channel.rate_limit;
        let message = digest(&channel, limit.max, limit.per_seconds, &lines);
        for record in &mut held {
            record.digest = Some(key.clone());
        }
        self.pending.insert(key.clone(), held);
        Some(Action::Execute(EffectRequest::Notify {
            idempotency_key: key,
            channel,
            message: Arc::new(message),
        }))
    }

    fn emit(&self, record: &NotificationRecord) -> Result<Action, ProcessError> {
        Ok(Action::Emit(OutputRecord::encode(
            &self.topics.notifications,
            &record.deployment_key,
            Some(record.id.clone()),
            record,
        )?))
    }

    /// The link for a recovery: its CI run, or the configured link.
    fn link(&self, ci: Option<&CiRef>) -> Option<String> {
        usable_link(ci.and_then(|c| c.url.as_deref())).or_else(|| self.link_url.clone())
    }

    fn on_state(&mut self, state: RecoveryState, now: Millis) -> Result<Vec<Action>, ProcessError> {
        crate::telemetry::record_recovery(&state.recovery_id);
        if let Some(span) = state.phases.last() {
            if self.phases.len() >= REMEMBERED {
                self.phases.clear();
            }
            self.phases.insert(state.recovery_id.clone(), span.phase);
        }
        if state.status == RecoveryStatus::Running {
            let action = self.commit_status(
                state.ci.as_ref(),
                &state.recovery_id,
                CommitState::Pending,
                StatusReport::running(&state),
                None,
            );
            return Ok(action.into_iter().collect());
        }
        if state.status != RecoveryStatus::AwaitingApproval {
            return Ok(Vec::new());
        }
        let text = format!(
            "{}: {} {} failure; {} waits for approval of recovery {} since {}",
            state.deployment_key,
            state.severity,
            state.failure_type,
            state.strategy,
            state.recovery_id,
            format_millis(state.started_at)
        );
        let about = About {
            recovery_id: state.recovery_id.clone(),
            deployment_key: state.deployment_key.clone(),
            service: state.service.clone(),
            environment: state.environment.clone(),
            failure_type: state.failure_type,
            severity: state.severity,
            strategy: state.strategy.clone(),
            phase: state.phases.last().map(|s| s.phase),
            outcome: None,
            dry_run: state.dry_run,
            link: self.link(state.ci.as_ref()),
            approval_command: Some(approval_command(&state.recovery_id)),
        };
        // Each gate of a recovery is its own event.
        let gate = state.cursor.as_deref().unwrap_or("gate");
        let event = format!("{}/approval_needed/{gate}", state.recovery_id);
        let message = Message {
            kind: MessageKind::ApprovalNeeded,
            text,
            about: Some(about),
            digest: Vec::new(),
            held: 0,
        };
        self.notify(
            NotificationTrigger::ApprovalNeeded,
            &event,
            message,
            state.ci.as_ref(),
            now,
        )
    }

    fn on_outcome(
        &mut self,
        outcome: RecoveryOutcome,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        crate::telemetry::record_recovery(&outcome.recovery_id);
        let phase = self.phases.remove(&outcome.recovery_id);
        let about = About {
            recovery_id: outcome.recovery_id.clone(),
            deployment_key: outcome.deployment_key.clone(),
            service: outcome.service.clone(),
            environment: outcome.environment.clone(),
            failure_type: outcome.failure_type,
            severity: outcome.severity,
            strategy: outcome.strategy.clone(),
            phase,
            outcome: Some(outcome.outcome),
            dry_run: outcome.dry_run,
            link: self.link(outcome.ci.as_ref()),
            approval_command: None,
        };
        let message = Message {
            kind: MessageKind::Outcome,
            text: outcome_message(&outcome),
            about: Some(about),
            digest: Vec::new(),
            held: 0,
        };
        let event = format!("{}/outcome", outcome.recovery_id);
        let mut actions = self.notify(
            NotificationTrigger::Outcome,
            &event,
            message,
            outcome.ci.as_ref(),
            now,
        )?;
        let state = match outcome.outcome {
            Outcome::Succeeded => Some(CommitState::Success),
            Outcome::Failed | Outcome::Rejected => Some(CommitState::Failure),
            Outcome::Skipped => None,
        };
        if let Some(state) = state {
            let report = StatusReport::finished(&outcome);
            let channel = config::status_field(
                outcome
                    .ci
                    .as_ref()
                    .and_then(|c| c.platform.parse::<CiPlatform>().ok()),
            );
            let record = NotificationRecord {
                id: format!("{}/status", outcome.recovery_id),
                recovery_id: outcome.recovery_id.clone(),
                deployment_key: outcome.deployment_key.clone(),
                channel: channel.into(),
                trigger: NotificationTrigger::Outcome,
                status: DeliveryStatus::Delivered,
                attempts: 1,
                http_status: None,
                message: report.line(usize::MAX),
                error: None,
                at: now,
                phase,
                retries: Vec::new(),
                digest: None,
            };
            actions.extend(self.commit_status(
                outcome.ci.as_ref(),
                &outcome.recovery_id,
                state,
                report,
                Some(record),
            ));
        }
        Ok(actions)
    }
}

/// What of a recovery was only recorded: ` (dry run)`, ` (simulated:
/// shift_traffic)`, or nothing when every step really ran.
pub fn simulated_note(o: &RecoveryOutcome) -> String {
    if o.dry_run {
        " (dry run)".into()
    } else if o.simulated_steps.is_empty() {
        String::new()
    } else {
        format!(" (simulated: {})", o.simulated_steps.join(", "))
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
        simulated_note(o),
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
            return self.on_state(decode_input(input)?, now);
        }
        self.on_outcome(decode_input(input)?, now)
    }

    fn on_effect(
        &mut self,
        result: EffectResult,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let records = match self.pending_status.remove(&result.idempotency_key) {
            Some(record) => {
                if !result.success {
                    tracing::warn!(key = %result.idempotency_key, detail = %result.detail, "commit status not set");
                }
                match record {
                    Some(record) => vec![record],
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
        records
            .into_iter()
            .map(|record| {
                self.emit(&NotificationRecord {
                    status: if result.success {
                        DeliveryStatus::Delivered
                    } else {
                        DeliveryStatus::Failed
                    },
                    attempts: result.attempts as i32,
                    http_status: result.http_status.map(i32::from),
                    error: (!result.success).then(|| result.detail.clone()),
                    retries: result.retries.clone(),
                    at: now,
                    ..record
                })
            })
            .collect()
    }

    fn on_timer(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let mut digests = Vec::new();
        for i in 0..self.windows.len() {
            // A window that held nothing stays open until its next message.
            if !self.windows[i].held.is_empty() {
                digests.extend(self.roll(i, now));
            }
        }
        Ok(digests)
    }
}

#[cfg(test)]
mod tests;
