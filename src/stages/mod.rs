//! The five stages and the contract between a stage and the Kafka runner.
//!
//! A stage is a [`Processor`]: it turns one decoded input record into
//! [`Action`]s, given the current time as an argument. It never touches Kafka,
//! a clock, the network or the disk, so the same code runs under the runner in
//! production, in unit tests with a test clock, and in replays. Side effects are
//! requested as [`Action::Execute`] and carried out by an executor that the
//! runner calls; their results come back through [`Processor::on_effect`].

pub mod categorize;
pub mod decide;
pub mod ingest;
pub mod notify;
pub mod orchestrate;
pub mod shadow;

use crate::codec::{self, AvroRecord};
use crate::domain::{CiPlatform, Millis, PlanStep};
use std::fmt;

/// The stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageName {
    /// Raw logs and CI events to signals.
    Ingest,
    /// Signals to categorized failures.
    Categorize,
    /// Failures to recovery plans.
    Decide,
    /// Plans to recovery state, outcomes and audit records.
    Orchestrate,
    /// Outcomes and state to notifications.
    Notify,
    /// A candidate policy on live failures, in dry run (not part of `all`).
    Shadow,
}

impl StageName {
    /// Every stage, in pipeline order.
    pub const ALL: [StageName; 5] = [
        StageName::Ingest,
        StageName::Categorize,
        StageName::Decide,
        StageName::Orchestrate,
        StageName::Notify,
    ];

    /// Lower-case name, as used in group ids and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Ingest => "ingest",
            StageName::Categorize => "categorize",
            StageName::Decide => "decide",
            StageName::Orchestrate => "orchestrate",
            StageName::Notify => "notify",
            StageName::Shadow => "shadow",
        }
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One consumed record, as the runner hands it to a stage.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value; `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    /// Record timestamp, milliseconds.
    pub timestamp: Option<Millis>,
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key: the deployment key.
    pub key: String,
    /// Encoded value; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record id, sent as the `medic-id` header so that consumers can drop
    /// redelivered duplicates in at-least-once mode.
    pub id: Option<String>,
    /// What the record says, for the metrics (counted when it is produced).
    pub observation: Option<Observation>,
}

/// What a produced record tells the metrics, set by the stage that made it
/// so that nobody decodes it again to count it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A categorized failure.
    Failure {
        /// Its type.
        failure_type: crate::domain::FailureType,
        /// Its severity.
        severity: crate::domain::Severity,
    },
    /// A finished recovery.
    Recovery {
        /// Its strategy.
        strategy: String,
        /// How it ended.
        outcome: crate::domain::Outcome,
        /// From the failure's first signal to the outcome, when it succeeded.
        time_to_recover_ms: Option<Millis>,
    },
}

impl OutputRecord {
    /// Encodes `value` for `topic`.
    pub fn encode<T: AvroRecord>(
        topic: &str,
        key: &str,
        id: Option<String>,
        value: &T,
    ) -> Result<OutputRecord, ProcessError> {
        let bytes = codec::encode(value).map_err(|e| ProcessError::Fatal(e.to_string()))?;
        Ok(OutputRecord {
            topic: topic.to_string(),
            key: key.to_string(),
            value: Some(bytes),
            id,
            observation: None,
        })
    }

    /// The record with what it says, for the metrics.
    pub fn observed(mut self, observation: Observation) -> OutputRecord {
        self.observation = Some(observation);
        self
    }

    /// A tombstone for `key` on a compacted topic.
    pub fn tombstone(topic: &str, key: &str) -> OutputRecord {
        OutputRecord {
            topic: topic.to_string(),
            key: key.to_string(),
            value: None,
            observation: None,
            id: None,
        }
    }
}

/// What a stage wants done, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Produce a record.
    Emit(OutputRecord),
    /// Make every earlier output durable, then carry out a side effect and feed
    /// its result to [`Processor::on_effect`].
    Execute(EffectRequest),
}

/// A side effect a stage asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum EffectRequest {
    /// Carry out one recovery step.
    RecoveryStep {
        /// `recovery_id/step`: the executor must treat a repeat as the same call.
        idempotency_key: String,
        /// The recovery.
        recovery_id: String,
        /// The deployment it acts on.
        deployment_key: String,
        /// Its service.
        service: String,
        /// Its environment.
        environment: String,
        /// The step.
        step: PlanStep,
        /// The CI run behind the failure, when there was one.
        ci: Option<Box<crate::domain::CiRef>>,
        /// What failed and how it is recovered, for executors that tell people.
        context: Option<Box<StepContext>>,
        /// Only describe what would happen.
        dry_run: bool,
    },
    /// Tell the CI run behind the failure what medic is doing about it: a
    /// commit status (GitHub, GitLab), a build description (Jenkins) or
    /// build tags (Azure DevOps).
    CommitStatus {
        /// `recovery_id/status/<state>`.
        idempotency_key: String,
        /// The platform that ran the build.
        platform: CiPlatform,
        /// The run: repository, commit, build id and URL.
        ci: Box<crate::domain::CiRef>,
        /// The state to set.
        state: CommitState,
        /// What to say.
        report: Box<notify::StatusReport>,
    },
    /// Deliver a notification on one configured channel.
    Notify {
        /// Notification id (`recovery_id/event/channel`, or the digest's id).
        idempotency_key: String,
        /// The channel's configured name.
        channel: String,
        /// What to say; each sink renders it in its own format.
        message: std::sync::Arc<notify::Message>,
    },
}

impl EffectRequest {
    /// The idempotency key.
    pub fn key(&self) -> &str {
        match self {
            EffectRequest::RecoveryStep {
                idempotency_key, ..
            }
            | EffectRequest::Notify {
                idempotency_key, ..
            }
            | EffectRequest::CommitStatus {
                idempotency_key, ..
            } => idempotency_key,
        }
    }
}

/// The failure behind a recovery step and the strategy recovering it: what
/// an executor that tells people (an escalation, a notification) says.
#[derive(Debug, Clone, PartialEq)]
pub struct StepContext {
    /// Failure type.
    pub failure_type: crate::domain::FailureType,
    /// Severity.
    pub severity: crate::domain::Severity,
    /// Recovery strategy.
    pub strategy: String,
}

/// A commit status medic sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    /// The recovery is running.
    Pending,
    /// The recovery succeeded.
    Success,
    /// The recovery failed or was rejected.
    Failure,
}

/// A value a check measured: the metric's name and its latest value (the
/// worst over the series the query returned).
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The metric or health check, as the tree names it.
    pub metric: String,
    /// What it measured.
    pub value: f64,
}

/// What came of a side effect.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectResult {
    /// The request's idempotency key.
    pub idempotency_key: String,
    /// Whether it worked.
    pub success: bool,
    /// What happened, for people.
    pub detail: String,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last attempt, for HTTP effects.
    pub http_status: Option<u16>,
    /// Why each attempt before the last failed (the retries), in order.
    pub retries: Vec<String>,
    /// What a check measured, when the step was one.
    pub observed: Option<Measured>,
}

/// Why a stage could not handle a record. The runner's response differs:
/// invalid records are dead-lettered and skipped, transient failures retried,
/// fatal ones stop the stage without committing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    /// The bytes do not decode.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// Decoded, but unusable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Might work if tried again.
    #[error("transient: {0}")]
    Transient(String),
    /// Continuing would be wrong.
    #[error("fatal: {0}")]
    Fatal(String),
}

/// A stage's logic, free of I/O. See the module documentation.
pub trait Processor: Send {
    /// Which stage this is.
    fn stage(&self) -> StageName;

    /// Topics to consume.
    fn input_topics(&self) -> Vec<String>;

    /// Changelog topics to read back, for the assigned partition numbers,
    /// before any input is handed over.
    fn state_topics(&self) -> Vec<String> {
        Vec::new()
    }

    /// Forgets all state: called before a restore.
    fn reset(&mut self) {}

    /// Applies one changelog record during restore (`None` is a tombstone).
    fn restore(
        &mut self,
        _topic: &str,
        _key: &[u8],
        _payload: Option<&[u8]>,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    /// Handles one input record.
    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError>;

    /// Whether the runner may carry out this stage's effects concurrently
    /// and go on with other records meanwhile. Only for a stage whose state
    /// changelog records, before it asks for an effect, everything needed to
    /// resume after a crash: the input's offset may be committed before the
    /// result comes back, and results arrive in any order.
    fn concurrent_effects(&self) -> bool {
        false
    }

    /// Receives the result of an [`Action::Execute`].
    fn on_effect(
        &mut self,
        result: EffectResult,
        _now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        Err(ProcessError::Fatal(format!(
            "{} requested no effects but got a result for {}",
            self.stage(),
            result.idempotency_key
        )))
    }

    /// Called every timer interval: close windows, time out waits.
    fn on_timer(&mut self, _now: Millis) -> Result<Vec<Action>, ProcessError> {
        Ok(Vec::new())
    }

    /// Called once per batch before the commit: flush changelog updates.
    fn end_batch(&mut self, _now: Millis) -> Result<Vec<Action>, ProcessError> {
        Ok(Vec::new())
    }
}

/// Decodes an input payload, mapping failures to [`ProcessError::Undecodable`].
pub fn decode_input<T: AvroRecord>(input: &InputRecord<'_>) -> Result<T, ProcessError> {
    let payload = input
        .payload
        .ok_or_else(|| ProcessError::Invalid(format!("tombstone on {}", input.topic)))?;
    codec::decode(payload).map_err(|e| ProcessError::Undecodable(e.to_string()))
}

/// The first 12 hex digits of a SHA-256: the version of a rule pack or policy.
pub(crate) fn short_version(digest: sha2::Sha256) -> String {
    use sha2::Digest;
    digest
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}
