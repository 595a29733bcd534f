//! Builds the learned model shipped in `src/stages/categorize/model.tsv` from
//! the train split of the development corpus, deterministically:
//!
//! ```text
//! cargo run --release --example train_model            # writes model.tsv
//! cargo run --release --example train_model -- --cv    # project-grouped 5-fold figures, writes nothing
//! cargo run --release --example train_model -- --cv-ablate  # the same, each fold without the rules written from it
//! cargo run --release --example train_model -- --cv-ablate --misses  # and the train items it gets wrong
//! ```
//!
//! `--cv-ablate` is the estimate on train of what a new project sees: for
//! each fold, the pack rules whose comments cite only that fold's train items
//! are disabled and the model is trained on the other folds, so neither the
//! rules nor the model of a fold has seen its items. Settings of the verdict
//! are chosen on this figure, never on dev.
//!
//! Only `tests/data/corpus/train.jsonl` is read; dev stays unseen.

#[path = "../tests/common/corpus.rs"]
mod corpus;

use corpus::Delivery;
use medic::domain::FailureType;
use medic::stages::categorize::evaluate::Evaluation;
use medic::stages::categorize::model::{text_features, Model, Training};
use medic::stages::categorize::rules::RulePack;
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = env!("CARGO_MANIFEST_DIR");
    let items = corpus::load("train")?;
    // MEDIC_TRAIN="min_items l2 step epochs" tries other settings under --cv.
    let mut settings = Training::default();
    if let Ok(v) = std::env::var("MEDIC_TRAIN") {
        let p: Vec<&str> = v.split(' ').collect();
        settings = Training {
            min_items: p[0].parse()?,
            l2: p[1].parse()?,
            step: p[2].parse()?,
            epochs: p[3].parse()?,
        };
    }
    if std::env::args().any(|a| a == "--cv-ablate") {
        return cv_ablate(&items, settings);
    }
    if std::env::args().any(|a| a == "--cv") {
        let mut eval = Evaluation::default();
        let (mut rules, mut combined) = (Evaluation::default(), Evaluation::default());
        let pack =
            RulePack::default_pack_from(&std::path::Path::new(root).join("src/stages/categorize"))?
                .without_model();
        for k in 0..5 {
            let train: Vec<(&str, FailureType)> = items
                .iter()
                .filter(|i| fold(&i.project) != k)
                .map(|i| (i.text.as_str(), i.failure_type))
                .collect();
            let model = Model::train(&train, settings);
            for item in items.iter().filter(|i| fold(&i.project) == k) {
                let got = model
                    .opinion(&text_features(&item.text))
                    .map(|o| o.failure_type);
                eval.add(item.failure_type, false, got, false);
                let verdict = |pack: &RulePack| {
                    corpus::failure(pack, item, Delivery::AsReceived).map(|f| f.failure_type)
                };
                rules.add(item.failure_type, false, verdict(&pack), false);
                let with = pack.clone().with_model(model.clone());
                combined.add(item.failure_type, false, verdict(&with), false);
            }
        }
        println!("{}", eval.report("model alone, 5-fold by project on train"));
        // Rules were written from all of train, so these two flatter the
        // rules; their difference is what the model adds.
        println!("{}", rules.report("rules alone on the same folds"));
        println!("{}", combined.report("rules and the fold's model"));
        return Ok(());
    }
    let train: Vec<(&str, FailureType)> = items
        .iter()
        .map(|i| (i.text.as_str(), i.failure_type))
        .collect();
    let model = Model::train(&train, Training::default());
    let out = format!("{root}/src/stages/categorize/model.tsv");
    std::fs::write(&out, model.to_text())?;
    println!("{out}: {} features from {} items", model.len(), items.len());
    Ok(())
}

/// The fold of a project: folds by project, as the train/dev split is.
fn fold(project: &str) -> usize {
    Sha256::digest(project.as_bytes())[0] as usize % 5
}

/// Each default-pack rule id with the train items its comment cites.
fn citations(train: &[corpus::Item]) -> Vec<(String, Vec<String>)> {
    let known: std::collections::HashSet<&str> = train.iter().map(|i| i.id.as_str()).collect();
    let cited = regex::Regex::new(r"\b[a-zA-Z][a-zA-Z0-9]*-\d{3}\b").expect("valid regex");
    let rule = regex::Regex::new(r"^\s*-\s*\{?\s*id:\s*([\w.\-]+)").expect("valid regex");
    let mut out = Vec::new();
    for (_, text) in medic::stages::categorize::rules::DEFAULT_PACKS {
        let mut comment: Vec<String> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with('#') {
                comment.extend(
                    cited
                        .find_iter(trimmed)
                        .map(|m| m.as_str())
                        .filter(|id| known.contains(id))
                        .map(str::to_string),
                );
            } else if let Some(c) = rule.captures(line) {
                out.push((c[1].to_string(), std::mem::take(&mut comment)));
            } else {
                comment.clear();
            }
        }
    }
    out
}

fn cv_ablate(items: &[corpus::Item], settings: Training) -> Result<(), Box<dyn std::error::Error>> {
    let project: std::collections::HashMap<&str, &str> = items
        .iter()
        .map(|i| (i.id.as_str(), i.project.as_str()))
        .collect();
    let cites = citations(items);
    let (mut rules, mut combined) = (Evaluation::default(), Evaluation::default());
    let mut disabled_total = 0;
    let misses = std::env::args().any(|a| a == "--misses");
    for k in 0..5 {
        let off: Vec<&str> = cites
            .iter()
            .filter(|(_, ids)| {
                !ids.is_empty() && ids.iter().all(|id| fold(project[id.as_str()]) == k)
            })
            .map(|(rule, _)| rule.as_str())
            .collect();
        disabled_total += off.len();
        let mut ablate = String::from("version: 1\nrules:\n");
        for id in &off {
            ablate.push_str(&format!("  - {{id: {id}, enabled: false}}\n"));
        }
        let pack = RulePack::load(&[("ablate.yaml".to_string(), ablate)])?.without_model();
        let train: Vec<(&str, FailureType)> = items
            .iter()
            .filter(|i| fold(&i.project) != k)
            .map(|i| (i.text.as_str(), i.failure_type))
            .collect();
        let with = pack.clone().with_model(Model::train(&train, settings));
        for item in items.iter().filter(|i| fold(&i.project) == k) {
            for (pack, eval, show) in [(&pack, &mut rules, false), (&with, &mut combined, misses)] {
                let f = corpus::failure(pack, item, Delivery::AsReceived);
                if show && corpus::is_miss(item, f.as_ref()) {
                    println!("{}", corpus::describe_miss(item, f.as_ref()));
                }
                corpus::record(eval, item, f.as_ref());
            }
        }
    }
    println!(
        "{} rules cite train items; {disabled_total} disabled over the 5 folds",
        cites.iter().filter(|(_, ids)| !ids.is_empty()).count()
    );
    println!(
        "{}",
        rules.report("rules alone, each fold without its own rules")
    );
    println!(
        "{}",
        combined.report("rules and model, each fold without its own rules and items")
    );
    Ok(())
}
