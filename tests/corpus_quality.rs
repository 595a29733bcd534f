//! Does categorization name failures it has never seen? Figures on the
//! development corpus (`tests/data/corpus/`): real failure texts from other
//! projects, split by source project into `train` (rules may be written from
//! it, and cite its ids) and `dev` (never read while writing rules). Each
//! item goes through the categorize stage's own window code as medic receives
//! it: a CI item as its failed run's webhook event carrying the excerpt, a
//! runtime item as log lines from a shipper. A second figure sends every item
//! as bare log lines with no CI verdict, so an item counts as named only when
//! its text is recognised as a failure.
//!
//! The dev figures are the quality claim; the floors below are set from what
//! the default pack reaches, and `docs/categorization.md` quotes the printed
//! report (`cargo test --test corpus_quality -- --nocapture`).

#[path = "common/corpus.rs"]
mod corpus;

use corpus::{evaluate, Delivery, Item};
use medic::domain::FailureType;
use medic::stages::categorize::evaluate::Evaluation;
use medic::stages::categorize::model::{Model, Training, DEFAULT_MODEL};
use medic::stages::categorize::rules::RulePack;

struct Floors {
    coverage: f64,
    accuracy: f64,
    macro_f1: f64,
    transient_f1: f64,
}

/// Dev, as medic receives each item, may not drop below these (set from
/// what the pack reaches).
const DEV: Floors = Floors {
    coverage: 0.97,
    accuracy: 0.82,
    macro_f1: 0.83,
    transient_f1: 0.77,
};

/// Dev as bare log lines, no CI verdict: what the text alone is recognised as.
const DEV_LINES: Floors = Floors {
    coverage: 0.84,
    accuracy: 0.74,
    macro_f1: 0.79,
    transient_f1: 0.77,
};

fn load(split: &str) -> Vec<Item> {
    corpus::load(split).unwrap_or_else(|e| panic!("{e}"))
}

/// `eval`'s figures that fall below `floors`, named after `what`.
fn below(what: &str, eval: &Evaluation, floors: &Floors) -> Vec<String> {
    [
        ("coverage", eval.coverage(), floors.coverage),
        ("accuracy", eval.accuracy(), floors.accuracy),
        ("macro-F1", eval.macro_f1(), floors.macro_f1),
        ("transient F1", eval.transient_f1(), floors.transient_f1),
    ]
    .iter()
    .filter(|(_, got, floor)| got < floor)
    .map(|(name, got, floor)| format!("{what} {name} {got:.3} < {floor}"))
    .collect()
}

#[test]
fn the_corpus_is_big_varied_and_split_by_project() {
    let (train, dev) = (load("train"), load("dev"));
    let all: Vec<&Item> = train.iter().chain(&dev).collect();
    assert!(all.len() >= 1500, "{} items", all.len());
    for t in FailureType::ALL {
        let n = all.iter().filter(|i| i.failure_type == *t).count();
        assert!(n >= 60, "{t}: {n} items");
    }
    let logs = all.iter().filter(|i| i.kind == "log").count();
    assert!(
        logs * 2 >= all.len(),
        "{logs} multi-line logs of {}",
        all.len()
    );
    // No project on both sides, and dev is about a third.
    let train_projects: std::collections::HashSet<&str> =
        train.iter().map(|i| i.project.as_str()).collect();
    for item in &dev {
        assert!(
            !train_projects.contains(item.project.as_str()),
            "{} in both",
            item.id
        );
    }
    let share = dev.len() as f64 / all.len() as f64;
    assert!(
        (0.25..0.42).contains(&share),
        "dev is {share:.2} of the corpus"
    );
}

#[test]
fn the_default_pack_names_failures_from_projects_it_was_not_written_from() {
    let pack = RulePack::default_pack();
    let rules_only = pack.clone().without_model();
    let (train, dev) = (load("train"), load("dev"));
    let train_eval = evaluate(&pack, &train, Delivery::AsReceived);
    let dev_rules = evaluate(&rules_only, &dev, Delivery::AsReceived);
    let dev_eval = evaluate(&pack, &dev, Delivery::AsReceived);
    let dev_lines = evaluate(&pack, &dev, Delivery::Lines);
    // Printed with --nocapture; docs/categorization.md quotes it.
    println!(
        "{}\n{}\n{}\n{}",
        train_eval.report("train, as received (rules and model written from it)"),
        dev_rules.report("dev, as received, rules alone"),
        dev_eval.report("dev, as received, rules and the learned model"),
        dev_lines.report("dev, every item as bare log lines, rules and the learned model"),
    );
    let mut failures = below("dev as received", &dev_eval, &DEV);
    failures.extend(below("dev as lines", &dev_lines, &DEV_LINES));
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        dev_eval.report("dev")
    );
    // The model ships only because it adds to the rules on unseen projects.
    assert!(
        dev_eval.macro_f1() > dev_rules.macro_f1(),
        "the learned model does not raise dev macro-F1: {:.3} with it, {:.3} without",
        dev_eval.macro_f1(),
        dev_rules.macro_f1()
    );
}

/// The shipped model is what `cargo run --release --example train_model`
/// builds from train.jsonl: retrained here, it must come out identical.
#[test]
fn the_shipped_model_is_reproducible_from_the_train_split() {
    let train = load("train");
    let items: Vec<(&str, FailureType)> = train
        .iter()
        .map(|i| (i.text.as_str(), i.failure_type))
        .collect();
    let model = Model::train(&items, Training::default());
    assert!(
        model.to_text() == DEFAULT_MODEL,
        "src/stages/categorize/model.tsv is stale: run `cargo run --release --example train_model`"
    );
    assert!(model.len() > 1000, "{} features", model.len());
}
