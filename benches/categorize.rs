//! Categorization throughput: the rule-pack scan per line (the hot path of
//! categorize), window folding per signal, and the one-off automaton build.
//!
//! `cargo bench --bench categorize`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medic::config::CategorizeConfig;
use medic::domain::*;
use medic::stages::categorize::rules::{RulePack, DEFAULT_PACK};
use medic::stages::categorize::Categorize;
use medic::topics::Topics;
use std::hint::black_box;

/// A realistic mix: mostly healthy lines, some failure text from the fixtures.
fn lines() -> Vec<String> {
    let healthy = [
        "GET /products/42 200 OK 12ms",
        "level=info msg=\"export scheduled\" id=4711",
        "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.",
        "2025-11-29T07:06:40.000Z INFO checkout: order 81723 placed, total=42.10 EUR, items=3",
        "Started GET \"/api/v1/users/17/preferences\" for 10.0.3.7 at 2025-11-29 07:06:40 +0000",
        "[main] o.s.b.w.embedded.tomcat.TomcatWebServer  : Tomcat started on port(s): 8080 (http)",
        "healthcheck passed: db=ok cache=ok queue=ok latency_ms=3",
        "Successfully pulled image \"registry.example.com/checkout:1.42.0\" in 1.2s",
    ];
    let failing = [
        "Memory cgroup out of memory: Kill process 1012 (heapster) score 1035 or sacrifice child",
        "F1015 11:01:46.499073 1 main.go:39] error getting server version: Get \"https://10.96.0.1:443/version?timeout=32s\": dial tcp 10.96.0.1:443: connect: network is unreachable",
        "alembic.util.exc.CommandError: Target database is not up to date.",
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
    ];
    (0..1000)
        .map(|i| {
            if i % 10 == 0 {
                failing[i / 10 % 4]
            } else {
                healthy[i % 8]
            }
            .to_string()
        })
        .collect()
}

fn signal(i: usize, text: &str) -> Signal {
    let key = DeploymentKey::new(&format!("svc{}", i % 50), "production");
    Signal::plain_text(&key, "medic.logs.raw", i as i64, text, i as i64)
}

fn bench_categorize(c: &mut Criterion) {
    let pack = RulePack::default_pack();
    let lines = lines();
    let bytes: usize = lines.iter().map(String::len).sum();

    let mut group = c.benchmark_group("rule scan");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("1000 mixed lines (bytes)", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| pack.scan(black_box(l)).len())
                .sum::<usize>()
        })
    });
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("1000 mixed lines (lines)", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| pack.scan(black_box(l)).len())
                .sum::<usize>()
        })
    });
    group.finish();

    let signals: Vec<Signal> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| signal(i, l))
        .collect();
    let mut group = c.benchmark_group("categorize core");
    group.throughput(Throughput::Elements(signals.len() as u64));
    group.bench_function("fold 1000 signals into windows", |b| {
        b.iter(|| {
            let mut stage =
                Categorize::new(Topics::default(), CategorizeConfig::default(), pack.clone());
            for s in &signals {
                stage.handle(black_box(s), 0).expect("encodes");
            }
            stage.windows().len()
        })
    });
    group.finish();

    c.bench_function("rule pack build (default pack)", |b| {
        b.iter(|| RulePack::parse(black_box(DEFAULT_PACK), "default_rules.yaml").expect("valid"))
    });
}

criterion_group!(benches, bench_categorize);
criterion_main!(benches);
