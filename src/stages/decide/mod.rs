//! Decide: categorized failures in, recovery plans out; recovery outcomes in,
//! learned strategy statistics out.
//!
//! The recovery policy ([`policy`]) is a set of strategies, each a decision
//! tree in YAML. For each failure the stage asks, and records in the plan:
//! is the failure severe enough to act on; which strategies apply and which
//! is expected to work best ([`select`]); must a human approve risky actions
//! here; then it walks the chosen tree ([`tree`]) to the expected path. The
//! plan carries every decision with the values it read, every candidate with
//! the reason it lost, and the policy version, so it can be explained and
//! reproduced (`medic plan`, `medic simulate`).
//!
//! Learning: every finished, non-dry-run outcome counts once as a success or
//! a failure of its strategy for its failure type. Counts are kept per
//! deployment in the compacted `medic.decide.stats` topic (co-partitioned
//! with failures, so they move with the partitions) and summed over every
//! deployment this instance holds to rank strategies.

pub mod condition;
pub mod config;
pub mod policy;
pub mod program;
pub mod render;
pub mod select;
pub mod simulate;
pub mod tree;

use crate::codec;
use crate::domain::*;
use crate::stages::{
    decode_input, Action, InputRecord, OutputRecord, ProcessError, Processor, StageName,
};
use crate::topics::Topics;
use config::DecideConfig;
use policy::Policy;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tree::WalkOptions;

/// Outcomes remembered per deployment to count each once.
const RECENT_OUTCOMES: usize = 32;

/// Strategy id of plans that only tell people.
pub const NOTIFY_ONLY: &str = "notify_only";

/// The decide stage.
pub struct Decide {
    topics: Topics,
    config: DecideConfig,
    policy: Arc<Policy>,
    /// Learned counts per deployment key.
    stats: BTreeMap<String, StrategyStats>,
    /// Sum of `stats` per `strategy/failure_type`.
    totals: BTreeMap<String, StrategyCount>,
    dirty: BTreeSet<String>,
    /// Programs per strategy (policy order), for every combination of its
    /// field conditions and with or without medic's gates: a plan copies one.
    programs: Vec<Programs>,
}

/// The programs of one strategy, worked out when the stage starts.
struct Programs {
    /// Its field conditions (bit `i` of a key is the `i`th).
    conditions: Vec<String>,
    /// `(condition bits, gate risky actions)` → program without target.
    by_key: std::collections::HashMap<(u64, bool), Vec<PlanStep>>,
}

/// Strategies with more field conditions than this get their program built per plan.
const MAX_CACHED_CONDITIONS: usize = 8;

fn precompute(policy: &Policy, gate_timeout_secs: u64) -> Vec<Programs> {
    policy
        .strategies()
        .iter()
        .map(|strategy| {
            let conditions = program::field_conditions(strategy);
            let mut by_key = std::collections::HashMap::new();
            if conditions.len() <= MAX_CACHED_CONDITIONS {
                for bits in 0..(1u64 << conditions.len()) {
                    for gate in [false, true] {
                        let holds = |id: &str| {
                            conditions
                                .iter()
                                .position(|c| *c == id)
                                .is_some_and(|i| bits & (1 << i) != 0)
                        };
                        let options = WalkOptions {
                            gate_risky: gate,
                            gate_reason: "",
                            gate_timeout_secs,
                        };
                        by_key.insert(
                            (bits, gate),
                            program::program_with(strategy, &holds, options),
                        );
                    }
                }
            }
            Programs {
                conditions: conditions.iter().map(|c| c.to_string()).collect(),
                by_key,
            }
        })
        .collect()
}

impl Decide {
    /// A decide stage deciding with `policy`.
    pub fn new(topics: Topics, config: DecideConfig, policy: Arc<Policy>) -> Self {
        let programs = precompute(&policy, config.approval_timeout_secs);
        Decide {
            topics,
            config,
            policy,
            stats: BTreeMap::new(),
            totals: BTreeMap::new(),
            dirty: BTreeSet::new(),
            programs,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Learned counts summed over every deployment, per `strategy/failure_type`.
    pub fn learned(&self) -> &BTreeMap<String, StrategyCount> {
        &self.totals
    }

    /// The plan for one failure.
    pub fn plan(&self, failure: &CategorizedFailure, now: Millis) -> RecoveryPlan {
        let mut path = Vec::with_capacity(16);
        let acts = failure.severity <= self.config.act_min_severity;
        path.push(DecisionStep {
            node: "severity".into(),
            question: [
                "Is severity at or above ",
                self.config.act_min_severity.as_str(),
                "?",
            ]
            .concat(),
            answer: if acts {
                "yes: act".into()
            } else {
                "no: notify only".into()
            },
            inputs: BTreeMap::from([("severity".into(), failure.severity.as_str().into())]),
        });
        let mut plan = RecoveryPlan {
            recovery_id: recovery_id(failure),
            failure_id: failure.id.clone(),
            deployment_key: failure.deployment_key.clone(),
            service: failure.service.clone(),
            environment: failure.environment.clone(),
            failure_type: failure.failure_type,
            severity: failure.severity,
            strategy: NOTIFY_ONLY.into(),
            requires_approval: false,
            decision_path: Vec::new(),
            steps: Vec::new(),
            created_at: now,
            estimated_duration_ms: 60_000,
            ci: failure.ci.clone(),
            policy_version: self.policy.version().to_string(),
            candidates: Vec::new(),
            terminal: Some("resolved".into()),
            affected_users: failure.affected_users,
            error_rate: failure.error_rate,
            transient: failure.transient,
        };
        if !acts {
            plan.steps = notify_only_steps(failure, "below the severity medic acts on", "resolved");
            plan.decision_path = path;
            return plan;
        }
        let selection = select::select(&self.policy, failure, |key| {
            self.totals.get(key).copied().unwrap_or_default()
        });
        plan.candidates = selection.candidates;
        let Some(strategy) = selection.chosen else {
            path.push(DecisionStep {
                node: "strategy".into(),
                question: format!(
                    "Which strategy serves a {} {} failure in {}?",
                    failure.severity, failure.failure_type, failure.environment
                ),
                answer: "none applies: tell the owners".into(),
                inputs: selection_inputs(failure),
            });
            plan.steps = notify_only_steps(failure, "no recovery strategy applies", "escalated");
            plan.terminal = Some("escalated".into());
            plan.decision_path = path;
            return plan;
        };
        let learned = selection.learned;
        path.push(DecisionStep {
            node: "strategy".into(),
            question: format!(
                "Which strategy serves a {} {} failure in {}?",
                failure.severity, failure.failure_type, failure.environment
            ),
            answer: [
                strategy.id.as_str(),
                ": expected success ",
                &rate(selection.expected_success),
                " (prior ",
                &rate(strategy.prior_success_rate),
                ", ",
                &learned.succeeded.to_string(),
                " succeeded and ",
                &learned.failed.to_string(),
                " failed since)",
            ]
            .concat(),
            inputs: selection_inputs(failure),
        });
        let env_gate = self
            .config
            .approval_environments
            .iter()
            .any(|e| e == &failure.environment);
        let severity_gate = failure.severity <= self.config.approval_min_severity;
        let history = self
            .stats
            .get(&failure.deployment_key)
            .and_then(|s| {
                s.counts
                    .get(&select::stats_key(&strategy.id, failure.failure_type))
                    .copied()
            })
            .unwrap_or_default();
        let poor_history = history.failed >= 2 && history.failed > history.succeeded;
        let gate_reason = if env_gate {
            format!("{} requires approval", failure.environment)
        } else if severity_gate {
            format!(
                "severity {} is at or above {}",
                failure.severity, self.config.approval_min_severity
            )
        } else if poor_history {
            format!(
                "{} failed {} of {} times on {}",
                strategy.id,
                history.failed,
                history.failed + history.succeeded,
                failure.deployment_key
            )
        } else {
            String::new()
        };
        path.push(DecisionStep {
            node: "approval".into(),
            question: "Must a human approve rollbacks and data-affecting actions?".into(),
            answer: if gate_reason.is_empty() {
                "no".into()
            } else {
                format!("yes: {gate_reason}")
            },
            inputs: BTreeMap::from([
                ("environment".into(), failure.environment.clone()),
                ("severity".into(), failure.severity.as_str().into()),
                (
                    "history".into(),
                    [
                        &history.succeeded.to_string(),
                        " succeeded, ",
                        &history.failed.to_string(),
                        " failed",
                    ]
                    .concat(),
                ),
            ]),
        });
        let options = WalkOptions {
            gate_risky: !gate_reason.is_empty(),
            gate_reason: &gate_reason,
            gate_timeout_secs: self.config.approval_timeout_secs,
        };
        let walk = tree::walk(strategy, failure, options);
        path.extend(walk.decisions);
        plan.strategy = strategy.id.clone();
        plan.requires_approval = walk.gated;
        plan.steps = self.program(strategy, failure, options);
        plan.decision_path = path;
        plan.terminal = Some(walk.terminal.as_str().into());
        plan.estimated_duration_ms = i64::from(strategy.estimated_duration_minutes) * 60_000;
        plan
    }

    /// The program of `strategy` for `failure`: a copy of the precomputed one.
    fn program(
        &self,
        strategy: &policy::Strategy,
        failure: &CategorizedFailure,
        options: WalkOptions<'_>,
    ) -> Vec<PlanStep> {
        let cached = self
            .policy
            .strategies()
            .iter()
            .position(|s| std::ptr::eq(s, strategy))
            .and_then(|i| self.programs.get(i))
            .and_then(|p| {
                let bits = program::condition_bits(strategy, &p.conditions, failure);
                p.by_key.get(&(bits, options.gate_risky))
            });
        match cached {
            Some(steps) => {
                let mut steps = steps.clone();
                for step in &mut steps {
                    step.target.clone_from(&failure.deployment_key);
                }
                steps
            }
            None => program::program(strategy, failure, options),
        }
    }

    /// Counts a finished recovery whose steps all really ran, once: a
    /// simulated step says nothing about how well the strategy works.
    pub fn learn(&mut self, outcome: &RecoveryOutcome, now: Millis) {
        if outcome.dry_run
            || !outcome.simulated_steps.is_empty()
            || !matches!(outcome.outcome, Outcome::Succeeded | Outcome::Failed)
        {
            return;
        }
        let stats = self
            .stats
            .entry(outcome.deployment_key.clone())
            .or_insert_with(|| StrategyStats {
                deployment_key: outcome.deployment_key.clone(),
                counts: BTreeMap::new(),
                recent_outcomes: Vec::new(),
                updated_at: now,
            });
        if stats.recent_outcomes.contains(&outcome.recovery_id) {
            return;
        }
        let key = select::stats_key(&outcome.strategy, outcome.failure_type);
        let count = stats.counts.entry(key.clone()).or_default();
        let total = self.totals.entry(key).or_default();
        match outcome.outcome {
            Outcome::Succeeded => {
                count.succeeded += 1;
                total.succeeded += 1;
            }
            _ => {
                count.failed += 1;
                total.failed += 1;
            }
        }
        stats.recent_outcomes.push(outcome.recovery_id.clone());
        if stats.recent_outcomes.len() > RECENT_OUTCOMES {
            stats.recent_outcomes.remove(0);
        }
        stats.updated_at = now;
        self.dirty.insert(outcome.deployment_key.clone());
    }

    fn add_totals(&mut self, stats: &StrategyStats, sign: i64) {
        for (key, c) in &stats.counts {
            let t = self.totals.entry(key.clone()).or_default();
            t.succeeded += sign * c.succeeded;
            t.failed += sign * c.failed;
        }
    }
}

/// A rate in [0, 1] with two decimals, without the float formatter (hot path).
fn rate(p: f64) -> String {
    let hundredths = (p.clamp(0.0, 1.0) * 100.0).round() as u32;
    let digits = [
        b'0' + (hundredths / 100) as u8,
        b'.',
        b'0' + (hundredths / 10 % 10) as u8,
        b'0' + (hundredths % 10) as u8,
    ];
    String::from_utf8_lossy(&digits).into_owned()
}

fn selection_inputs(failure: &CategorizedFailure) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("failure_type".into(), failure.failure_type.as_str().into()),
        ("severity".into(), failure.severity.as_str().into()),
        ("environment".into(), failure.environment.clone()),
        (
            "components".into(),
            failure.components.iter().enumerate().fold(
                String::with_capacity(32),
                |mut out, (i, c)| {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(c.as_str());
                    out
                },
            ),
        ),
    ])
}

/// The program of a plan that only tells the owners.
fn notify_only_steps(failure: &CategorizedFailure, why: &str, outcome: &str) -> Vec<PlanStep> {
    vec![
        PlanStep {
            index: 0,
            phase: Phase::PostRecovery,
            action: "notify".into(),
            target: failure.deployment_key.clone(),
            params: shared_params(BTreeMap::from([
                ("node".into(), "tell_owners".into()),
                ("next".into(), "done".into()),
                ("channel".into(), "owners".into()),
                ("message".into(), why.into()),
            ])),
            timeout_ms: 60_000,
        },
        PlanStep {
            index: 1,
            phase: Phase::PostRecovery,
            action: "end".into(),
            target: failure.deployment_key.clone(),
            params: shared_params(BTreeMap::from([
                ("node".into(), "done".into()),
                ("outcome".into(), outcome.into()),
                ("message".into(), why.into()),
            ])),
            timeout_ms: 0,
        },
    ]
}

/// The failure id with `#` for `@` (`service/env#first_seen.tag`): one
/// recovery per failure, stable across replays, beginning with the
/// deployment key.
pub fn recovery_id(failure: &CategorizedFailure) -> String {
    let rest = failure
        .id
        .strip_prefix(failure.deployment_key.as_str())
        .and_then(|r| r.strip_prefix('@'));
    match rest {
        Some(rest) => format!("{}#{rest}", failure.deployment_key),
        None => format!("{}#{}", failure.deployment_key, failure.first_seen),
    }
}

impl Processor for Decide {
    fn stage(&self) -> StageName {
        StageName::Decide
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.topics.failures.clone(), self.topics.outcomes.clone()]
    }

    fn state_topics(&self) -> Vec<String> {
        vec![self.topics.decide_stats.clone()]
    }

    fn reset(&mut self) {
        self.stats.clear();
        self.totals.clear();
        self.dirty.clear();
    }

    fn restore(
        &mut self,
        _topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), ProcessError> {
        let key = String::from_utf8_lossy(key).into_owned();
        let new: Option<StrategyStats> = payload
            .map(codec::decode)
            .transpose()
            .map_err(|e| ProcessError::Undecodable(e.to_string()))?;
        if let Some(old) = self.stats.remove(&key) {
            self.add_totals(&old, -1);
        }
        if let Some(new) = new {
            self.add_totals(&new, 1);
            self.stats.insert(key, new);
        }
        Ok(())
    }

    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        if input.topic == self.topics.outcomes {
            let outcome: RecoveryOutcome = decode_input(input)?;
            crate::telemetry::record_recovery(&outcome.recovery_id);
            self.learn(&outcome, now);
            return Ok(Vec::new());
        }
        let failure: CategorizedFailure = decode_input(input)?;
        let plan = self.plan(&failure, now);
        crate::telemetry::record_recovery(&plan.recovery_id);
        Ok(vec![Action::Emit(OutputRecord::encode(
            &self.topics.plans,
            &plan.deployment_key,
            Some(plan.recovery_id.clone()),
            &plan,
        )?)])
    }

    fn end_batch(&mut self, _now: Millis) -> Result<Vec<Action>, ProcessError> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut actions = Vec::new();
        for key in dirty {
            if let Some(stats) = self.stats.get(&key) {
                actions.push(Action::Emit(OutputRecord::encode(
                    &self.topics.decide_stats,
                    &key,
                    None,
                    stats,
                )?));
            }
        }
        Ok(actions)
    }
}

#[cfg(test)]
pub(crate) fn test_failure(
    t: FailureType,
    severity: Severity,
    env: &str,
    transient: bool,
) -> CategorizedFailure {
    CategorizedFailure {
        id: format!("svc/{env}@7"),
        deployment_key: format!("svc/{env}"),
        service: "svc".into(),
        environment: env.into(),
        failure_type: t,
        severity,
        confidence: 0.9,
        runner_up: None,
        evidence: vec![],
        components: vec![Component::Backend],
        transient,
        affected_users: None,
        error_rate: None,
        status_codes: vec![],
        rule_pack_version: "x".into(),
        signal_count: 1,
        first_seen: 7,
        last_seen: 7,
        summary: String::new(),
        pattern_hits: vec![],
        ci: None,
    }
}

#[cfg(test)]
mod tests;
