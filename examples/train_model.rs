//! Builds the learned model shipped in `src/stages/categorize/model.tsv` from
//! the train split of the development corpus, deterministically:
//!
//! ```text
//! cargo run --release --example train_model            # writes model.tsv
//! cargo run --release --example train_model -- --cv    # project-grouped 5-fold figures, writes nothing
//! ```
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
    if std::env::args().any(|a| a == "--cv") {
        // Folds by project, as the train/dev split is.
        let fold = |p: &str| Sha256::digest(p.as_bytes())[0] as usize % 5;
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
