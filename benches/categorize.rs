//! Categorization throughput.
//!
//! * the full classify-with-evidence path (scan + fold into windows) over
//!   real fixture lines and a seeded synthetic CI corpus of ~200-byte lines,
//!   with the default pack and with a 2,000-rule pack;
//! * baselines on the same lines and the 2,000-rule pack's literals: one regex
//!   per rule per line (what the original Python design did), one
//!   `regex::RegexSet`, and a memchr pass over every byte (the ceiling);
//! * the Aho-Corasick automaton kinds side by side;
//! * pack build time (memory is printed once at start).
//!
//! `cargo bench --bench categorize`

#[path = "support/corpus.rs"]
mod corpus;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medic::config::CategorizeConfig;
use medic::domain::*;
use medic::stages::categorize::rules::RulePack;
use medic::stages::categorize::Categorize;
use medic::topics::Topics;
use regex::{Regex, RegexSetBuilder};
use std::hint::black_box;
use std::time::Instant;

/// Real failure text from the fixtures mixed with healthy lines (1 in 10 fails).
fn fixture_lines() -> Vec<String> {
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

fn signals(lines: &[String]) -> Vec<Signal> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let key = DeploymentKey::new(&format!("svc{}", i % 50), "production");
            Signal::plain_text(&key, "medic.logs.raw", i as i64, l, i as i64)
        })
        .collect()
}

fn bytes(lines: &[String]) -> u64 {
    lines.iter().map(|l| l.len() as u64).sum()
}

/// The full path: scan every line, fold hits with evidence into windows.
fn classify(c: &mut Criterion, group: &str, pack: &RulePack, lines: &[String]) {
    let signals = signals(lines);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(bytes(lines)));
    g.bench_function("classify with evidence (bytes)", |b| {
        b.iter(|| {
            let mut stage =
                Categorize::new(Topics::default(), CategorizeConfig::default(), pack.clone());
            for s in &signals {
                stage.handle(black_box(s), 0).expect("encodes");
            }
            stage.windows().len()
        })
    });
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("classify with evidence (lines)", |b| {
        b.iter(|| {
            let mut stage =
                Categorize::new(Topics::default(), CategorizeConfig::default(), pack.clone());
            for s in &signals {
                stage.handle(black_box(s), 0).expect("encodes");
            }
            stage.windows().len()
        })
    });
    g.bench_function("scan only (lines)", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| pack.scan(black_box(l)).len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn literal_regex(keywords: &[&str]) -> String {
    let alternatives: Vec<String> = keywords.iter().map(|k| regex::escape(k)).collect();
    format!("(?i){}", alternatives.join("|"))
}

fn bench(c: &mut Criterion) {
    let default_pack = RulePack::default_pack();
    let started = Instant::now();
    let big_pack = RulePack::load(&[("synthetic-2000.yaml".into(), corpus::big_pack(7, 2_000))])
        .expect("valid pack");
    eprintln!(
        "packs: default {} rules, automaton {} KiB; 2,000-rule pack {} rules, {} keywords, automaton {} KiB, built in {:?}",
        default_pack.rules().len(),
        default_pack.automaton_bytes() / 1024,
        big_pack.rules().len(),
        big_pack.keywords().count(),
        big_pack.automaton_bytes() / 1024,
        started.elapsed()
    );
    let fixtures = fixture_lines();
    let ci = corpus::ci_corpus(42, 10_000, 20);

    classify(c, "default pack, fixture lines", &default_pack, &fixtures);
    classify(c, "default pack, CI corpus", &default_pack, &ci);
    classify(c, "2000 rules, CI corpus", &big_pack, &ci);

    // Baselines with the 2,000-rule pack's literals, on the CI corpus.
    let mut per_rule: Vec<Vec<&str>> = vec![Vec::new(); big_pack.rules().len()];
    for (keyword, rule) in big_pack.keywords() {
        per_rule[rule].push(keyword);
    }
    let naive: Vec<Regex> = per_rule
        .iter()
        .map(|k| Regex::new(&literal_regex(k)).expect("regex"))
        .collect();
    let set = RegexSetBuilder::new(per_rule.iter().map(|k| literal_regex(k)))
        .size_limit(1 << 30)
        .dfa_size_limit(1 << 30)
        .build()
        .expect("set");
    let keywords: Vec<&str> = big_pack.keywords().map(|(k, _)| k).collect();
    let automaton = |kind| -> AhoCorasick {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(kind))
            .build(&keywords)
            .expect("automaton")
    };
    let small = &ci[..1_000];
    let mut g = c.benchmark_group("baselines, 2000 rules, CI corpus");
    g.throughput(Throughput::Elements(small.len() as u64));
    g.sample_size(10);
    g.bench_function("naive: one regex per rule per line (lines)", |b| {
        b.iter(|| {
            small
                .iter()
                .map(|l| naive.iter().filter(|r| r.is_match(black_box(l))).count())
                .sum::<usize>()
        })
    });
    g.throughput(Throughput::Elements(ci.len() as u64));
    g.bench_function("RegexSet (lines)", |b| {
        b.iter(|| {
            ci.iter()
                .map(|l| set.matches(black_box(l)).iter().count())
                .sum::<usize>()
        })
    });
    for (name, kind) in [
        ("aho-corasick DFA (lines)", AhoCorasickKind::DFA),
        (
            "aho-corasick contiguous NFA (lines)",
            AhoCorasickKind::ContiguousNFA,
        ),
        (
            "aho-corasick noncontiguous NFA (lines)",
            AhoCorasickKind::NoncontiguousNFA,
        ),
    ] {
        let ac = automaton(kind);
        g.bench_function(name, |b| {
            b.iter(|| {
                ci.iter()
                    .map(|l| ac.find_overlapping_iter(black_box(l)).count())
                    .sum::<usize>()
            })
        });
    }
    let lower_keywords: Vec<String> = keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
    let lower = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&lower_keywords)
        .expect("automaton");
    eprintln!(
        "case-sensitive DFA over lower-cased keywords: {} KiB",
        lower.memory_usage() / 1024
    );
    g.bench_function("aho-corasick DFA, lower-cased line (lines)", |b| {
        b.iter(|| {
            ci.iter()
                .map(|l| {
                    lower
                        .find_overlapping_iter(&black_box(l).to_ascii_lowercase())
                        .count()
                })
                .sum::<usize>()
        })
    });
    g.bench_function("memchr over every byte (lines)", |b| {
        b.iter(|| {
            ci.iter()
                .map(|l| memchr::memchr_iter(b'\x01', black_box(l.as_bytes())).count())
                .sum::<usize>()
        })
    });
    g.finish();

    let big_text = corpus::big_pack(7, 2_000);
    let mut g = c.benchmark_group("pack build");
    g.sample_size(10);
    g.bench_function("default pack", |b| {
        b.iter(|| RulePack::load(&[]).expect("valid"))
    });
    g.bench_function("default + 2000 rules", |b| {
        b.iter(|| {
            RulePack::load(&[("synthetic-2000.yaml".into(), big_text.clone())]).expect("valid")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
