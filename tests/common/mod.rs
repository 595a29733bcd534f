//! Shared helpers for tests that run stages on a broker.
#![allow(dead_code)]

pub mod http;
pub mod kube_api;
pub mod prometheus;
pub mod smtp;
pub mod tansu;

use medic::app;
use medic::codec::{self, AvroRecord};
use medic::config::{Config, DeliveryMode};
use medic::executors::{DryRun, Executor, Executors, Unconfigured};
use medic::kafka::embedded::EmbeddedCluster;
use medic::kafka::runner::{self, RunStats, RunnerError, StageStatus};
use medic::kafka::{admin, ClientSettings, Shutdown};
use medic::stages::{Processor, StageName};
use medic::topics::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Stage logs in test output, filtered by `RUST_LOG` (default: warnings).
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A consumer of every partition of `topic` from the beginning, reading
/// committed records only.
pub fn reader(settings: &ClientSettings, topic: &str) -> BaseConsumer {
    let mut config = settings.base();
    config
        .set("group.id", "medic-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config.create().expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    assert!(tpl.count() > 0, "{topic} has partitions");
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// A unique topic/group prefix per test, so tests never share state.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{}-{}-{:x}",
        std::process::id(),
        name,
        COUNTER.fetch_add(1, Ordering::SeqCst),
        nanos
    )
}

/// A broker with every medic topic under a fresh prefix.
pub struct TestCluster {
    pub embedded: Option<EmbeddedCluster>,
    pub settings: ClientSettings,
    pub topics: Topics,
    pub config: Config,
    pub runtime: tokio::runtime::Runtime,
    producer: FutureProducer,
}

fn test_config(prefix: &str, mode: DeliveryMode) -> Config {
    let mut config = Config::default();
    config.kafka.topic_prefix = prefix.to_string();
    config.kafka.group_prefix = prefix.to_string();
    config.delivery.mode = mode;
    config.delivery.batch_linger_ms = 10;
    config.delivery.timer_interval_ms = 100;
    config.categorize.window_quiet_ms = 1_000;
    config.categorize.window_max_ms = 10_000;
    // Rebalances after a member leaves should not wait for the default 45 s.
    config
        .kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    config
        .kafka
        .properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    config
}

fn test_producer(settings: &ClientSettings) -> FutureProducer {
    settings
        .producer(DeliveryMode::AtLeastOnce, None)
        .create()
        .expect("producer")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The embedded cluster, exactly-once.
pub fn embedded(name: &str) -> TestCluster {
    init_logs();
    let prefix = unique_prefix(name);
    let topics = Topics::new(&prefix);
    let cluster = EmbeddedCluster::start(1, &topics).expect("embedded cluster");
    let mut config = test_config(&prefix, DeliveryMode::ExactlyOnce);
    let settings = ClientSettings::from_config(cluster.bootstrap_servers(), &config.kafka);
    config.kafka.brokers = Some(settings.brokers.clone());
    TestCluster {
        embedded: Some(cluster),
        producer: test_producer(&settings),
        settings,
        topics,
        config,
        runtime: runtime(),
    }
}

/// The real broker named by `MEDIC_TEST_BROKERS`, at-least-once, topics
/// created with `topics apply`; `None` (test skipped) when the variable is unset.
pub fn real(name: &str) -> Option<TestCluster> {
    init_logs();
    let Ok(brokers) = std::env::var("MEDIC_TEST_BROKERS") else {
        eprintln!("MEDIC_TEST_BROKERS is not set: skipping the real-broker test {name}");
        return None;
    };
    Some(on_brokers(name, &brokers))
}

/// A real broker at `brokers`, at-least-once, topics created with `topics apply`.
pub fn on_brokers(name: &str, brokers: &str) -> TestCluster {
    init_logs();
    let brokers = brokers.to_string();
    let prefix = unique_prefix(name);
    let topics = Topics::new(&prefix);
    let mut config = test_config(&prefix, DeliveryMode::AtLeastOnce);
    config.kafka.brokers = Some(brokers.clone());
    let settings = ClientSettings::from_config(brokers, &config.kafka);
    let rt = runtime();
    let report = rt
        .block_on(admin::apply(&settings, &topics))
        .expect("topics apply");
    assert_eq!(report.created.len(), topics.all().len(), "{report:?}");
    TestCluster {
        embedded: None,
        producer: test_producer(&settings),
        settings,
        topics,
        config,
        runtime: rt,
    }
}

impl TestCluster {
    /// Produces one record and waits for the acknowledgement.
    pub fn produce(&self, topic: &str, key: Option<&str>, value: &[u8]) {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("enqueued");
        self.runtime
            .block_on(delivery)
            .expect("not cancelled")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }

    /// Produces an Avro record.
    pub fn produce_avro<T: AvroRecord>(&self, topic: &str, key: &str, value: &T) {
        self.produce(topic, Some(key), &codec::encode(value).expect("encodes"));
    }

    /// Every committed record of `topic` (all partitions from the beginning),
    /// read until `want` arrived and then `settle` more passed, or until `timeout`.
    pub fn read_raw(
        &self,
        topic: &str,
        want: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<(Option<String>, Option<Vec<u8>>)> {
        let consumer = reader(&self.settings, topic);
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut done_at: Option<Instant> = None;
        while Instant::now() < deadline && done_at.is_none_or(|d| Instant::now() < d) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    m.payload().map(<[u8]>::to_vec),
                ));
            }
            if done_at.is_none() && out.len() >= want {
                done_at = Some(Instant::now() + settle);
            }
        }
        out
    }

    /// Decoded records of `topic`, as [`read_raw`](Self::read_raw).
    pub fn read<T: AvroRecord>(&self, topic: &str, want: usize, timeout: Duration) -> Vec<T> {
        self.read_raw(topic, want, timeout, Duration::from_millis(1_500))
            .into_iter()
            .filter_map(|(_, v)| v)
            .map(|v| codec::decode(&v).expect("decodes"))
            .collect()
    }

    /// Starts stages with the dry-run executor.
    pub fn start(&self, stages: &[StageName]) -> Running {
        let executor = Arc::new(app::executors(&self.config).expect("executors"));
        self.start_with(stages, executor)
    }

    /// Starts stages with a given executor.
    pub fn start_with(&self, stages: &[StageName], executor: Arc<dyn Executor>) -> Running {
        let shutdown = Shutdown::new();
        let handles = app::spawn_stages(
            stages,
            &self.config,
            &app::Rules::builtin(),
            &self.settings,
            executor,
            self.runtime.handle().clone(),
            &shutdown,
        );
        Running {
            shutdown,
            handles: handles.into_iter().map(|(_, h)| h).collect(),
        }
    }

    /// Starts one supervised runner of `stage` with its own status handle.
    pub fn start_one(
        &self,
        stage: StageName,
        executor: Arc<dyn Executor>,
    ) -> (Running, Arc<StageStatus>) {
        let shutdown = Shutdown::new();
        let status = StageStatus::new();
        let runner = app::runner_config(stage, &self.config, &self.settings, &self.topics);
        let (config, topics) = (self.config.clone(), self.topics.clone());
        let (rt, sd, st) = (
            self.runtime.handle().clone(),
            shutdown.clone(),
            status.clone(),
        );
        let rules = app::Rules::builtin();
        let handle = std::thread::spawn(move || {
            runner::supervise(
                runner,
                || app::processor(stage, &config, &topics, &rules),
                executor,
                rt,
                sd,
                st,
            )
        });
        (
            Running {
                shutdown,
                handles: vec![handle],
            },
            status,
        )
    }
}

/// Executors with a dry-run step executor the test can inspect.
pub fn dry_run_executors() -> (Arc<DryRun>, Arc<dyn Executor>) {
    let dry = Arc::new(DryRun::new());
    let executors: Arc<dyn Executor> = Arc::new(Executors {
        steps: dry.clone(),
        notifications: Arc::new(Unconfigured),
        statuses: Arc::new(Unconfigured),
    });
    (dry, executors)
}

/// A processor factory for custom wiring.
pub type Factory = Box<dyn Fn() -> Box<dyn Processor> + Send>;

/// Stage threads that stop (shutdown + join) when dropped.
pub struct Running {
    pub shutdown: Shutdown,
    handles: Vec<JoinHandle<Result<RunStats, RunnerError>>>,
}

impl Running {
    /// Stops the stages and returns their results.
    pub fn stop(mut self) -> Vec<Result<RunStats, RunnerError>> {
        self.shutdown.trigger();
        self.handles
            .drain(..)
            .map(|h| h.join().expect("stage thread"))
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Polls `check` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// Runs `f` to completion on a fresh single-threaded runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The executors `c`'s configuration asks for, and a decide stage with the
/// built-in policy to make plans for them.
pub fn executors_and_decide(c: &TestCluster) -> (Arc<dyn Executor>, medic::stages::decide::Decide) {
    let executor: Arc<dyn Executor> = Arc::new(app::executors(&c.config).expect("executors"));
    let decide = medic::stages::decide::Decide::new(
        c.topics.clone(),
        c.config.decide.clone(),
        app::Rules::builtin().policy,
    );
    (executor, decide)
}
