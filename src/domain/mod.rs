//! The domain model: the vocabulary every stage speaks.
//!
//! Types here are plain data with serde derives whose field names match the Avro
//! schemas in `schemas/` one to one; the codec encodes them without any
//! intermediate representation. Nothing here does I/O.

mod enums;
mod key;
mod records;

pub use enums::{
    ApprovalDecision, AuditEvent, CiPlatform, CiStatus, Component, DeliveryStatus, ErrorKind,
    FailureType, NotificationTrigger, Outcome, PatternSection, Phase, RecoveryStatus, Severity,
    Shipper, SignalKind, StepStatus,
};
pub use key::{normalize_environment, recovery_first_seen, DeploymentKey};
pub use records::{
    approved_by_person, shared_params, Approval, AuditRecord, Candidate, CategorizedFailure,
    CiEvent, CiRef, CorrelationWindow, DeadLetter, DecisionStep, Evidence, NotificationRecord,
    PatternHit, PhaseSpan, PlanStep, RawLogEnvelope, RecoveryMetrics, RecoveryOutcome,
    RecoveryPlan, RecoveryState, RunnerUp, Signal, StepState, StrategyCount, StrategyStats,
    NO_APPROVER,
};

/// Milliseconds since the Unix epoch. Every time in medic is one of these, and
/// cores receive "now" as an argument instead of reading a clock.
pub type Millis = i64;
