//! Open-loop latency: raw records produced at a fixed rate whatever medic
//! does (each stamped with the time it was due, so a producer that falls
//! behind does not hide waiting), and a reader timing each categorized
//! failure and each recovery outcome from the create time of the earliest
//! raw line it reports.

use crate::ceiling::Deliveries;
use crate::corpus::RawRecord;
use medic::codec;
use medic::domain::{
    Approval, ApprovalDecision, CategorizedFailure, RecoveryOutcome, RecoveryState, RecoveryStatus,
    StepStatus,
};
use medic::kafka::ClientSettings;
use medic::topics::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A categorized failure the reader saw.
pub struct SeenFailure {
    pub id: String,
    /// `(partition, offset)` of the raw line that opened it.
    pub opener: Option<(i32, i64)>,
    /// When it was read, µs since the epoch.
    pub read: i64,
}

/// What the reader saw, with the time it read each record (µs since the epoch).
#[derive(Default)]
pub struct Seen {
    pub failures: Vec<SeenFailure>,
    /// `(failure id, read µs, passed a timed wait, answered a gate)`.
    pub outcomes: Vec<(String, i64, bool, bool)>,
    /// Approvals the reader sent.
    pub approvals: u64,
    /// Recoveries whose state showed a timed wait step under way or done.
    pub waited: BTreeSet<String>,
    /// Last time anything was read.
    pub last_read: Option<Instant>,
}

/// Reads failures (and, for the whole pipeline, outcomes) from the
/// beginning; approves every gate at once, as a ChatOps bot would.
pub fn spawn_reader(
    settings: &ClientSettings,
    topics: &Topics,
    whole_pipeline: bool,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let consumer: BaseConsumer = settings
        .consumer(&format!("{}.bench-reader", topics.prefix))
        .create()
        .map_err(|e| e.to_string())?;
    let mut wanted = vec![topics.failures.clone()];
    if whole_pipeline {
        wanted.push(topics.outcomes.clone());
        wanted.push(topics.state.clone());
    }
    let mut tpl = TopicPartitionList::new();
    for topic in &wanted {
        for p in crate::ceiling::partitions(settings, topic)? {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let approver: BaseProducer<Deliveries> = settings
        .producer(medic::config::DeliveryMode::AtLeastOnce, None)
        .create_with_context(Deliveries::default())
        .map_err(|e| e.to_string())?;
    let topics = topics.clone();
    Ok(std::thread::Builder::new()
        .name("bench-reader".into())
        .spawn(move || {
            let mut answered = BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                approver.poll(Duration::ZERO);
                let Some(polled) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let msg = polled.map_err(|e| format!("reading: {e}"))?;
                let read = now_micros();
                let Some(payload) = msg.payload() else {
                    continue;
                };
                let mut s = seen.lock().unwrap();
                s.last_read = Some(Instant::now());
                if msg.topic() == topics.failures {
                    let f: CategorizedFailure =
                        codec::decode(payload).map_err(|e| e.to_string())?;
                    // Evidence comes in the order the window saw it: the first
                    // is the line that opened the window.
                    let opener = f.evidence.first().and_then(|e| raw_position(&e.signal_id));
                    s.failures.push(SeenFailure {
                        id: f.id,
                        opener,
                        read,
                    });
                } else if msg.topic() == topics.outcomes {
                    let o: RecoveryOutcome = codec::decode(payload).map_err(|e| e.to_string())?;
                    let waited = s.waited.contains(&o.recovery_id);
                    s.outcomes
                        .push((o.failure_id, read, waited, o.approver.is_some()));
                } else {
                    let state: RecoveryState = codec::decode(payload).map_err(|e| e.to_string())?;
                    if state.steps.iter().any(|step| {
                        step.action == "wait"
                            && matches!(
                                step.status,
                                StepStatus::Started | StepStatus::Succeeded | StepStatus::Failed
                            )
                    }) {
                        s.waited.insert(state.recovery_id.clone());
                    }
                    let gate = format!(
                        "{}@{}",
                        state.recovery_id,
                        state.cursor.as_deref().unwrap_or_default()
                    );
                    if state.status == RecoveryStatus::AwaitingApproval && answered.insert(gate) {
                        let approval = Approval {
                            recovery_id: state.recovery_id.clone(),
                            decision: ApprovalDecision::Approved,
                            approver: "bench".into(),
                            reason: None,
                            decided_at: read / 1000,
                        };
                        let value = codec::encode(&approval).map_err(|e| e.to_string())?;
                        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&topics.approvals)
                            .key(state.deployment_key.as_str())
                            .payload(value.as_slice());
                        approver
                            .send(record)
                            .map_err(|(e, _)| format!("approving: {e}"))?;
                        s.approvals += 1;
                    }
                }
            }
            let _ = approver.flush(Duration::from_secs(5));
            Ok(())
        })
        .expect("thread"))
}

/// `(partition, offset)` of the raw record a log signal came from
/// (signal ids are `topic/partition/offset`).
fn raw_position(signal_id: &str) -> Option<(i32, i64)> {
    let mut parts = signal_id.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some((partition, offset))
}

/// Create times (ms) of the paced failure lines by `(partition, offset)`.
pub type Created = Arc<Mutex<HashMap<(i32, i64), i64>>>;

/// Records where each failure line landed; the opaque is its create time.
#[derive(Clone, Default)]
struct Placed {
    created: Created,
    failed: Arc<std::sync::atomic::AtomicU64>,
}

impl rdkafka::ClientContext for Placed {}

impl rdkafka::producer::ProducerContext for Placed {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, created: usize) {
        match result {
            Ok(m) if created > 0 => {
                self.created
                    .lock()
                    .unwrap()
                    .insert((m.partition(), m.offset()), created as i64);
            }
            Ok(_) => {}
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Produces `corpus` round-robin to `topic` at `rate` records/s for `secs`;
/// record `i` is stamped (Kafka timestamp, and `@timestamp` of JSON
/// records) with the time it was due, `start_ms + i / rate`. Returns the
/// records sent and the start time in ms since the epoch; `created` gets
/// the create time of every failure line by where it landed.
pub fn pace(
    settings: &ClientSettings,
    topic: &str,
    corpus: &[RawRecord],
    rate: f64,
    secs: f64,
    created: &Created,
) -> Result<(u64, f64), String> {
    let context = Placed {
        created: created.clone(),
        failed: Default::default(),
    };
    let producer: BaseProducer<Placed> = settings
        .producer(medic::config::DeliveryMode::AtLeastOnce, None)
        // Unkeyed records spread evenly: the sticky partitioner would put a
        // whole burst into one partition.
        .set("sticky.partitioning.linger.ms", "0")
        .create_with_context(context.clone())
        .map_err(|e| format!("producer: {e}"))?;
    let total = (rate * secs) as u64;
    let start = Instant::now();
    let start_ms = now_micros() as f64 / 1000.0;
    let mut i = 0u64;
    let mut value = Vec::new();
    while i < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while i < due {
            let r = &corpus[(i % corpus.len() as u64) as usize];
            let at = (start_ms + i as f64 * 1000.0 / rate) as i64;
            crate::ceiling::stamp(r, at, &mut value);
            let opaque = if r.failure { at as usize } else { 0 };
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(topic, opaque)
                    .payload(value.as_slice())
                    .timestamp(at);
            if let Some(k) = &r.key {
                record = record.key(k.as_bytes());
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        producer.poll(Duration::from_millis(1));
                        record = back;
                    }
                    Err((e, _)) => return Err(format!("producing: {e}")),
                }
            }
            i += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(200));
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flush: {e}"))?;
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} paced records were not delivered"));
    }
    Ok((total, start_ms))
}

/// Latencies in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies(pub Vec<i64>);

impl Latencies {
    /// `(p50, p99, p999, max)` in milliseconds.
    pub fn quantiles(&self) -> Option<(f64, f64, f64, f64)> {
        let mut v = self.0.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let q = |q: f64| {
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1000.0
        };
        Some((q(0.5), q(0.99), q(0.999), v[v.len() - 1] as f64 / 1000.0))
    }
}

/// Latencies of the failures opened by a raw line created in `[from_ms,
/// to_ms)`, from that line's create time.
pub struct Measured {
    /// Line → categorized failure.
    pub failures: Latencies,
    /// Line → outcome, every outcome.
    pub outcomes: Latencies,
    /// Line → outcome, recoveries that passed no timed wait.
    pub outcomes_no_wait: Latencies,
    /// Outcomes of recoveries that passed a timed wait, and that a gate held.
    pub waited: u64,
    pub gated: u64,
    /// Failures in the window with no outcome by the end.
    pub missing_outcomes: u64,
}

pub fn measure(seen: &Seen, created: &Created, from_ms: i64, to_ms: i64, whole: bool) -> Measured {
    let created = created.lock().unwrap();
    // Failures opened by a line created in the window, with that line's create time.
    let opened: Vec<(&str, i64, i64)> = seen
        .failures
        .iter()
        .filter_map(|f| {
            let at = *created.get(&f.opener?)?;
            (from_ms..to_ms)
                .contains(&at)
                .then_some((f.id.as_str(), at, f.read))
        })
        .collect();
    let first: HashMap<&str, i64> = opened.iter().map(|(id, at, _)| (*id, *at)).collect();
    let mut m = Measured {
        failures: Latencies(
            opened
                .iter()
                .map(|(_, at, read)| read - at * 1000)
                .collect(),
        ),
        outcomes: Latencies::default(),
        outcomes_no_wait: Latencies::default(),
        waited: 0,
        gated: 0,
        missing_outcomes: 0,
    };
    if !whole {
        return m;
    }
    let mut answered = BTreeSet::new();
    for (failure, read, waited, gated) in &seen.outcomes {
        let Some(at) = first.get(failure.as_str()) else {
            continue;
        };
        if !answered.insert(failure.as_str()) {
            continue;
        }
        let latency = read - at * 1000;
        m.outcomes.0.push(latency);
        if *waited {
            m.waited += 1;
        } else {
            m.outcomes_no_wait.0.push(latency);
        }
        if *gated {
            m.gated += 1;
        }
    }
    m.missing_outcomes = (first.len() - answered.len()) as u64;
    m
}

/// Failures seen so far without an outcome.
pub fn pending_outcomes(seen: &Seen) -> usize {
    let answered: BTreeSet<&str> = seen.outcomes.iter().map(|o| o.0.as_str()).collect();
    seen.failures
        .iter()
        .filter(|f| !answered.contains(f.id.as_str()))
        .count()
}
