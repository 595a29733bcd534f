//! What the CI platform and a person should do after a recovery: the
//! original design's CI/CD response (`should_retry_deployment` and
//! `recommendations`), carried by the outcome and written back to the CI run.

use crate::domain::{FailureType, Outcome};

/// At most this many recommendations, most urgent first.
pub(super) const MAX_RECOMMENDATIONS: usize = 3;

/// Actions after which running the same deployment again is not the next
/// step: medic re-ran it already, or reverted it on purpose.
const REDEPLOYED: &[&str] = &["retry_deployment", "rollback_deployment"];

/// What a finished recovery did, as far as its advice depends on it.
pub(super) struct Finished<'a> {
    pub failure_type: FailureType,
    pub transient: bool,
    pub outcome: Outcome,
    /// Actions that succeeded and really ran.
    pub done: &'a [String],
    /// The whole recovery was a dry run.
    pub dry_run: bool,
    /// Actions that were only recorded.
    pub simulated: &'a [String],
    /// Temporary measures nobody undid.
    pub left: &'a [String],
    /// Someone was paged.
    pub escalated: bool,
}

/// The advice for the CI platform and the people reading it.
#[derive(Debug, PartialEq)]
pub(super) struct Advice {
    pub should_retry_deployment: bool,
    pub recommendations: Vec<String>,
}

/// Retry the deployment only when the failure was transient, the recovery
/// succeeded, and medic neither re-ran nor rolled back the deployment itself.
pub(super) fn advise(f: &Finished<'_>) -> Advice {
    let redeployed = |action: &str| f.done.iter().any(|a| a == action);
    let should_retry =
        f.transient && f.outcome == Outcome::Succeeded && !REDEPLOYED.iter().any(|a| redeployed(a));
    let mut r: Vec<String> = Vec::new();
    if !f.left.is_empty() {
        r.push(format!(
            "Undo by hand what the recovery left in place: {}",
            f.left.join(", ")
        ));
    }
    match f.outcome {
        Outcome::Failed if f.escalated => {
            r.push("The recovery failed and was escalated: follow the page".into())
        }
        Outcome::Failed => r.push("The recovery failed: a person has to take over".into()),
        Outcome::Rejected => {
            r.push("The recovery was rejected: recover by hand or deploy a fix".into())
        }
        Outcome::Succeeded | Outcome::Skipped => {}
    }
    if f.dry_run {
        r.push("Dry run: nothing was done; medic only recorded the steps".into());
    } else if !f.simulated.is_empty() {
        let mut simulated: Vec<&str> = Vec::new();
        for a in f.simulated {
            if !simulated.contains(&a.as_str()) {
                simulated.push(a);
            }
        }
        r.push(format!(
            "Only simulated, not done (dry run): {}",
            simulated.join(", ")
        ));
    }
    if f.outcome == Outcome::Succeeded && redeployed("rollback_deployment") {
        r.push("The previous revision is running: fix the change before deploying it again".into());
    }
    if should_retry {
        r.push("Retry the deployment unchanged: the failure was transient".into());
    } else if !f.transient {
        r.push(cause_advice(f.failure_type).into());
    }
    r.truncate(MAX_RECOMMENDATIONS);
    Advice {
        should_retry_deployment: should_retry,
        recommendations: r,
    }
}

/// What has to change before the deployment can succeed, by type
/// (`docs/taxonomy.md`).
fn cause_advice(t: FailureType) -> &'static str {
    match t {
        FailureType::Infrastructure => {
            "Check the nodes and platform the service runs on before deploying again"
        }
        FailureType::Configuration => {
            "Fix the configuration or environment this deployment changed"
        }
        FailureType::Dependency => {
            "Fix or pin the dependency that could not be fetched or resolved"
        }
        FailureType::Resource => "Raise the limit or capacity that ran out (memory, disk, quota)",
        FailureType::Application => "Fix the code: the failure is in the application",
        FailureType::Data => "Check the migration and the database state before deploying again",
        FailureType::Security => "Renew or fix the credentials, certificates or permissions",
        FailureType::Network => "Check connectivity, DNS and TLS between the service and its peers",
        FailureType::Timing => "Find the timeout or race: raise the deadline or order the steps",
        FailureType::HumanError => "Check the manual change or cancel, then redo it deliberately",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished<'a>(transient: bool, outcome: Outcome, done: &'a [String]) -> Finished<'a> {
        Finished {
            failure_type: FailureType::Network,
            transient,
            outcome,
            done,
            dry_run: false,
            simulated: &[],
            left: &[],
            escalated: false,
        }
    }

    #[test]
    fn a_transient_failure_recovered_in_place_is_worth_a_retry() {
        let done = vec!["open_circuit_breaker".to_string()];
        let advice = advise(&finished(true, Outcome::Succeeded, &done));
        assert!(advice.should_retry_deployment);
        assert_eq!(
            advice.recommendations,
            ["Retry the deployment unchanged: the failure was transient"]
        );
    }

    #[test]
    fn no_retry_after_a_rollback_a_rerun_a_failure_or_for_a_lasting_cause() {
        let rolled_back = vec!["rollback_deployment".to_string()];
        let advice = advise(&finished(true, Outcome::Succeeded, &rolled_back));
        assert!(!advice.should_retry_deployment);
        assert!(advice.recommendations[0].starts_with("The previous revision is running"));
        let rerun = vec!["retry_deployment".to_string()];
        assert!(!advise(&finished(true, Outcome::Succeeded, &rerun)).should_retry_deployment);
        assert!(!advise(&finished(true, Outcome::Failed, &[])).should_retry_deployment);
        let lasting = advise(&finished(false, Outcome::Succeeded, &[]));
        assert!(!lasting.should_retry_deployment);
        assert_eq!(
            lasting.recommendations,
            ["Check connectivity, DNS and TLS between the service and its peers"]
        );
    }

    #[test]
    fn what_a_person_must_do_comes_first_and_there_are_at_most_three() {
        let left = vec!["enable_readonly_mode (component: database)".to_string()];
        let simulated = vec!["shift_traffic".to_string(), "shift_traffic".to_string()];
        let advice = advise(&Finished {
            failure_type: FailureType::Data,
            transient: false,
            outcome: Outcome::Failed,
            done: &[],
            dry_run: false,
            simulated: &simulated,
            left: &left,
            escalated: true,
        });
        assert!(!advice.should_retry_deployment);
        assert_eq!(
            advice.recommendations,
            [
                "Undo by hand what the recovery left in place: enable_readonly_mode (component: database)",
                "The recovery failed and was escalated: follow the page",
                "Only simulated, not done (dry run): shift_traffic",
            ]
        );
    }
}
