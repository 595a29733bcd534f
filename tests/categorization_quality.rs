//! How well the default rule pack labels real failure text: per-type
//! precision and recall and macro-F1 over the labelled set in
//! `tests/data/categorization/labelled.jsonl`, through the same code path as
//! `medic categorize --input`. The floors below are set from what the pack
//! reaches; a change that lowers them fails here. Current figures are in
//! `docs/categorization.md`.

use medic::domain::FailureType;
use medic::stages::categorize::offline::{categorize, OfflineInput};
use medic::stages::categorize::rules::RulePack;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
struct Labelled {
    text: String,
    source: String,
    #[serde(rename = "type")]
    failure_type: FailureType,
    transient: bool,
    why: String,
}

/// Macro-F1 over the ten types may not drop below this.
const MACRO_F1_FLOOR: f64 = 0.88;
/// Share of lines that must get any type at all.
const COVERAGE_FLOOR: f64 = 0.92;
/// Share of transient labels the pack must reproduce.
const TRANSIENT_AGREEMENT_FLOOR: f64 = 0.93;

fn load() -> Vec<Labelled> {
    let text = include_str!("data/categorization/labelled.jsonl");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("labelled.jsonl:{}: {e}", n + 1))
        })
        .collect()
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

fn f1(c: Counts) -> (f64, f64, f64) {
    let p = if c.tp + c.fp == 0 {
        0.0
    } else {
        c.tp as f64 / (c.tp + c.fp) as f64
    };
    let r = if c.tp + c.fn_ == 0 {
        0.0
    } else {
        c.tp as f64 / (c.tp + c.fn_) as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

#[test]
fn the_default_pack_meets_its_quality_floors_on_real_failure_text() {
    let set = load();
    assert!(set.len() >= 300, "the labelled set has {} lines", set.len());
    assert!(set
        .iter()
        .all(|l| !l.why.is_empty() && !l.source.is_empty()));
    let pack = RulePack::default_pack();
    let mut counts: BTreeMap<FailureType, Counts> = FailureType::ALL
        .iter()
        .map(|t| (*t, Counts::default()))
        .collect();
    let (mut covered, mut transient_agree) = (0usize, 0usize);
    let mut misses = Vec::new();
    for item in &set {
        let result = categorize(
            &pack,
            &OfflineInput {
                message: item.text.clone(),
                ..Default::default()
            },
        );
        if result.transient == item.transient {
            transient_agree += 1;
        }
        match result.failure_type {
            Some(got) => {
                covered += 1;
                if got == item.failure_type {
                    counts.entry(got).or_default().tp += 1;
                } else {
                    counts.entry(got).or_default().fp += 1;
                    counts.entry(item.failure_type).or_default().fn_ += 1;
                    misses.push(format!(
                        "{:>14} as {:<14} {}",
                        item.failure_type.as_str(),
                        got.as_str(),
                        item.text
                    ));
                }
            }
            None => {
                counts.entry(item.failure_type).or_default().fn_ += 1;
                misses.push(format!(
                    "{:>14} as {:<14} {}",
                    item.failure_type.as_str(),
                    "(nothing)",
                    item.text
                ));
            }
        }
    }
    let mut report = String::from("type            precision  recall  f1     n\n");
    let mut macro_f1 = 0.0;
    for (t, c) in &counts {
        let (p, r, f) = f1(*c);
        macro_f1 += f;
        report.push_str(&format!(
            "{:<15} {p:>9.3} {r:>7.3} {f:>6.3} {:>5}\n",
            t.as_str(),
            c.tp + c.fn_
        ));
    }
    macro_f1 /= counts.len() as f64;
    let coverage = covered as f64 / set.len() as f64;
    let transient = transient_agree as f64 / set.len() as f64;
    report.push_str(&format!(
        "macro-F1 {macro_f1:.3}, coverage {coverage:.3}, transient agreement {transient:.3}, {} lines\n",
        set.len()
    ));
    // Printed with --nocapture; docs/categorization.md quotes it.
    println!("{report}\nmisses:\n{}", misses.join("\n"));
    assert!(
        macro_f1 >= MACRO_F1_FLOOR,
        "macro-F1 {macro_f1:.3} < {MACRO_F1_FLOOR}\n{report}"
    );
    assert!(
        coverage >= COVERAGE_FLOOR,
        "coverage {coverage:.3} < {COVERAGE_FLOOR}\n{report}"
    );
    assert!(
        transient >= TRANSIENT_AGREEMENT_FLOOR,
        "transient agreement {transient:.3}\n{report}"
    );
}

#[test]
fn lines_from_healthy_runs_get_no_failure_type() {
    let pack = RulePack::default_pack();
    let flagged: Vec<(String, FailureType, Vec<String>)> =
        include_str!("data/categorization/healthy.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|line| {
                let result = categorize(
                    &pack,
                    &OfflineInput {
                        message: line.to_string(),
                        ..Default::default()
                    },
                );
                let rules = result.evidence.iter().map(|e| e.rule_id.clone()).collect();
                result.failure_type.map(|t| (line.to_string(), t, rules))
            })
            .collect();
    assert!(
        flagged.is_empty(),
        "healthy lines given a type: {flagged:#?}"
    );
    // The same tools, failing, are still application failures.
    for line in [
        "github_actions CodeQL job linters failed; failed steps: Run yarn run format-check",
        "error Command failed with exit code 1. (yarn run lint)",
        "eslint found 3 problems in src/cart.ts",
        "Diff in /src/main.rs at line 12: rustfmt check failed",
        "[error] prettier --check: Code style issues found in 2 files",
    ] {
        let result = categorize(
            &pack,
            &OfflineInput {
                message: line.to_string(),
                ..Default::default()
            },
        );
        assert_eq!(
            result.failure_type,
            Some(FailureType::Application),
            "{line}"
        );
    }
}
