//! What a policy change would have done: recorded failures planned under the
//! current and a candidate policy, with the same code the decide stage runs,
//! and the differences listed. No Kafka writes, no executors.

use super::config::DecideConfig;
use super::policy::Policy;
use super::Decide;
use crate::domain::{CategorizedFailure, FailureType, RecoveryPlan, Severity};
use crate::stages::categorize::offline::{self, OfflineInput};
use crate::stages::categorize::rules::RulePack;
use crate::topics::Topics;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// One recorded input.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// A failure as the categorize stage wrote it: decided as is.
    Failure(Box<CategorizedFailure>),
    /// A message or signal: categorized first.
    Message(OfflineInput),
}

/// Reads one line of a recording: a `CategorizedFailure` as JSON (it has
/// `failure_type`), a `Signal` as JSON (it has `text`), an object with
/// `message` (as `medic categorize --input` reads), or plain text. `None` for
/// a blank line.
pub fn parse_line(line: &str) -> Result<Option<Recorded>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with('{') {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
            if value.get("failure_type").is_some() {
                return serde_json::from_value(value)
                    .map(|f| Some(Recorded::Failure(Box::new(f))))
                    .map_err(|e| format!("invalid failure: {e}"));
            }
            if let Some(text) = value.get("text").and_then(|t| t.as_str()) {
                let s = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
                return Ok(Some(Recorded::Message(OfflineInput {
                    message: text.to_string(),
                    environment: s("environment"),
                    service: s("service"),
                    status_codes: value
                        .get("status_code")
                        .and_then(|v| v.as_i64())
                        .and_then(|c| i32::try_from(c).ok())
                        .into_iter()
                        .collect(),
                    error_rate: value.get("error_rate").and_then(|v| v.as_f64()),
                    affected_users: value.get("affected_users").and_then(|v| v.as_i64()),
                })));
            }
        }
    }
    OfflineInput::parse_line(line).map(|i| Some(Recorded::Message(i)))
}

/// The parts of a plan a policy change can move.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSummary {
    /// Strategy id.
    pub strategy: String,
    /// Whether a human must approve.
    pub requires_approval: bool,
    /// How the expected path ends.
    pub terminal: Option<String>,
    /// Actions of the expected path, in order.
    pub actions: Vec<String>,
}

impl PlanSummary {
    fn of(plan: &RecoveryPlan) -> PlanSummary {
        PlanSummary {
            strategy: plan.strategy.clone(),
            requires_approval: plan.requires_approval,
            terminal: plan.terminal.clone(),
            actions: super::program::expected_path(&plan.steps)
                .iter()
                .map(|s| s.action.clone())
                .collect(),
        }
    }
}

/// A failure whose plan would change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// 1-based line of the recording (or record number from a topic).
    pub line: usize,
    /// Deployment.
    pub deployment_key: String,
    /// Type.
    pub failure_type: FailureType,
    /// Severity.
    pub severity: Severity,
    /// Under the current policy.
    pub current: PlanSummary,
    /// Under the candidate policy.
    pub candidate: PlanSummary,
    /// What moved: `strategy`, `gate`, `terminal`, `actions`.
    pub changes: Vec<&'static str>,
}

/// The result of a simulation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Version of the current policy.
    pub current_version: String,
    /// Version of the candidate policy.
    pub candidate_version: String,
    /// Inputs read.
    pub inputs: usize,
    /// Inputs that were (or became) failures.
    pub failures: usize,
    /// Messages no rule matched: no failure, nothing to decide.
    pub unmatched: usize,
    /// Lines that could not be read, with the reason.
    pub invalid: Vec<(usize, String)>,
    /// Failures per change kind: strategy, gate, terminal, actions.
    pub changed: std::collections::BTreeMap<&'static str, usize>,
    /// Every failure whose plan would change.
    pub differences: Vec<Difference>,
}

/// Plans every input under both policies. Learned statistics are not used:
/// both sides rank by their priors, so the difference is the policy's alone.
pub fn simulate(
    pack: &RulePack,
    config: &DecideConfig,
    current: Arc<Policy>,
    candidate: Arc<Policy>,
    inputs: impl IntoIterator<Item = (usize, Result<Recorded, String>)>,
) -> Report {
    let mut report = Report {
        current_version: current.version().to_string(),
        candidate_version: candidate.version().to_string(),
        ..Report::default()
    };
    let before = Decide::new(Topics::default(), config.clone(), current);
    let after = Decide::new(Topics::default(), config.clone(), candidate);
    for (line, input) in inputs {
        report.inputs += 1;
        let failure = match input {
            Err(reason) => {
                report.invalid.push((line, reason));
                continue;
            }
            Ok(Recorded::Failure(f)) => *f,
            Ok(Recorded::Message(m)) => match offline::failure(pack, &m) {
                Some(f) => f,
                None => {
                    report.unmatched += 1;
                    continue;
                }
            },
        };
        report.failures += 1;
        let a = PlanSummary::of(&before.plan(&failure, failure.last_seen));
        let b = PlanSummary::of(&after.plan(&failure, failure.last_seen));
        let mut changes = Vec::new();
        if a.strategy != b.strategy {
            changes.push("strategy");
        }
        if a.requires_approval != b.requires_approval {
            changes.push("gate");
        }
        if a.terminal != b.terminal {
            changes.push("terminal");
        }
        if a.actions != b.actions {
            changes.push("actions");
        }
        if changes.is_empty() {
            continue;
        }
        for c in &changes {
            *report.changed.entry(c).or_default() += 1;
        }
        report.differences.push(Difference {
            line,
            deployment_key: failure.deployment_key.clone(),
            failure_type: failure.failure_type,
            severity: failure.severity,
            current: a,
            candidate: b,
            changes,
        });
    }
    report
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} inputs: {} failures, {} matched no rule, {} unreadable",
            self.inputs,
            self.failures,
            self.unmatched,
            self.invalid.len()
        )?;
        writeln!(
            f,
            "current policy {}, candidate policy {}",
            self.current_version, self.candidate_version
        )?;
        if self.differences.is_empty() {
            writeln!(f, "no plan would change")?;
        } else {
            let kinds: Vec<String> = [
                ("strategy", "another strategy"),
                ("gate", "another gate"),
                ("terminal", "another terminal"),
                ("actions", "other actions"),
            ]
            .iter()
            .filter_map(|(k, text)| self.changed.get(k).map(|n| format!("{n} {text}")))
            .collect();
            writeln!(
                f,
                "{} of {} plans would change: {}",
                self.differences.len(),
                self.failures,
                kinds.join(", ")
            )?;
        }
        for d in &self.differences {
            writeln!(
                f,
                "\nline {}  {}  {} {}",
                d.line, d.deployment_key, d.failure_type, d.severity
            )?;
            let yes = |b: bool| if b { "approval" } else { "none" };
            let end = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
            let rows = [
                (
                    "strategy",
                    d.current.strategy.clone(),
                    d.candidate.strategy.clone(),
                ),
                (
                    "gate",
                    yes(d.current.requires_approval).into(),
                    yes(d.candidate.requires_approval).into(),
                ),
                (
                    "terminal",
                    end(&d.current.terminal),
                    end(&d.candidate.terminal),
                ),
                (
                    "actions",
                    d.current.actions.join(", "),
                    d.candidate.actions.join(", "),
                ),
            ];
            for (name, a, b) in rows {
                if d.changes.contains(&name) {
                    writeln!(f, "  {name:<9} {a}  ->  {b}")?;
                }
            }
        }
        for (line, reason) in &self.invalid {
            writeln!(f, "line {line}: unreadable: {reason}")?;
        }
        Ok(())
    }
}
