//! Per-record metrics overhead in a stage runner: one consumed and one
//! produced counter (cached handles) and one processing-time histogram
//! sample, with the Prometheus recorder installed.
//!
//! `cargo bench --bench metrics`

use criterion::{criterion_group, criterion_main, Criterion};
use medic::telemetry::StageMetrics;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    medic::telemetry::install();
    let mut m = StageMetrics::new("categorize");
    let record = medic::stages::OutputRecord {
        topic: "medic.windows".into(),
        key: "cart/staging".into(),
        value: Some(vec![0; 200]),
        id: None,
        observation: None,
    };
    let mut g = c.benchmark_group("metrics");
    g.bench_function("per record (consumed + produced + histogram)", |b| {
        b.iter(|| {
            m.consumed(black_box("medic.signals"));
            m.produced(black_box(&record));
            m.processed(black_box(Duration::from_nanos(1_700)));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
