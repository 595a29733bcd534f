//! Loading raw records, and the ceilings medic is compared with: reading
//! them (no group, no commits), a raw pass-through (consume then produce,
//! no decoding) with medic's client settings, batching and commit protocol,
//! and medic's own runner with a core that copies each record unchanged.

use crate::corpus::RawRecord;
use medic::config::{Config, DeliveryMode};
use medic::kafka::runner::{self, RunnerError, StageStatus};
use medic::kafka::{ClientSettings, Shutdown};
use medic::stages::{Action, InputRecord, OutputRecord, ProcessError, Processor, StageName};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counts delivery reports, and failed deliveries among them.
#[derive(Default, Clone)]
pub struct Deliveries {
    pub reported: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.reported.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits until every record sent so far is acknowledged (the producer's
/// own thread serves the reports). rdkafka's `flush`, which
/// `commit_transaction` calls, polls in 100 ms steps whenever a record is
/// still in flight; after this it finds nothing left and returns at once.
fn await_acks(
    producer: &ThreadedProducer<Deliveries>,
    context: &Deliveries,
    sent: u64,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while context.reported.load(Ordering::Relaxed) < sent || producer.flush(Duration::ZERO).is_err()
    {
        if Instant::now() > deadline {
            return Err("acknowledgements did not arrive within 60 s".into());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    if context.failed.load(Ordering::Relaxed) > 0 {
        return Err("a delivery failed".into());
    }
    Ok(())
}

/// Sends `record`, polling the producer while its queue is full.
fn send<'a>(
    producer: &BaseProducer<Deliveries>,
    mut record: BaseRecord<'a, [u8], [u8]>,
) -> Result<(), String> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(1));
                record = back;
            }
            Err((e, _)) => return Err(format!("producing: {e}")),
        }
    }
}

/// Milliseconds since the epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `record`'s value into `value`, a JSON record's `@timestamp` set to `at_ms`
/// (plain-text lines take the Kafka timestamp as their time).
pub fn stamp(record: &RawRecord, at_ms: i64, value: &mut Vec<u8>) {
    value.clear();
    value.extend_from_slice(&record.value);
    if let Some(pos) = record.timestamp_at {
        let text = format!("{:010}.{:03}", at_ms / 1000, at_ms % 1000);
        value[pos..pos + text.len()].copy_from_slice(text.as_bytes());
    }
}

/// Produces every record of `corpus` to `topic` with medic's producer
/// settings (idempotent, `linger.ms` 5, murmur2), stamped with the time they
/// are sent, and waits for every acknowledgement; returns the seconds it took.
pub fn load(settings: &ClientSettings, topic: &str, corpus: &[RawRecord]) -> Result<f64, String> {
    let context = Deliveries::default();
    let producer: BaseProducer<Deliveries> = settings
        .producer(DeliveryMode::AtLeastOnce, None)
        // Unkeyed records spread evenly: the sticky partitioner would put a
        // whole burst into one partition.
        .set("sticky.partitioning.linger.ms", "0")
        .create_with_context(context.clone())
        .map_err(|e| format!("producer: {e}"))?;
    let started = Instant::now();
    let mut value = Vec::new();
    for (i, r) in corpus.iter().enumerate() {
        stamp(r, now_millis(), &mut value);
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&value);
        if let Some(k) = &r.key {
            record = record.key(k.as_bytes());
        }
        send(&producer, record)?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| format!("flushing the load: {e}"))?;
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} records of the load were not delivered"));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Partitions of `topic`.
pub fn partitions(settings: &ClientSettings, topic: &str) -> Result<Vec<i32>, String> {
    let consumer: BaseConsumer = settings
        .consumer("medic-e2e-metadata")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// `(low, high)` watermarks of every partition of `topic`.
pub fn watermarks(settings: &ClientSettings, topic: &str) -> Result<Vec<(i64, i64)>, String> {
    let consumer: BaseConsumer = settings
        .consumer("medic-e2e-metadata")
        .create()
        .map_err(|e| e.to_string())?;
    partitions(settings, topic)?
        .into_iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(15))
                .map_err(|e| format!("watermarks of {topic} [{p}]: {e}"))
        })
        .collect()
}

/// The value of every committed record of `topic`, read from the beginning
/// up to the high watermarks as they are now.
pub fn read_all(settings: &ClientSettings, topic: &str) -> Result<Vec<Option<Vec<u8>>>, String> {
    let consumer: BaseConsumer = settings
        .consumer("medic-e2e-read-all")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    let mut want = 0;
    for (p, (low, high)) in watermarks(settings, topic)?.into_iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        want += high - low;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Transaction markers take offsets too: stop when the stream runs dry.
    let mut idle = Instant::now();
    while (out.len() as i64) < want
        && Instant::now() < deadline
        && idle.elapsed() < Duration::from_secs(2)
    {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| format!("reading {topic}: {e}"))?;
            out.push(m.payload().map(<[u8]>::to_vec));
            idle = Instant::now();
        }
    }
    Ok(out)
}

/// Reads `want` records of `topic` from the beginning with medic's consumer
/// settings, assigned rather than subscribed and never committing; counts
/// into `progress`.
pub fn spawn_raw_consume(
    settings: &ClientSettings,
    topic: &str,
    want: u64,
    progress: Arc<AtomicU64>,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let consumer: BaseConsumer = settings
        .consumer("medic-e2e-raw-consume")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(settings, topic)? {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    Ok(std::thread::Builder::new()
        .name("bench-consume".into())
        .spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut n = 0;
            while n < want && Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        std::hint::black_box(m.payload());
                        n += 1;
                        if n % 256 == 0 || n == want {
                            progress.store(n, Ordering::Relaxed);
                        }
                    }
                    Some(Err(e)) => return Err(format!("consuming: {e}")),
                    None => {}
                }
            }
            progress.store(n, Ordering::Relaxed);
            Ok(())
        })
        .expect("thread"))
}

/// One pass-through hop: `input` → `output`, records copied as they are.
pub struct Hop {
    pub input: String,
    pub output: String,
    pub group: String,
    pub consumed: Arc<AtomicU64>,
}

/// Runs `hop` until `stop`: polls a batch the way medic's runner does
/// (`batch_max_records`, `batch_linger_ms`), produces every record unchanged
/// and commits the batch in the delivery mode of `config` (a transaction
/// with the offsets, or acknowledgements then a synchronous offset commit).
pub fn spawn_pass_through(
    settings: &ClientSettings,
    config: &Config,
    hop: Hop,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Result<(), String>> {
    let settings = settings.clone();
    let delivery = config.delivery.clone();
    std::thread::Builder::new()
        .name("bench-passthru".into())
        .spawn(move || {
            let mode = delivery.mode;
            let context = Deliveries::default();
            let producer: ThreadedProducer<Deliveries> = settings
                .producer(mode, Some(&format!("{}.txn", hop.group)))
                // medic keys every record; unkeyed raw records are spread
                // evenly rather than in sticky bursts.
                .set("sticky.partitioning.linger.ms", "0")
                .create_with_context(context.clone())
                .map_err(|e| format!("producer: {e}"))?;
            let timeout = Duration::from_secs(30);
            if mode == DeliveryMode::ExactlyOnce {
                producer
                    .init_transactions(timeout)
                    .map_err(|e| format!("init transactions: {e}"))?;
            }
            let consumer: BaseConsumer = settings
                .consumer(&hop.group)
                .create()
                .map_err(|e| format!("consumer: {e}"))?;
            consumer
                .subscribe(&[hop.input.as_str()])
                .map_err(|e| e.to_string())?;
            let linger = Duration::from_millis(delivery.batch_linger_ms);
            let mut sent = 0u64;
            let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let mut records = 0usize;
                let mut open = false;
                loop {
                    let wait = if records == 0 {
                        Duration::from_millis(100)
                    } else {
                        linger.saturating_sub(started.elapsed())
                    };
                    let Some(polled) = consumer.poll(wait) else {
                        break;
                    };
                    let m = polled.map_err(|e| format!("consuming: {e}"))?;
                    if mode == DeliveryMode::ExactlyOnce && !open {
                        producer
                            .begin_transaction()
                            .map_err(|e| format!("begin: {e}"))?;
                        open = true;
                    }
                    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&hop.output);
                    if let Some(k) = m.key() {
                        record = record.key(k);
                    }
                    if let Some(p) = m.payload() {
                        record = record.payload(p);
                    }
                    if let Some(h) = m.headers() {
                        use rdkafka::message::Headers;
                        let mut copy = OwnedHeaders::new();
                        for header in h.iter() {
                            copy = copy.insert(header);
                        }
                        record = record.headers(copy);
                    }
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                back,
                            )) => {
                                std::thread::sleep(Duration::from_millis(1));
                                record = back;
                            }
                            Err((e, _)) => return Err(format!("producing: {e}")),
                        }
                    }
                    sent += 1;
                    offsets.insert(m.partition(), m.offset() + 1);
                    records += 1;
                    if records >= delivery.batch_max_records || started.elapsed() >= linger {
                        break;
                    }
                }
                if offsets.is_empty() {
                    continue;
                }
                let mut tpl = TopicPartitionList::new();
                for (p, next) in &offsets {
                    tpl.add_partition_offset(&hop.input, *p, Offset::Offset(*next))
                        .map_err(|e| e.to_string())?;
                }
                await_acks(&producer, &context, sent)?;
                match mode {
                    DeliveryMode::ExactlyOnce => {
                        let group = consumer.group_metadata().ok_or("no group metadata")?;
                        producer
                            .send_offsets_to_transaction(&tpl, &group, timeout)
                            .map_err(|e| format!("send offsets: {e}"))?;
                        producer
                            .commit_transaction(timeout)
                            .map_err(|e| format!("commit: {e}"))?;
                    }
                    DeliveryMode::AtLeastOnce => {
                        consumer
                            .commit(&tpl, CommitMode::Sync)
                            .map_err(|e| format!("commit: {e}"))?;
                    }
                }
                offsets.clear();
                hop.consumed.fetch_add(records as u64, Ordering::Relaxed);
            }
            Ok(())
        })
        .expect("thread")
}

/// A stage core that emits each input record unchanged to `output`, with an
/// id header like ingest's: medic's runner with no decoding, no logic and no
/// encoding.
pub struct Identity {
    pub input: String,
    pub output: String,
}

impl Processor for Identity {
    fn stage(&self) -> StageName {
        StageName::Ingest
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.input.clone()]
    }

    fn process(&mut self, input: &InputRecord<'_>, _: i64) -> Result<Vec<Action>, ProcessError> {
        let id = format!("{}/{}/{}", input.topic, input.partition, input.offset);
        Ok(vec![Action::Emit(OutputRecord {
            topic: self.output.clone(),
            // Unkeyed records keyed by their id: one empty key would put
            // them all in one partition.
            key: input
                .key
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_else(|| id.clone()),
            value: input.payload.map(<[u8]>::to_vec),
            id: Some(id),
            observation: None,
        })])
    }
}

/// Runs an [`Identity`] core under medic's runner, as `medic run` runs a stage.
pub fn spawn_identity(
    settings: &ClientSettings,
    config: &Config,
    input: String,
    output: String,
    executor: Arc<dyn medic::executors::Executor>,
    rt: tokio::runtime::Handle,
    shutdown: &Shutdown,
) -> JoinHandle<Result<medic::kafka::runner::RunStats, RunnerError>> {
    let topics = medic::topics::Topics::new(&config.kafka.topic_prefix);
    let runner_config = medic::app::runner_config(StageName::Ingest, config, settings, &topics);
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("medic-identity".into())
        .spawn(move || {
            runner::supervise(
                runner_config,
                || {
                    Box::new(Identity {
                        input: input.clone(),
                        output: output.clone(),
                    })
                },
                executor,
                rt,
                shutdown,
                StageStatus::new(),
            )
        })
        .expect("thread")
}
