//! What medic writes back to the CI run behind a failure: the original
//! design's CI/CD response (failure type, the action taken, whether to retry
//! the deployment, recommendations), rendered for each platform's space — a
//! 140-character commit status line, a build description, build tags.

use crate::domain::{CiPlatform, CiRef, RecoveryOutcome, RecoveryState};

/// What one status write says.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// `high network failure`.
    pub failure: String,
    /// `network_recovery succeeded (open_circuit_breaker, clear_cache)`, or
    /// `recovering: network_recovery` while it runs.
    pub action: String,
    /// Known once the recovery ended.
    pub should_retry_deployment: Option<bool>,
    /// Up to three, most urgent first.
    pub recommendations: Vec<String>,
    /// Link for "Details": the CI run.
    pub target_url: Option<String>,
}

/// Actions named in a status, at most.
const ACTIONS_SHOWN: usize = 3;

impl StatusReport {
    /// The report of a recovery that has started.
    pub fn running(state: &RecoveryState) -> StatusReport {
        StatusReport {
            failure: format!("{} {} failure", state.severity, state.failure_type),
            action: format!(
                "recovering: {}{}",
                state.strategy,
                if state.dry_run { " (dry run)" } else { "" }
            ),
            should_retry_deployment: None,
            recommendations: Vec::new(),
            target_url: state.ci.as_ref().and_then(|c| c.url.clone()),
        }
    }

    /// The report of a finished recovery.
    pub fn finished(o: &RecoveryOutcome) -> StatusReport {
        let mut action = format!("{} {}{}", o.strategy, o.outcome, shown_actions(&o.actions));
        action.push_str(&super::simulated_note(o));
        StatusReport {
            failure: format!("{} {} failure", o.severity, o.failure_type),
            action,
            should_retry_deployment: Some(o.should_retry_deployment),
            recommendations: o.recommendations.clone(),
            target_url: o.ci.as_ref().and_then(|c| c.url.clone()),
        }
    }

    fn retry(&self) -> Option<&'static str> {
        self.should_retry_deployment
            .map(|r| if r { "retry recommended" } else { "no retry" })
    }

    /// One line of at most `limit` characters: what failed, what medic did,
    /// the retry advice and the first recommendation.
    pub fn line(&self, limit: usize) -> String {
        let mut parts = vec![format!("medic: {}", self.failure), self.action.clone()];
        parts.extend(self.retry().map(str::to_string));
        parts.extend(self.recommendations.first().cloned());
        cut(&parts.join("; "), limit)
    }

    /// Every part on its own line, for a build description.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("medic: {}", self.failure),
            format!("Action: {}", self.action),
        ];
        if let Some(r) = self.should_retry_deployment {
            lines.push(format!(
                "Retry the deployment: {}",
                if r { "yes" } else { "no" }
            ));
        }
        lines.extend(self.recommendations.iter().map(|r| format!("- {r}")));
        lines
    }

    /// Short labels for a build's tags, each `medic: …` and without commas:
    /// the failure and [`RECOVERING_TAG`] while the recovery runs; then the
    /// failure, the action, the retry advice and every recommendation.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.failure.clone()];
        match self.retry() {
            None => tags.push("recovering".into()),
            Some(retry) => {
                tags.push(self.action.clone());
                tags.push(retry.into());
                tags.extend(self.recommendations.iter().cloned());
            }
        }
        tags.iter()
            .map(|t| cut(&format!("medic: {}", t.replace(',', ";")), TAG_LIMIT))
            .collect()
    }
}

/// The tag a running recovery puts on its build, removed when it ends.
pub const RECOVERING_TAG: &str = "medic: recovering";

/// ` (rollback_deployment, run_health_check)`: the remedies a recovery ran,
/// each once, at most [`ACTIONS_SHOWN`]; nothing when there were none.
fn shown_actions(actions: &[String]) -> String {
    let mut shown: Vec<&str> = Vec::new();
    // Telling people is not the remedy.
    for a in actions.iter().filter(|a| *a != "notify") {
        if !shown.contains(&a.as_str()) {
            shown.push(a);
        }
    }
    if shown.is_empty() {
        return String::new();
    }
    let more = shown.len().saturating_sub(ACTIONS_SHOWN);
    shown.truncate(ACTIONS_SHOWN);
    match more {
        0 => format!(" ({})", shown.join(", ")),
        n => format!(" ({}, {n} more)", shown.join(", ")),
    }
}

/// Characters of a build tag medic writes, at most.
const TAG_LIMIT: usize = 120;

/// `text` cut to `limit` characters on a character boundary, `…` marking the cut.
pub fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Whether `ci` carries what `platform`'s write-back needs: a repository and
/// commit for commit statuses, the build's URL (and id) for Jenkins and
/// Azure DevOps.
pub fn reportable(platform: CiPlatform, ci: &CiRef) -> bool {
    match platform {
        CiPlatform::GithubActions | CiPlatform::GitlabCi => {
            ci.repository.is_some() && ci.commit_sha.is_some()
        }
        CiPlatform::Jenkins => ci.url.is_some(),
        // Builds only: a release deployment has no build to tag.
        CiPlatform::AzureDevops => {
            ci.run_id.is_some()
                && ci.url.as_deref().is_some_and(|u| {
                    let u = u.to_ascii_lowercase();
                    u.contains("/_build") || u.contains("/_apis/build/")
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            failure: "high network failure".into(),
            action: "network_recovery succeeded (open_circuit_breaker, clear_cache)".into(),
            should_retry_deployment: Some(true),
            recommendations: vec![
                "Retry the deployment unchanged: the failure was transient".into(),
                "Undo by hand what the recovery left in place: shift_traffic (to: eu-west, percent: 100)".into(),
            ],
            target_url: None,
        }
    }

    #[test]
    fn one_line_carries_type_action_retry_and_the_first_recommendation() {
        let line = report().line(400);
        assert_eq!(
            line,
            "medic: high network failure; network_recovery succeeded (open_circuit_breaker, clear_cache); \
             retry recommended; Retry the deployment unchanged: the failure was transient"
        );
        let short = report().line(140);
        assert_eq!(short.chars().count(), 140);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn lines_and_tags_carry_every_recommendation() {
        let lines = report().lines();
        assert_eq!(lines[2], "Retry the deployment: yes");
        assert_eq!(lines.len(), 5);
        let tags = report().tags();
        assert_eq!(tags[0], "medic: high network failure");
        assert_eq!(tags[2], "medic: retry recommended");
        assert!(tags
            .iter()
            .all(|t| !t.contains(',') && t.chars().count() <= TAG_LIMIT));
        assert!(tags[4].contains("to: eu-west; percent: 100"));
    }

    #[test]
    fn cut_never_splits_a_character() {
        assert_eq!(cut("ééé", 2), "é…");
        assert_eq!(cut("ok", 2), "ok");
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(cut("ééééé", 3).chars().count(), 3);
        assert_eq!(cut("abc", 3), "abc");
    }
}
