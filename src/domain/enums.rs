//! Closed vocabularies. Each enum's serde names are the Avro enum symbols.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in schema symbol order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The schema symbol.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} '{}' (expected one of: {})",
                        stringify!($name),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

vocabulary! {
    /// What caused a failure; definitions in `docs/taxonomy.md`.
    FailureType {
        Infrastructure => "infrastructure",
        Configuration => "configuration",
        Dependency => "dependency",
        Resource => "resource",
        Application => "application",
        Data => "data",
        Security => "security",
        Network => "network",
        Timing => "timing",
        HumanError => "human_error",
    }
}

impl FailureType {
    /// Tie-break rank from the taxonomy: lower wins when two types score the same.
    pub fn tie_break_rank(self) -> u8 {
        match self {
            FailureType::Security => 0,
            FailureType::Data => 1,
            FailureType::Resource => 2,
            FailureType::Infrastructure => 3,
            FailureType::Network => 4,
            FailureType::Dependency => 5,
            FailureType::Configuration => 6,
            FailureType::Timing => 7,
            FailureType::Application => 8,
            FailureType::HumanError => 9,
        }
    }
}

vocabulary! {
    /// How bad a failure is, most severe first.
    Severity {
        Critical => "critical",
        High => "high",
        Medium => "medium",
        Low => "low",
        Info => "info",
    }
}

impl Severity {
    /// One step more severe (saturating at critical).
    pub fn raised(self) -> Severity {
        match self {
            Severity::Critical | Severity::High => Severity::Critical,
            Severity::Medium => Severity::High,
            Severity::Low => Severity::Medium,
            Severity::Info => Severity::Low,
        }
    }
}

vocabulary! {
    /// Part of the system a failure touches.
    Component {
        Frontend => "frontend",
        Backend => "backend",
        Database => "database",
        Infrastructure => "infrastructure",
        Network => "network",
        CiPipeline => "ci_pipeline",
        Unknown => "unknown",
    }
}

vocabulary! {
    /// Shape of a raw record on the raw-log topic.
    Shipper {
        FluentBit => "fluent_bit",
        Vector => "vector",
        Filebeat => "filebeat",
        Json => "json",
        PlainText => "plain_text",
        CiEvent => "ci_event",
    }
}

vocabulary! {
    /// Where a signal came from.
    SignalKind {
        Log => "log",
        Ci => "ci",
    }
}

vocabulary! {
    /// CI/CD platforms the bridge understands.
    CiPlatform {
        GithubActions => "github_actions",
        GitlabCi => "gitlab_ci",
        Jenkins => "jenkins",
        AzureDevops => "azure_devops",
        Circleci => "circleci",
        Generic => "generic",
    }
}

vocabulary! {
    /// Normalized CI run status.
    CiStatus {
        Success => "success",
        Failure => "failure",
        Cancelled => "cancelled",
        TimedOut => "timed_out",
        Running => "running",
        Queued => "queued",
        Skipped => "skipped",
        Unknown => "unknown",
    }
}

vocabulary! {
    /// The seven recovery phases, in execution order.
    Phase {
        Preparation => "preparation",
        ImmediateResponse => "immediate_response",
        Stabilization => "stabilization",
        Validation => "validation",
        Optimization => "optimization",
        Cleanup => "cleanup",
        PostRecovery => "post_recovery",
    }
}

vocabulary! {
    /// A human's answer to an approval gate.
    ApprovalDecision {
        Approved => "approved",
        Rejected => "rejected",
    }
}

vocabulary! {
    /// Where a recovery stands.
    RecoveryStatus {
        AwaitingApproval => "awaiting_approval",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Rejected => "rejected",
    }
}

impl RecoveryStatus {
    /// True while the recovery still owns its deployment.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RecoveryStatus::AwaitingApproval | RecoveryStatus::Running
        )
    }
}

vocabulary! {
    /// Where one step of a recovery stands.
    StepStatus {
        Pending => "pending",
        Started => "started",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
    }
}

vocabulary! {
    /// How a recovery ended.
    Outcome {
        Succeeded => "succeeded",
        Failed => "failed",
        Rejected => "rejected",
        Skipped => "skipped",
    }
}

vocabulary! {
    /// What an audit record reports.
    AuditEvent {
        PlanReceived => "plan_received",
        ApprovalRequested => "approval_requested",
        Approved => "approved",
        Rejected => "rejected",
        StepStarted => "step_started",
        StepSucceeded => "step_succeeded",
        StepFailed => "step_failed",
        RecoveryFinished => "recovery_finished",
        Skipped => "skipped",
    }
}

vocabulary! {
    /// Why a record went to the dead-letter topic.
    ErrorKind {
        /// The bytes could not be decoded at all.
        Undecodable => "undecodable",
        /// Decoded, but violates the contract (missing key, unknown reference).
        Invalid => "invalid",
        /// The stage failed on it repeatedly.
        Processing => "processing",
    }
}

vocabulary! {
    /// Rule-pack sections that mark a failure rather than vote for a type.
    PatternSection {
        /// Makes the failure critical.
        Critical => "critical",
        /// Marks the failure transient.
        AutoRecovery => "auto_recovery",
    }
}

vocabulary! {
    /// What made notify speak.
    NotificationTrigger {
        Outcome => "outcome",
        ApprovalNeeded => "approval_needed",
    }
}

vocabulary! {
    /// Result of one notification delivery.
    DeliveryStatus {
        Delivered => "delivered",
        Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_through_from_str() {
        for t in FailureType::ALL {
            assert_eq!(t.as_str().parse::<FailureType>(), Ok(*t));
        }
        let err = "banana".parse::<Severity>().unwrap_err();
        assert!(err.contains("critical, high, medium, low, info"), "{err}");
    }

    #[test]
    fn tie_break_ranks_are_distinct_and_follow_the_taxonomy() {
        let mut ranked: Vec<_> = FailureType::ALL.to_vec();
        ranked.sort_by_key(|t| t.tie_break_rank());
        assert_eq!(ranked[0], FailureType::Security);
        assert_eq!(ranked[9], FailureType::HumanError);
        let mut ranks: Vec<_> = FailureType::ALL
            .iter()
            .map(|t| t.tie_break_rank())
            .collect();
        ranks.dedup();
        assert_eq!(ranks.len(), 10);
    }

    #[test]
    fn raising_severity_saturates_at_critical() {
        assert_eq!(Severity::Info.raised(), Severity::Low);
        assert_eq!(Severity::High.raised(), Severity::Critical);
        assert_eq!(Severity::Critical.raised(), Severity::Critical);
    }
}
