//! Decide: categorized failures in, recovery plans out; recovery outcomes in,
//! learned per-deployment strategy statistics out.
//!
//! The choice is a short, fixed decision path (each answer recorded in the
//! plan): is the failure severe enough to act on; which strategy serves its
//! type; is it transient (retry first); does the environment or severity need a
//! human's approval; has this strategy failed here before (then a human must
//! approve even where none normally would).

pub mod strategies;

use crate::codec;
use crate::config::DecideConfig;
use crate::domain::*;
use crate::stages::{
    decode_input, Action, InputRecord, OutputRecord, ProcessError, Processor, StageName,
};
use crate::topics::Topics;
use std::collections::{BTreeMap, BTreeSet};

/// Outcomes remembered per deployment to count each once.
const RECENT_OUTCOMES: usize = 32;

/// The decide stage.
pub struct Decide {
    topics: Topics,
    config: DecideConfig,
    stats: BTreeMap<String, StrategyStats>,
    dirty: BTreeSet<String>,
}

impl Decide {
    /// A decide stage.
    pub fn new(topics: Topics, config: DecideConfig) -> Self {
        Decide {
            topics,
            config,
            stats: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// The plan for one failure.
    pub fn plan(&self, failure: &CategorizedFailure, now: Millis) -> RecoveryPlan {
        let mut path = Vec::new();
        let mut step = |node: &str, question: String, answer: String| {
            path.push(DecisionStep {
                node: node.into(),
                question,
                answer,
            });
        };
        let acts = failure.severity <= self.config.act_min_severity;
        step(
            "severity_gate",
            format!(
                "Is severity {} at or above {}?",
                failure.severity, self.config.act_min_severity
            ),
            if acts {
                "yes: act".into()
            } else {
                "no: notify only".into()
            },
        );
        let strategy = if acts {
            strategies::for_type(failure.failure_type)
        } else {
            strategies::NOTIFY_ONLY
        };
        if acts {
            step(
                "failure_type",
                format!("Which strategy serves {} failures?", failure.failure_type),
                strategy.id.into(),
            );
            step(
                "transient",
                "Is the failure transient?".into(),
                if failure.transient {
                    "yes: retry first".into()
                } else {
                    "no".into()
                },
            );
        }
        let env_gate = self
            .config
            .approval_environments
            .iter()
            .any(|e| e == &failure.environment);
        let severity_gate = failure.severity <= self.config.approval_min_severity;
        let history = self
            .stats
            .get(&failure.deployment_key)
            .and_then(|s| s.counts.get(strategy.id).copied())
            .unwrap_or_default();
        let poor_history = history.failed >= 2 && history.failed > history.succeeded;
        let requires_approval = acts && (env_gate || severity_gate || poor_history);
        if acts {
            step(
                "approval",
                format!(
                    "Does {} or severity {} need a human's approval?",
                    failure.environment, failure.severity
                ),
                match (env_gate, severity_gate) {
                    (true, _) => format!("yes: {} requires approval", failure.environment),
                    (_, true) => format!(
                        "yes: severity at or above {}",
                        self.config.approval_min_severity
                    ),
                    _ => "no".into(),
                },
            );
            step(
                "history",
                format!(
                    "How has {} done on {} before?",
                    strategy.id, failure.deployment_key
                ),
                format!(
                    "{} succeeded, {} failed{}",
                    history.succeeded,
                    history.failed,
                    if poor_history {
                        ": approval required"
                    } else {
                        ""
                    }
                ),
            );
        }
        let steps = strategies::steps(strategy, &failure.deployment_key, acts && failure.transient);
        RecoveryPlan {
            recovery_id: recovery_id(failure),
            failure_id: failure.id.clone(),
            deployment_key: failure.deployment_key.clone(),
            service: failure.service.clone(),
            environment: failure.environment.clone(),
            failure_type: failure.failure_type,
            severity: failure.severity,
            strategy: strategy.id.into(),
            requires_approval,
            decision_path: path,
            estimated_duration_ms: steps.iter().map(|s| s.timeout_ms).sum(),
            steps,
            created_at: now,
            ci: failure.ci.clone(),
        }
    }

    /// Counts a finished, non-dry-run recovery once.
    pub fn learn(&mut self, outcome: &RecoveryOutcome, now: Millis) {
        if outcome.dry_run || !matches!(outcome.outcome, Outcome::Succeeded | Outcome::Failed) {
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
        let count = stats.counts.entry(outcome.strategy.clone()).or_default();
        match outcome.outcome {
            Outcome::Succeeded => count.succeeded += 1,
            _ => count.failed += 1,
        }
        stats.recent_outcomes.push(outcome.recovery_id.clone());
        if stats.recent_outcomes.len() > RECENT_OUTCOMES {
            stats.recent_outcomes.remove(0);
        }
        stats.updated_at = now;
        self.dirty.insert(outcome.deployment_key.clone());
    }
}

/// `service/env#first_seen`: one recovery per failure, stable across replays.
pub fn recovery_id(failure: &CategorizedFailure) -> String {
    format!("{}#{}", failure.deployment_key, failure.first_seen)
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
        self.dirty.clear();
    }

    fn restore(
        &mut self,
        _topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), ProcessError> {
        let key = String::from_utf8_lossy(key).into_owned();
        match payload {
            None => {
                self.stats.remove(&key);
            }
            Some(bytes) => {
                let stats =
                    codec::decode(bytes).map_err(|e| ProcessError::Undecodable(e.to_string()))?;
                self.stats.insert(key, stats);
            }
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
            self.learn(&outcome, now);
            return Ok(Vec::new());
        }
        let failure: CategorizedFailure = decode_input(input)?;
        let plan = self.plan(&failure, now);
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
mod tests {
    use super::*;

    fn failure(
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

    fn decide() -> Decide {
        Decide::new(Topics::default(), DecideConfig::default())
    }

    #[test]
    fn each_type_maps_to_its_strategy() {
        for (t, want) in [
            (FailureType::Resource, "infrastructure_recovery"),
            (FailureType::Application, "application_recovery"),
            (FailureType::Data, "database_recovery"),
            (FailureType::Configuration, "configuration_fix"),
            (FailureType::Security, "security_response"),
            (FailureType::Network, "network_recovery"),
        ] {
            let plan = decide().plan(&failure(t, Severity::Medium, "staging", false), 1);
            assert_eq!(plan.strategy, want);
            assert!(!plan.requires_approval);
            assert_eq!(plan.recovery_id, "svc/staging#7");
        }
    }

    #[test]
    fn production_needs_approval_and_says_why() {
        let plan = decide().plan(
            &failure(
                FailureType::Application,
                Severity::High,
                "production",
                false,
            ),
            1,
        );
        assert!(plan.requires_approval);
        let approval = plan
            .decision_path
            .iter()
            .find(|s| s.node == "approval")
            .expect("approval node");
        assert_eq!(approval.answer, "yes: production requires approval");
        let phases: Vec<Phase> = plan.steps.iter().map(|s| s.phase).collect();
        let mut sorted = phases.clone();
        sorted.sort();
        assert_eq!(phases, sorted, "steps run in phase order");
    }

    #[test]
    fn transient_failures_retry_first_and_info_only_notifies() {
        let plan = decide().plan(&failure(FailureType::Timing, Severity::Low, "ci", true), 1);
        assert_eq!(plan.steps[1].action, "retry_deployment");
        let plan = decide().plan(
            &failure(FailureType::HumanError, Severity::Info, "ci", false),
            1,
        );
        assert_eq!(plan.strategy, "notify_only");
        assert!(!plan.requires_approval);
        assert_eq!(plan.steps.len(), 1);
    }

    #[test]
    fn a_strategy_that_keeps_failing_needs_a_human() {
        let mut d = decide();
        for i in 0..3 {
            let outcome = RecoveryOutcome {
                recovery_id: format!("svc/staging#{i}"),
                failure_id: String::new(),
                deployment_key: "svc/staging".into(),
                service: "svc".into(),
                environment: "staging".into(),
                failure_type: FailureType::Application,
                severity: Severity::Medium,
                strategy: "application_recovery".into(),
                outcome: Outcome::Failed,
                dry_run: false,
                started_at: 0,
                finished_at: 1,
                steps_total: 4,
                steps_succeeded: 1,
                detail: String::new(),
                ci: None,
            };
            d.learn(&outcome, 1);
            d.learn(&outcome, 1); // redelivered: counted once
        }
        assert_eq!(
            d.stats["svc/staging"].counts["application_recovery"].failed,
            3
        );
        let plan = d.plan(
            &failure(FailureType::Application, Severity::Medium, "staging", false),
            2,
        );
        assert!(plan.requires_approval);
        assert_eq!(
            d.end_batch(2).expect("ok").len(),
            1,
            "stats changelog written once per batch"
        );
    }
}
