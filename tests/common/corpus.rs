//! The development corpus (`tests/data/corpus/`): reading its items and
//! putting one through the categorize stage the way it reaches medic.
//! Shared by `tests/corpus_quality.rs`, `tests/categorization_verdicts.rs`
//! and the corpus examples.
#![allow(dead_code)]

use medic::domain::{CategorizedFailure, CiEvent, CiPlatform, CiStatus, FailureType};
use medic::stages::categorize::evaluate::Evaluation;
use medic::stages::categorize::offline::{failure_of_lines, failure_of_signals};
use medic::stages::categorize::rules::RulePack;
use medic::stages::ingest::ci_signal;
use serde::Deserialize;

/// One corpus item; the fields are documented in the corpus README.
#[derive(Debug, Deserialize)]
pub struct Item {
    pub id: String,
    pub text: String,
    pub project: String,
    pub ecosystem: String,
    pub kind: String,
    pub origin: String,
    #[serde(rename = "type")]
    pub failure_type: FailureType,
    pub transient: bool,
    pub why: String,
}

/// How an item reaches the categorize stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delivery {
    /// Every item as log lines from a shipper, one signal per line, and
    /// nothing else: an item counts as named only when its text is
    /// recognised as a failure.
    Lines,
    /// As medic receives it: a CI item (`origin: ci`) as the failed run's
    /// webhook event carrying the excerpt as its log (what Jenkins, Azure
    /// DevOps and the generic format deliver), a runtime item as log lines.
    AsReceived,
}

/// The items of `split` (`train` or `dev`).
pub fn load(split: &str) -> Result<Vec<Item>, String> {
    let path = format!(
        "{}/tests/data/corpus/{split}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("{path}:{}: {e}", n + 1)))
        .collect()
}

/// The failure the categorize stage reports for `item` delivered as `delivery`.
pub fn failure(pack: &RulePack, item: &Item, delivery: Delivery) -> Option<CategorizedFailure> {
    if delivery == Delivery::Lines || item.origin != "ci" {
        return failure_of_lines(pack, "unknown", item.text.lines());
    }
    failed_ci_run(pack, &item.text)
}

/// What the stage reports for a failed CI run whose webhook event carried
/// `log` as its log excerpt (as Jenkins, Azure DevOps and the generic format
/// deliver it), through ingest's own CI-event-to-signal code.
pub fn failed_ci_run(pack: &RulePack, log: &str) -> Option<CategorizedFailure> {
    let event = CiEvent {
        id: "offline-run".into(),
        platform: CiPlatform::Generic,
        event_type: "pipeline".into(),
        status: CiStatus::Failure,
        service: "offline".into(),
        environment: "ci".into(),
        pipeline: "build".into(),
        job: None,
        run_id: "1".into(),
        run_attempt: 1,
        commit_sha: None,
        branch: None,
        url: None,
        actor: None,
        failure_reason: None,
        failed_steps: Vec::new(),
        log_excerpt: Some(log.into()),
        started_at: None,
        finished_at: Some(0),
        received_at: 0,
        repository: None,
    };
    failure_of_signals(pack, ci_signal(&event, "medic.ci.events", 0, 0))
}

/// The figures for `items` delivered as `delivery`.
pub fn evaluate(pack: &RulePack, items: &[Item], delivery: Delivery) -> Evaluation {
    let mut eval = Evaluation::default();
    for item in items {
        record(&mut eval, item, failure(pack, item, delivery).as_ref());
    }
    eval
}

/// Adds what medic reported for `item` to `eval`.
pub fn record(eval: &mut Evaluation, item: &Item, got: Option<&CategorizedFailure>) {
    eval.add(
        item.failure_type,
        item.transient,
        got.map(|f| f.failure_type),
        got.is_some_and(|f| f.transient),
    );
}

/// True when medic's type or transient flag for `item` is not its label.
pub fn is_miss(item: &Item, got: Option<&CategorizedFailure>) -> bool {
    got.map(|f| f.failure_type) != Some(item.failure_type)
        || got.is_some_and(|f| f.transient) != item.transient
}

/// A train item medic gets wrong, for whoever writes rules: the label, what
/// medic said with the rules that said it, the label's reason, the text.
pub fn describe_miss(item: &Item, got: Option<&CategorizedFailure>) -> String {
    let flag = |t: bool| if t { "/t" } else { "" };
    let rules: Vec<String> = got
        .iter()
        .flat_map(|f| &f.evidence)
        .map(|e| format!("{}={}", e.rule_id, e.failure_type))
        .collect();
    format!(
        "== {} ({}) label {}{} got {}{} [{}]\n   why: {}\n{}\n",
        item.id,
        item.origin,
        item.failure_type,
        flag(item.transient),
        got.map_or("-".to_string(), |f| f.failure_type.to_string()),
        flag(got.is_some_and(|f| f.transient)),
        rules.join(" "),
        item.why,
        item.text
            .lines()
            .map(|l| format!("   | {}", l.chars().take(220).collect::<String>()))
            .collect::<Vec<_>>()
            .join("\n")
    )
}
