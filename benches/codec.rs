//! Avro encoding cost per record: medic's direct serde path against the
//! dynamic `Value` path of the reference implementation.
//!
//! `cargo bench --bench codec`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use medic::codec;
use medic::domain::{CategorizedFailure, Signal};
use std::hint::black_box;

fn example<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/schemas/examples/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("parses")
}

fn schema_text(name: &str) -> &'static str {
    codec::SCHEMA_SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("schema")
        .1
}

fn bench_codec(c: &mut Criterion) {
    let signal: Signal = example("Signal");
    let failure: CategorizedFailure = example("CategorizedFailure");
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));

    let mut buf = Vec::with_capacity(1024);
    group.bench_function("encode Signal (medic, serde direct)", |b| {
        b.iter(|| {
            buf.clear();
            codec::encode_into(black_box(&signal), &mut buf).expect("encodes");
        })
    });
    let bytes = codec::encode(&signal).expect("encodes");
    group.bench_function("decode Signal (medic, serde direct)", |b| {
        b.iter(|| codec::decode::<Signal>(black_box(&bytes)).expect("decodes"))
    });
    group.bench_function("encode CategorizedFailure (medic, serde direct)", |b| {
        b.iter(|| {
            buf.clear();
            codec::encode_into(black_box(&failure), &mut buf).expect("encodes");
        })
    });

    let schema = apache_avro::Schema::parse_str(schema_text("Signal")).expect("schema");
    #[allow(deprecated)]
    group.bench_function("encode Signal (apache-avro Value)", |b| {
        b.iter(|| {
            let value = apache_avro::to_value(black_box(&signal))
                .expect("to value")
                .resolve(&schema)
                .expect("resolves");
            apache_avro::to_avro_datum(&schema, value).expect("encodes")
        })
    });
    #[allow(deprecated)]
    group.bench_function("decode Signal (apache-avro Value)", |b| {
        b.iter_batched(
            || &bytes[10..],
            |mut datum| {
                let value =
                    apache_avro::from_avro_datum(&schema, &mut datum, None).expect("decodes");
                apache_avro::from_value::<Signal>(&value).expect("from value")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
