//! Choosing a strategy: which ones apply, and which is expected to work best.
//!
//! A strategy applies when the failure's type, severity, environment and one
//! of its components are in the strategy's `applies_to` lists (an empty list
//! matches everything). Among those that apply, the one with the highest
//! expected success wins; equal rates keep policy order (built-ins first,
//! then user files). Expected success is the mean of a Beta posterior: the
//! YAML prior counts as `prior_weight` pseudo-recoveries at
//! `prior_success_rate`, and every real recovery of this strategy for this
//! failure type adds one success or one failure.

use super::policy::{Policy, Strategy};
use crate::domain::{Candidate, CategorizedFailure, StrategyCount};

/// The key learned counts are kept under: `strategy/failure_type`.
pub fn stats_key(strategy: &str, failure_type: crate::domain::FailureType) -> String {
    format!("{strategy}/{}", failure_type.as_str())
}

/// Posterior mean success rate of `strategy` after `learned` recoveries.
pub fn expected_success(strategy: &Strategy, learned: StrategyCount) -> f64 {
    let n = (learned.succeeded + learned.failed) as f64;
    (strategy.prior_success_rate * strategy.prior_weight + learned.succeeded as f64)
        / (strategy.prior_weight + n)
}

/// Why `strategy` is not for `failure`, or `None` when it is.
pub fn mismatch(strategy: &Strategy, failure: &CategorizedFailure) -> Option<String> {
    let a = &strategy.applies_to;
    if !a.types.is_empty() && !a.types.contains(&failure.failure_type) {
        return Some(format!("not for {} failures", failure.failure_type));
    }
    if !a.severities.is_empty() && !a.severities.contains(&failure.severity) {
        return Some(format!("not for severity {}", failure.severity));
    }
    if !a.environments.is_empty() && !a.environments.contains(&failure.environment) {
        return Some(format!("not for environment {}", failure.environment));
    }
    if !a.components.is_empty() && !failure.components.iter().any(|c| a.components.contains(c)) {
        return Some("none of the failure's components".into());
    }
    None
}

/// A choice and the candidates behind it.
#[derive(Debug, Clone)]
pub struct Selection<'p> {
    /// The strategy chosen, if any applies.
    pub chosen: Option<&'p Strategy>,
    /// Its expected success.
    pub expected_success: f64,
    /// Its learned counts.
    pub learned: StrategyCount,
    /// Every strategy with its verdict, in policy order.
    pub candidates: Vec<Candidate>,
}

/// Chooses a strategy for `failure`; `learned` gives the counts for a stats key.
pub fn select<'p>(
    policy: &'p Policy,
    failure: &CategorizedFailure,
    learned: impl Fn(&str) -> StrategyCount,
) -> Selection<'p> {
    let mut best: Option<(usize, f64, StrategyCount)> = None;
    let mut candidates: Vec<Candidate> = Vec::with_capacity(policy.strategies().len());
    for (i, s) in policy.strategies().iter().enumerate() {
        match mismatch(s, failure) {
            Some(reason) => candidates.push(Candidate {
                strategy: s.id.clone(),
                expected_success: 0.0,
                verdict: reason,
            }),
            None => {
                let counts = learned(&stats_key(&s.id, failure.failure_type));
                let p = expected_success(s, counts);
                if best.is_none_or(|(_, b, _)| p > b) {
                    best = Some((i, p, counts));
                }
                candidates.push(Candidate {
                    strategy: s.id.clone(),
                    expected_success: p,
                    verdict: String::new(),
                });
            }
        }
    }
    let Some((winner, rate, counts)) = best else {
        return Selection {
            chosen: None,
            expected_success: 0.0,
            learned: StrategyCount::default(),
            candidates,
        };
    };
    let chosen = &policy.strategies()[winner];
    for c in candidates.iter_mut().filter(|c| c.verdict.is_empty()) {
        c.verdict = if c.strategy == chosen.id {
            "chosen".into()
        } else {
            format!(
                "applies, but expects {:.2} success against {:.2} for {}",
                c.expected_success, rate, chosen.id
            )
        };
    }
    Selection {
        chosen: Some(chosen),
        expected_success: rate,
        learned: counts,
        candidates,
    }
}
