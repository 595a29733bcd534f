//! Recovery statistics from the outcome topic, as `medic stats` prints them.
//!
//! Definitions (each outcome counts once, by recovery id):
//!
//! * **success rate**: succeeded ÷ (succeeded + failed); skipped and rejected
//!   recoveries acted on nothing and are left out.
//! * **zero-downtime rate**: of the succeeded recoveries, the share that
//!   neither restarted, rolled back, failed over, isolated a component nor
//!   switched to read-only mode.
//! * **time to recover**: from the failure's first signal (the recovery id
//!   ends in it) to the outcome, for succeeded recoveries.
//! * **manual interventions**: recoveries a human approved or rejected.
//! * **deployment failures prevented**: succeeded recoveries of failures no
//!   CI run had reported as failed — medic acted on the logs before the
//!   pipeline or a person declared the deployment broken.
//! * **recovery metrics** (from each outcome's `metrics`, outcomes that
//!   carry them): mean recovery duration (plan to outcome), estimated and
//!   observed downtime in total, fallbacks taken, components recovered and
//!   the people who had to act (approvals, rejections, escalations), users
//!   affected, and the mean error rate at the start and the end of the
//!   recoveries that measured both.
//! * **simulated**: recoveries with at least one step only recorded (a dry
//!   run, or an action listed in `orchestrate.dry_run`). They are left out
//!   of the rates, times and prevented failures above, since a simulated
//!   step says nothing about whether the real one works, unless
//!   [`Stats::from_outcomes_including_simulated`] asks for them.

use crate::domain::{approved_by_person, recovery_first_seen, Outcome, RecoveryOutcome};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Actions that interrupt service while they run.
pub const DISRUPTIVE_ACTIONS: &[&str] = &[
    "restart_service",
    "rollback_deployment",
    "failover",
    "isolate_component",
    "enable_readonly_mode",
];

/// Outcomes per strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StrategyRow {
    /// Succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Rejected by a human.
    pub rejected: u64,
    /// Skipped (attached, blocked by a safety rule).
    pub skipped: u64,
}

/// The statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Recoveries counted.
    pub recoveries: u64,
    /// Of which dry runs.
    pub dry_runs: u64,
    /// Of which with a simulated step (dry runs included).
    pub simulated: u64,
    /// Whether simulated recoveries count in the rates and times.
    pub simulated_included: bool,
    /// Per strategy.
    pub by_strategy: BTreeMap<String, StrategyRow>,
    /// Succeeded ÷ (succeeded + failed), when any acted.
    pub success_rate: Option<f64>,
    /// Share of succeeded recoveries without a disruptive action.
    pub zero_downtime_rate: Option<f64>,
    /// Mean time to recover, seconds.
    pub mean_time_to_recover_secs: Option<f64>,
    /// 90th percentile time to recover, seconds.
    pub p90_time_to_recover_secs: Option<f64>,
    /// Recoveries a human approved or rejected.
    pub manual_interventions: u64,
    /// Succeeded recoveries of failures no CI run had reported as failed.
    pub failures_prevented: u64,
    /// Mean time from plan to outcome, seconds.
    pub mean_recovery_duration_secs: Option<f64>,
    /// Sum of the estimated downtime of the interrupting steps, seconds.
    pub estimated_downtime_secs: f64,
    /// Sum of the observed downtime of the interrupting steps, seconds.
    pub observed_downtime_secs: f64,
    /// Fallbacks taken, over all recoveries.
    pub fallbacks_used: u64,
    /// Components recovered, over all succeeded recoveries.
    pub components_recovered: u64,
    /// Approvals, rejections and escalations: each time a person had to act.
    pub people_acted: u64,
    /// Users affected when the failures were reported, summed where they said.
    pub users_affected: u64,
    /// Mean error rate at the start and at the end, over the recoveries
    /// that know both, and how many those are.
    pub error_rate_start_end: Option<(f64, f64, u64)>,
}

impl Stats {
    /// Statistics over `outcomes`; a repeated recovery id counts once (the
    /// last wins). Recoveries with a simulated step are counted, but not in
    /// the rates, times and prevented failures.
    pub fn from_outcomes<'a>(outcomes: impl IntoIterator<Item = &'a RecoveryOutcome>) -> Stats {
        Stats::compute(outcomes, false)
    }

    /// As [`Stats::from_outcomes`], with simulated recoveries in the rates
    /// and times as if their simulated steps had run.
    pub fn from_outcomes_including_simulated<'a>(
        outcomes: impl IntoIterator<Item = &'a RecoveryOutcome>,
    ) -> Stats {
        Stats::compute(outcomes, true)
    }

    fn compute<'a>(
        outcomes: impl IntoIterator<Item = &'a RecoveryOutcome>,
        include_simulated: bool,
    ) -> Stats {
        let mut latest: BTreeMap<&str, &RecoveryOutcome> = BTreeMap::new();
        for o in outcomes {
            latest.insert(o.recovery_id.as_str(), o);
        }
        let mut s = Stats {
            simulated_included: include_simulated,
            ..Stats::default()
        };
        let mut ttr: Vec<f64> = Vec::new();
        let mut durations: Vec<f64> = Vec::new();
        let mut error_rates: Vec<(f64, f64)> = Vec::new();
        let (mut succeeded, mut failed, mut quiet) = (0u64, 0u64, 0u64);
        for o in latest.values() {
            s.recoveries += 1;
            s.dry_runs += u64::from(o.dry_run);
            let simulated = o.dry_run || !o.simulated_steps.is_empty();
            s.simulated += u64::from(simulated);
            let row = s.by_strategy.entry(o.strategy.clone()).or_default();
            match o.outcome {
                Outcome::Succeeded => row.succeeded += 1,
                Outcome::Failed => row.failed += 1,
                Outcome::Rejected => row.rejected += 1,
                Outcome::Skipped => row.skipped += 1,
            }
            if approved_by_person(o.approver.as_deref()) {
                s.manual_interventions += 1;
            }
            if simulated && !include_simulated {
                continue;
            }
            if let Some(m) = &o.metrics {
                durations.push(m.duration_ms.max(0) as f64 / 1000.0);
                s.estimated_downtime_secs += m.estimated_downtime_ms.max(0) as f64 / 1000.0;
                s.observed_downtime_secs += m.observed_downtime_ms.max(0) as f64 / 1000.0;
                s.fallbacks_used += m.fallbacks_used.len() as u64;
                s.components_recovered += m.components_recovered.len() as u64;
                s.people_acted += m.manual_interventions.max(0) as u64;
                s.users_affected += m.affected_users_at_start.unwrap_or(0).max(0) as u64;
                if let (Some(start), Some(end)) = (m.error_rate_at_start, m.error_rate_at_end) {
                    error_rates.push((start, end));
                }
            }
            match o.outcome {
                Outcome::Succeeded => {
                    succeeded += 1;
                    if !o
                        .actions
                        .iter()
                        .any(|a| DISRUPTIVE_ACTIONS.contains(&a.as_str()))
                    {
                        quiet += 1;
                    }
                    if let Some(start) = recovery_first_seen(&o.recovery_id) {
                        ttr.push((o.finished_at - start).max(0) as f64 / 1000.0);
                    }
                    let ci_failed = o.ci.as_ref().is_some_and(|ci| {
                        matches!(
                            ci.status.as_str(),
                            "failure" | "failed" | "error" | "timed_out"
                        )
                    });
                    if !ci_failed {
                        s.failures_prevented += 1;
                    }
                }
                Outcome::Failed => failed += 1,
                _ => {}
            }
        }
        if succeeded + failed > 0 {
            s.success_rate = Some(succeeded as f64 / (succeeded + failed) as f64);
        }
        if succeeded > 0 {
            s.zero_downtime_rate = Some(quiet as f64 / succeeded as f64);
        }
        if !error_rates.is_empty() {
            let n = error_rates.len() as f64;
            let start = error_rates.iter().map(|(a, _)| a).sum::<f64>() / n;
            let end = error_rates.iter().map(|(_, b)| b).sum::<f64>() / n;
            s.error_rate_start_end = Some((start, end, error_rates.len() as u64));
        }
        if !durations.is_empty() {
            s.mean_recovery_duration_secs =
                Some(durations.iter().sum::<f64>() / durations.len() as f64);
        }
        if !ttr.is_empty() {
            ttr.sort_by(f64::total_cmp);
            s.mean_time_to_recover_secs = Some(ttr.iter().sum::<f64>() / ttr.len() as f64);
            // Nearest rank.
            let rank = ((0.9 * ttr.len() as f64).ceil() as usize).clamp(1, ttr.len());
            s.p90_time_to_recover_secs = Some(ttr[rank - 1]);
        }
        s
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1} %", v * 100.0))
}

fn seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1} s"))
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} recoveries ({} dry runs, {} with simulated steps)",
            self.recoveries, self.dry_runs, self.simulated
        )?;
        writeln!(
            f,
            "\n{:<26} {:>9} {:>6} {:>8} {:>7}",
            "strategy", "succeeded", "failed", "rejected", "skipped"
        )?;
        for (strategy, r) in &self.by_strategy {
            writeln!(
                f,
                "{strategy:<26} {:>9} {:>6} {:>8} {:>7}",
                r.succeeded, r.failed, r.rejected, r.skipped
            )?;
        }
        writeln!(f)?;
        if self.simulated > 0 {
            writeln!(
                f,
                "{}",
                if self.simulated_included {
                    "rates and times include simulated recoveries (--include-simulated)"
                } else {
                    "rates and times leave out simulated recoveries (--include-simulated counts them)"
                }
            )?;
        }
        writeln!(
            f,
            "success rate                  {}",
            percent(self.success_rate)
        )?;
        writeln!(
            f,
            "zero-downtime rate            {}",
            percent(self.zero_downtime_rate)
        )?;
        writeln!(
            f,
            "mean time to recover          {}",
            seconds(self.mean_time_to_recover_secs)
        )?;
        writeln!(
            f,
            "p90 time to recover           {}",
            seconds(self.p90_time_to_recover_secs)
        )?;
        writeln!(
            f,
            "manual interventions          {}",
            self.manual_interventions
        )?;
        writeln!(
            f,
            "deployment failures prevented {}",
            self.failures_prevented
        )?;
        writeln!(
            f,
            "mean recovery duration        {}",
            seconds(self.mean_recovery_duration_secs)
        )?;
        writeln!(
            f,
            "downtime, estimated/observed  {:.1} s / {:.1} s",
            self.estimated_downtime_secs, self.observed_downtime_secs
        )?;
        writeln!(f, "fallbacks used                {}", self.fallbacks_used)?;
        writeln!(
            f,
            "components recovered          {}",
            self.components_recovered
        )?;
        writeln!(
            f,
            "people acted                  {} (approvals, rejections, escalations)",
            self.people_acted
        )?;
        writeln!(f, "users affected at start       {}", self.users_affected)?;
        match self.error_rate_start_end {
            Some((start, end, n)) => writeln!(
                f,
                "error rate, start -> end      {start:.2} -> {end:.2} (mean of {n} recoveries measured at both)"
            ),
            None => writeln!(f, "error rate, start -> end      - (no recovery measured it at both)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CiRef, FailureType, Millis, Severity};

    fn outcome(id: &str, strategy: &str, result: Outcome, finished: Millis) -> RecoveryOutcome {
        RecoveryOutcome {
            recovery_id: id.into(),
            failure_id: String::new(),
            deployment_key: id.split('#').next().unwrap_or_default().into(),
            service: "svc".into(),
            environment: "production".into(),
            failure_type: FailureType::Application,
            severity: Severity::High,
            strategy: strategy.into(),
            outcome: result,
            dry_run: false,
            started_at: 0,
            finished_at: finished,
            steps_total: 2,
            steps_succeeded: 2,
            detail: String::new(),
            ci: None,
            approver: None,
            actions: vec!["notify".into(), "scale_resources".into()],
            simulated_steps: Vec::new(),
            metrics: None,
            should_retry_deployment: false,
            recommendations: Vec::new(),
        }
    }

    #[test]
    fn rates_times_and_interventions() {
        let mut rollback = outcome(
            "a/production#1000",
            "application_recovery",
            Outcome::Succeeded,
            61_000,
        );
        rollback.actions.push("rollback_deployment".into());
        rollback.approver = Some("alice".into());
        let mut from_ci = outcome(
            "b/production#0",
            "infrastructure_recovery",
            Outcome::Succeeded,
            10_000,
        );
        from_ci.ci = Some(CiRef {
            event_id: "e".into(),
            platform: "github_actions".into(),
            status: "failure".into(),
            pipeline: "CI".into(),
            job: None,
            url: None,
            commit_sha: None,
            repository: None,
            run_id: None,
            job_id: None,
        });
        let mut failed = outcome(
            "c/production#0",
            "application_recovery",
            Outcome::Failed,
            5_000,
        );
        let mut rejected = outcome(
            "d/production#0",
            "database_recovery",
            Outcome::Rejected,
            1_000,
        );
        rejected.approver = Some("bob".into());
        // Went on after an unanswered hold: nobody intervened.
        failed.approver =
            Some("nobody: no decision within 3600 s, on_hold_timeout: proceed".into());
        let skipped = outcome(
            "e/production#0",
            "network_recovery",
            Outcome::Skipped,
            1_000,
        );
        let all = [
            rollback.clone(),
            from_ci,
            failed,
            rejected,
            skipped,
            rollback,
        ];
        let s = Stats::from_outcomes(&all);
        assert_eq!(s.recoveries, 5, "a redelivered outcome counts once");
        assert_eq!(s.success_rate, Some(2.0 / 3.0));
        assert_eq!(
            s.zero_downtime_rate,
            Some(0.5),
            "the rollback interrupted service"
        );
        assert_eq!(s.mean_time_to_recover_secs, Some(35.0));
        assert_eq!(s.p90_time_to_recover_secs, Some(60.0));
        assert_eq!(s.manual_interventions, 2);
        assert_eq!(
            s.failures_prevented, 1,
            "the CI run had already failed for b"
        );
        assert_eq!(s.by_strategy["application_recovery"].failed, 1);
        let text = s.to_string();
        assert!(
            text.contains("success rate                  66.7 %"),
            "{text}"
        );
        assert_eq!(Stats::from_outcomes(&[]).success_rate, None);
    }

    #[test]
    fn error_rates_and_users_affected_come_from_the_metrics() {
        let measured = |id: &str, start: Option<f64>, end: Option<f64>, users: i64| {
            let mut o = outcome(id, "network_recovery", Outcome::Succeeded, 10_000);
            o.metrics = Some(crate::domain::RecoveryMetrics {
                error_rate_at_start: start,
                error_rate_at_end: end,
                affected_users_at_start: Some(users),
                ..Default::default()
            });
            o
        };
        let all = [
            measured("a/production#0", Some(7.5), Some(0.2), 1_000),
            measured("b/production#0", Some(2.5), Some(0.4), 200),
            measured("c/production#0", Some(9.0), None, 0),
        ];
        let s = Stats::from_outcomes(&all);
        assert_eq!(s.users_affected, 1_200);
        let (start, end, n) = s.error_rate_start_end.expect("measured");
        assert!((start - 5.0).abs() < 1e-9 && (end - 0.3).abs() < 1e-9 && n == 2);
        assert!(s
            .to_string()
            .contains("error rate, start -> end      5.00 -> 0.30 (mean of 2 recoveries"));
    }
}
