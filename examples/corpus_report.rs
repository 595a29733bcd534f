//! Prints categorization figures on the development corpus, and on `train`
//! the items medic gets wrong, for whoever writes rules.
//!
//! ```text
//! cargo run --release --example corpus_report -- train --misses
//! cargo run --release --example corpus_report -- train --misses --from-disk --ecosystem go,rust
//! cargo run --release --example corpus_report -- train --group dep2,cfg2   # a new batch, before rules are written from it
//! cargo run --release --example corpus_report -- dev [--rules-only] [--lines]
//! ```
//!
//! Items go through the categorize stage as medic receives them: a CI item as
//! its failed run's webhook event carrying the excerpt, a runtime item as log
//! lines. `--lines` sends every item as bare log lines instead, with no CI
//! verdict.
//!
//! `--from-disk` reads the default pack from `src/stages/categorize/` instead
//! of the copy compiled in (the model too, from `model.tsv`), so an edited
//! pack file is measured without a rebuild. `--rules-only` leaves the learned
//! model out. `--ecosystem` keeps the items of those ecosystems only, and
//! `--group` those whose id starts with one of the groups: a batch just added
//! to train, measured before any rule is written from it, is one more figure
//! on unseen text. `dev`
//! prints figures only, never an item: rules are written from `train`
//! (`tests/data/corpus/README.md`).

#[path = "../tests/common/corpus.rs"]
mod corpus;

use corpus::Delivery;
use medic::stages::categorize::evaluate::Evaluation;
use medic::stages::categorize::offline::failure_of_lines;
use medic::stages::categorize::rules::RulePack;

/// The comma-separated values after `flag`, or none.
fn list_arg(args: &[String], flag: &str) -> Vec<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.first().map(String::as_str).unwrap_or("train");
    let misses = args.iter().any(|a| a == "--misses");
    let from_disk = args.iter().any(|a| a == "--from-disk");
    let rules_only = args.iter().any(|a| a == "--rules-only");
    let delivery = if args.iter().any(|a| a == "--lines") {
        Delivery::Lines
    } else {
        Delivery::AsReceived
    };
    let ecosystems = list_arg(&args, "--ecosystem");
    let groups: Vec<String> = list_arg(&args, "--group")
        .iter()
        .map(|g| format!("{g}-"))
        .collect();
    if !matches!(split, "train" | "dev") {
        return Err(format!("split must be train or dev, not {split:?}").into());
    }
    if misses && split == "dev" {
        return Err("dev items are not printed: rules are written from train only".into());
    }
    let items = corpus::load(split)?;
    let pack = if from_disk {
        RulePack::default_pack_from(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stages/categorize"),
        )?
    } else {
        RulePack::default_pack()
    };
    let pack = if rules_only {
        pack.without_model()
    } else {
        pack
    };
    let mut eval = Evaluation::default();
    for item in &items {
        if !ecosystems.is_empty() && !ecosystems.contains(&item.ecosystem) {
            continue;
        }
        if !groups.is_empty() && !groups.iter().any(|g| item.id.starts_with(g.as_str())) {
            continue;
        }
        let failure = corpus::failure(&pack, item, delivery);
        corpus::record(&mut eval, item, failure.as_ref());
        if misses && corpus::is_miss(item, failure.as_ref()) {
            println!("{}", corpus::describe_miss(item, failure.as_ref()));
        }
    }
    println!("{}", eval.report(split));
    // Lines from passing runs (tests/data/categorization/healthy.txt) must get no type.
    let healthy = include_str!("../tests/data/categorization/healthy.txt");
    for line in healthy
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        if let Some(f) = failure_of_lines(&pack, "unknown", [line]) {
            let rules: Vec<&str> = f.evidence.iter().map(|e| e.rule_id.as_str()).collect();
            println!(
                "healthy line given {}: {line} [{}]",
                f.failure_type,
                rules.join(" ")
            );
        }
    }
    Ok(())
}
