//! Per-record telemetry overhead in a stage runner: one consumed and one
//! produced counter (cached handles) and one processing-time histogram
//! sample, with the Prometheus recorder installed; and the record's tracing
//! span (stage, topic, partition, offset, deployment, recovery; a `debug`
//! span) with the default `info` filter, and enabled under the text and JSON
//! log formats.
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
    let span = || {
        let span = tracing::debug_span!(
            "record",
            stage = "categorize",
            topic = black_box("medic.signals"),
            partition = black_box(3),
            offset = black_box(123_456_i64),
            deployment = tracing::field::Empty,
            recovery = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("deployment", black_box("cart/staging"));
        }
        let _in = span.enter();
        medic::telemetry::record_recovery(black_box("cart/staging#1764400000500"));
    };
    let text = tracing_subscriber::fmt()
        .with_env_filter("info,metrics=debug")
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(text, || {
        g.bench_function("record span enabled, text logs", |b| b.iter(span));
    });
    let json = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter("info,metrics=debug")
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(json, || {
        g.bench_function("record span enabled, JSON logs", |b| b.iter(span));
    });
    let quiet = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(quiet, || {
        g.bench_function("record span off (default info filter)", |b| b.iter(span));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
