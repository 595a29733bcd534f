//! Accepted webhooks per second through the bridge: a real 11 KB GitHub
//! `workflow_job` failure payload, HMAC-SHA256 signature checked, normalized,
//! produced to the embedded cluster and acknowledged before the 202. Client
//! and server share the same machine (64 requests in flight over loopback).
//!
//! `cargo bench --bench bridge`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medic::bridge::verify::sign_hex;
use medic::bridge::{serve, BridgeState};
use medic::config::{BridgeConfig, PlatformEndpoint};
use medic::kafka::embedded::EmbeddedCluster;
use medic::kafka::ClientSettings;
use medic::topics::Topics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const SECRET: &str = "bench-secret";
const BATCH: u64 = 2_048;
const IN_FLIGHT: usize = 64;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let topics = Topics::new("bench");
    let cluster = EmbeddedCluster::start(1, &topics).expect("cluster");
    let settings = ClientSettings::new(cluster.bootstrap_servers());
    let config = BridgeConfig {
        github: PlatformEndpoint {
            path: "/webhooks/github".into(),
            secrets: vec![SECRET.into()],
            tolerance_secs: 300,
            token_header: "X-Medic-Token".into(),
        },
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        ..BridgeConfig::default()
    };
    let state = BridgeState::new(&config, &settings, &topics.ci_events, None).expect("state");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/github",
        listener.local_addr().expect("addr")
    );
    rt.spawn(serve(
        Arc::new(state),
        config.body_limit_bytes,
        listener,
        std::future::pending(),
    ));

    let body = std::fs::read(format!(
        "{}/tests/data/webhooks/github/workflow_job/completed.failure.with-organization.payload.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let signature = format!("sha256={}", sign_hex(SECRET.as_bytes(), &[&body]));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .expect("client");
    let delivery = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("bridge");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.bench_function(
        "accepted 11 KB GitHub webhooks, signed, acknowledged by Kafka",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..IN_FLIGHT {
                        let (client, url, body, signature, delivery) = (
                            client.clone(),
                            url.clone(),
                            body.clone(),
                            signature.clone(),
                            delivery.clone(),
                        );
                        tasks.spawn(async move {
                            for _ in 0..BATCH / IN_FLIGHT as u64 {
                                let id = delivery.fetch_add(1, Ordering::Relaxed);
                                let response = client
                                    .post(&url)
                                    .header("X-Hub-Signature-256", &signature)
                                    .header("X-GitHub-Event", "workflow_job")
                                    .header("X-GitHub-Delivery", format!("bench-{id}"))
                                    .body(body.clone())
                                    .send()
                                    .await
                                    .expect("response");
                                assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
                            }
                        });
                    }
                    while let Some(done) = tasks.join_next().await {
                        done.expect("task");
                    }
                })
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
