//! Decision throughput: `Decide::plan` (select a strategy, walk its tree,
//! record every decision) for the built-in policy, per core.
//!
//! Inputs are the failures the 379 hand-labelled real failure lines become
//! (tests/data/categorization), each planned in production, staging and CI, so
//! every built-in strategy, the production gate and notify-only plans are in
//! the mix. Also: the plan encoded to Avro, which the live stage does next.
//!
//! `cargo bench --bench decide`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medic::config::DecideConfig;
use medic::domain::CategorizedFailure;
use medic::stages::categorize::offline::{self, OfflineInput};
use medic::stages::categorize::rules::RulePack;
use medic::stages::decide::policy::Policy;
use medic::stages::decide::Decide;
use medic::topics::Topics;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

fn failures() -> Vec<CategorizedFailure> {
    let pack = RulePack::default_pack();
    let corpus = include_str!("../tests/data/categorization/labelled.jsonl");
    let mut out = Vec::new();
    for env in ["production", "staging", "ci"] {
        for line in corpus.lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("corpus line");
            let input = OfflineInput {
                message: value["text"].as_str().unwrap_or_default().to_string(),
                environment: Some(env.into()),
                service: Some("checkout".into()),
                ..OfflineInput::default()
            };
            out.extend(offline::failure(&pack, &input));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let failures = failures();
    let decide = Decide::new(
        Topics::default(),
        DecideConfig::default(),
        Arc::new(Policy::default_policy()),
    );
    let mut mix: BTreeMap<String, usize> = BTreeMap::new();
    for f in &failures {
        *mix.entry(decide.plan(f, 0).strategy).or_default() += 1;
    }
    println!("{} failures; plans per strategy: {mix:?}", failures.len());

    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(failures.len() as u64));
    g.bench_function("plan/built-in policy", |b| {
        b.iter(|| {
            for f in &failures {
                black_box(decide.plan(black_box(f), 0));
            }
        })
    });
    g.bench_function("plan+encode/built-in policy", |b| {
        b.iter(|| {
            for f in &failures {
                let plan = decide.plan(black_box(f), 0);
                black_box(medic::codec::encode(&plan).expect("encodes"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// The allocator the `medic` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
