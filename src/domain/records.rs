//! Record types, one per Avro schema in `schemas/`. Field order and names follow
//! the schema; `Option` is a `["null", T]` union, `BTreeMap` an Avro map (sorted,
//! so encoding is deterministic), `Vec` an array.

use super::enums::*;
use super::{DeploymentKey, Millis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a signal came from (schema `RawLogEnvelope`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawLogEnvelope {
    pub shipper: Shipper,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub kafka_timestamp: Option<Millis>,
    pub host: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub container: Option<String>,
}

impl RawLogEnvelope {
    /// An envelope with only the shape and Kafka coordinates known.
    pub fn at(shipper: Shipper, topic: &str, partition: i32, offset: i64) -> RawLogEnvelope {
        RawLogEnvelope {
            shipper,
            topic: topic.to_string(),
            partition,
            offset,
            kafka_timestamp: None,
            host: None,
            pod: None,
            namespace: None,
            container: None,
        }
    }
}

/// The CI run behind a ci-kind signal (schema `CiRef`, inside `Signal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiRef {
    pub event_id: String,
    pub platform: String,
    pub status: String,
    pub pipeline: String,
    pub job: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub commit_sha: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub job_id: Option<String>,
}

/// One normalized observation about a deployment (schema `Signal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub id: String,
    pub deployment_key: String,
    pub service: String,
    pub environment: String,
    pub kind: SignalKind,
    pub observed_at: Millis,
    pub text: String,
    pub level: Option<String>,
    pub status_code: Option<i32>,
    pub affected_users: Option<i64>,
    pub error_rate: Option<f64>,
    pub ci: Option<CiRef>,
    pub origin: RawLogEnvelope,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Signal {
    /// A plain-text log signal for `key`, as ingest would make from line
    /// `offset` of `topic`: for tools, tests and offline categorization.
    pub fn plain_text(
        key: &DeploymentKey,
        topic: &str,
        offset: i64,
        text: &str,
        observed_at: Millis,
    ) -> Signal {
        Signal {
            id: format!("{topic}/0/{offset}"),
            deployment_key: key.to_string(),
            service: key.service().to_string(),
            environment: key.environment().to_string(),
            kind: SignalKind::Log,
            observed_at,
            text: text.to_string(),
            level: None,
            status_code: None,
            affected_users: None,
            error_rate: None,
            ci: None,
            origin: RawLogEnvelope::at(Shipper::PlainText, topic, 0, offset),
            attributes: BTreeMap::new(),
        }
    }
}

/// A verified, normalized CI/CD webhook delivery (schema `CiEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiEvent {
    pub id: String,
    pub platform: CiPlatform,
    pub event_type: String,
    pub status: CiStatus,
    pub service: String,
    pub environment: String,
    pub pipeline: String,
    pub job: Option<String>,
    pub run_id: String,
    #[serde(default = "one")]
    pub run_attempt: i32,
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    pub url: Option<String>,
    pub actor: Option<String>,
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub failed_steps: Vec<String>,
    pub log_excerpt: Option<String>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub received_at: Millis,
    #[serde(default)]
    pub repository: Option<String>,
}

fn one() -> i32 {
    1
}

/// One rule that fired on one signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub rule_id: String,
    pub failure_type: FailureType,
    pub matched: String,
    pub span_start: i32,
    pub span_end: i32,
    pub signal_id: String,
    pub weight: f64,
}

/// A critical or auto-recovery pattern that matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternHit {
    pub section: PatternSection,
    pub rule_id: String,
    pub matched: String,
    pub signal_id: String,
}

/// The second-best type of a close call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerUp {
    pub failure_type: FailureType,
    pub confidence: f64,
}

/// One categorized deployment failure (schema `CategorizedFailure`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategorizedFailure {
    pub id: String,
    pub deployment_key: String,
    pub service: String,
    pub environment: String,
    pub failure_type: FailureType,
    pub severity: Severity,
    pub confidence: f64,
    pub runner_up: Option<RunnerUp>,
    pub evidence: Vec<Evidence>,
    pub components: Vec<Component>,
    pub transient: bool,
    pub affected_users: Option<i64>,
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub status_codes: Vec<i32>,
    pub rule_pack_version: String,
    pub signal_count: i64,
    pub first_seen: Millis,
    pub last_seen: Millis,
    pub summary: String,
    #[serde(default)]
    pub pattern_hits: Vec<PatternHit>,
    #[serde(default)]
    pub ci: Option<CiRef>,
}

/// An open correlation window, categorize's changelog value (schema `CorrelationWindow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelationWindow {
    pub deployment_key: String,
    pub service: String,
    pub environment: String,
    pub opened_at: Millis,
    pub touched_at: Millis,
    pub first_seen: Millis,
    pub last_seen: Millis,
    pub signal_count: i64,
    pub matched_signals: i64,
    /// Summed weight of cause-tier rules per failure type.
    pub scores: BTreeMap<String, f64>,
    /// Summed weight of symptom-tier rules per failure type; decides only
    /// when `scores` and `operator_scores` are empty.
    #[serde(default)]
    pub symptom_scores: BTreeMap<String, f64>,
    /// Summed weight of operator-action rules per failure type; decides
    /// over every cause.
    #[serde(default)]
    pub operator_scores: BTreeMap<String, f64>,
    /// Counts of the words and word pairs the learned model knows, from the
    /// lines a typed rule matched; kept only while no cause or operator rule
    /// has scored (the model is not asked after one has), at most
    /// `MAX_MODEL_FEATURES` distinct features.
    #[serde(default)]
    pub model_features: BTreeMap<String, f64>,
    pub evidence: Vec<Evidence>,
    pub components: Vec<Component>,
    pub transient_votes: i64,
    pub critical: bool,
    pub severity_hint: Option<Severity>,
    pub affected_users: Option<i64>,
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub status_codes: Vec<i32>,
    #[serde(default)]
    pub ci_failed: bool,
    #[serde(default)]
    pub ci_cancelled: bool,
    #[serde(default)]
    pub auto_recoverable: bool,
    #[serde(default)]
    pub pattern_hits: Vec<PatternHit>,
    #[serde(default)]
    pub ci: Option<CiRef>,
    /// Id of the signal that opened the window (empty in windows written
    /// before 0.2); part of the failure id.
    #[serde(default)]
    pub opened_by: String,
}

/// One decision taken while choosing and walking a strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionStep {
    pub node: String,
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

/// A strategy considered for a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub strategy: String,
    pub expected_success: f64,
    pub verdict: String,
}

/// One planned action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub index: i32,
    pub phase: Phase,
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub params: Arc<BTreeMap<String, String>>,
    pub timeout_ms: i64,
}

impl PlanStep {
    /// The parameters as owned strings.
    pub fn owned_params(&self) -> BTreeMap<String, String> {
        (*self.params).clone()
    }

    /// One parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parameters shared between plans: reference counted, so copying a
/// prepared step into a plan copies no map and no text.
pub fn shared_params(params: BTreeMap<String, String>) -> Arc<BTreeMap<String, String>> {
    Arc::new(params)
}

/// What medic intends to do about one failure, and why (schema `RecoveryPlan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryPlan {
    pub recovery_id: String,
    pub failure_id: String,
    pub deployment_key: String,
    pub service: String,
    pub environment: String,
    pub failure_type: FailureType,
    pub severity: Severity,
    pub strategy: String,
    pub requires_approval: bool,
    pub decision_path: Vec<DecisionStep>,
    pub steps: Vec<PlanStep>,
    pub created_at: Millis,
    pub estimated_duration_ms: i64,
    #[serde(default)]
    pub ci: Option<CiRef>,
    #[serde(default)]
    pub policy_version: String,
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub terminal: Option<String>,
    /// Users affected when the failure was reported, when it said.
    #[serde(default)]
    pub affected_users: Option<i64>,
    /// Error rate when the failure was reported, when it said.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// The failure was transient: retrying it unchanged has a fair chance.
    #[serde(default)]
    pub transient: bool,
}

/// A human decision on a gated recovery (schema `Approval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub recovery_id: String,
    pub decision: ApprovalDecision,
    pub approver: String,
    pub reason: Option<String>,
    pub decided_at: Millis,
}

/// Where one step of a recovery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub index: i32,
    pub phase: Phase,
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub timeout_ms: i64,
    pub status: StepStatus,
    pub attempts: i32,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub detail: Option<String>,
    /// Recorded instead of done (dry run for the whole recovery or for this action).
    #[serde(default)]
    pub simulated: bool,
    /// The metric a check step measured, and its value.
    #[serde(default)]
    pub observed_metric: Option<String>,
    #[serde(default)]
    pub observed_value: Option<f64>,
}

/// Snapshot of a deployment's latest recovery (schema `RecoveryState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryState {
    pub recovery_id: String,
    pub failure_id: String,
    pub deployment_key: String,
    pub service: String,
    pub environment: String,
    pub failure_type: FailureType,
    pub severity: Severity,
    pub strategy: String,
    pub status: RecoveryStatus,
    pub dry_run: bool,
    pub steps: Vec<StepState>,
    pub started_at: Millis,
    pub updated_at: Millis,
    pub approver: Option<String>,
    #[serde(default)]
    pub ci: Option<CiRef>,
    #[serde(default)]
    pub last_disruptive: BTreeMap<String, Millis>,
    #[serde(default)]
    pub attached_failures: Vec<String>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub waiting_until: Option<Millis>,
    #[serde(default)]
    pub phases: Vec<PhaseSpan>,
    /// Users affected when the failure was reported, when it said.
    #[serde(default)]
    pub affected_users: Option<i64>,
    /// Error rate when the failure was reported, when it said.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// The failure was transient: retrying it unchanged has a fair chance.
    #[serde(default)]
    pub transient: bool,
}

/// One phase of a recovery (schema `PhaseSpan`, inside `RecoveryState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpan {
    pub phase: Phase,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
}

/// How one recovery ended (schema `RecoveryOutcome`, public contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryOutcome {
    pub recovery_id: String,
    pub failure_id: String,
    pub deployment_key: String,
    pub service: String,
    pub environment: String,
    pub failure_type: FailureType,
    pub severity: Severity,
    pub strategy: String,
    pub outcome: Outcome,
    pub dry_run: bool,
    pub started_at: Millis,
    pub finished_at: Millis,
    pub steps_total: i32,
    pub steps_succeeded: i32,
    pub detail: String,
    #[serde(default)]
    pub ci: Option<CiRef>,
    #[serde(default)]
    pub approver: Option<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    /// The actions among `actions` that were only recorded, not done.
    #[serde(default)]
    pub simulated_steps: Vec<String>,
    /// What the recovery measured about itself; absent in outcomes written
    /// before medic recorded it.
    #[serde(default)]
    pub metrics: Option<RecoveryMetrics>,
    /// Whether the CI platform should run the deployment again as it was
    /// (the original design's `should_retry_deployment`).
    #[serde(default)]
    pub should_retry_deployment: bool,
    /// Up to three things a person should do next, most urgent first.
    #[serde(default)]
    pub recommendations: Vec<String>,
}

/// How a recovery's `approver` begins when nobody decided and a hold went
/// on when its time was up (`orchestrate.on_hold_timeout: proceed`).
pub const NO_APPROVER: &str = "nobody";

/// Whether `approver` names a person, not a hold that went on by itself.
pub fn approved_by_person(approver: Option<&str>) -> bool {
    approver.is_some_and(|a| !a.starts_with(NO_APPROVER))
}

/// What a recovery measured about itself (the original design's
/// `RecoveryMetrics`, as far as medic can measure or carry it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryMetrics {
    /// From the plan's arrival to the outcome.
    pub duration_ms: i64,
    /// Longest the steps expected to interrupt service (failover, isolating
    /// a component, read-only mode where it counts as downtime) could have
    /// interrupted it: the sum of their timeouts.
    pub estimated_downtime_ms: i64,
    /// How long those steps really ran (simulated ones not counted).
    pub observed_downtime_ms: i64,
    /// Components the recovery acted on and brought back (a succeeded
    /// recovery's service and the `component` of its steps).
    pub components_recovered: Vec<String>,
    /// The fallbacks the recovery took: `node -> fallback`, in order.
    pub fallbacks_used: Vec<String>,
    /// People who had to act: approvals and rejections, escalations.
    pub manual_interventions: i32,
    /// Users affected when the failure was reported, when it said.
    #[serde(default)]
    pub affected_users_at_start: Option<i64>,
    /// Error rate when the failure was reported, when it said.
    #[serde(default)]
    pub error_rate_at_start: Option<f64>,
    /// Error rate the recovery's last check of it measured
    /// (`orchestrate.error_rate_metric`), when it checked.
    #[serde(default)]
    pub error_rate_at_end: Option<f64>,
}

/// One recovery action or decision (schema `AuditRecord`, public contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub recovery_id: String,
    pub deployment_key: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub phase: Option<Phase>,
    pub step_index: Option<i32>,
    pub event: AuditEvent,
    pub dry_run: bool,
    pub idempotency_key: Option<String>,
    pub detail: String,
    pub at: Millis,
}

/// A record a stage could not handle (schema `DeadLetter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub stage: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    #[serde(with = "serde_bytes")]
    pub source_key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub payload: Option<Vec<u8>>,
    pub error_kind: ErrorKind,
    pub error: String,
    pub at: Millis,
}

/// One notification delivery (schema `NotificationRecord`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub id: String,
    pub recovery_id: String,
    pub deployment_key: String,
    pub channel: String,
    pub trigger: NotificationTrigger,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub http_status: Option<i32>,
    pub message: String,
    pub error: Option<String>,
    pub at: Millis,
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub retries: Vec<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// Outcome counts of one strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyCount {
    pub succeeded: i64,
    pub failed: i64,
}

/// Learned outcome counts per strategy for one deployment (schema `StrategyStats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyStats {
    pub deployment_key: String,
    pub counts: BTreeMap<String, StrategyCount>,
    #[serde(default)]
    pub recent_outcomes: Vec<String>,
    pub updated_at: Millis,
}
