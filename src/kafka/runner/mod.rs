//! The generic stage runner: consume, decode, call the stage's core, encode,
//! produce, commit — for every stage, in both delivery modes.
//!
//! One runner is one consumer-group member on its own thread. It polls a batch
//! (at most `batch_max_records`, at most `batch_linger_ms`), hands each record
//! to the [`Processor`], produces what it asks for, and commits:
//!
//! * **exactly-once**: outputs and input offsets go into one Kafka transaction
//!   (`send_offsets_to_transaction`, `commit_transaction`);
//! * **at-least-once**: every produced record is acknowledged first, then the
//!   offsets are committed synchronously. A crash between the two resends
//!   outputs; consumers drop them by the `medic-id` header. At the end of a
//!   batch the runner does not wait for that batch's acknowledgements: it
//!   commits the previous batch's offsets once its records are acknowledged,
//!   so the next batch is processed while the last one is in flight.
//!
//! Before a side effect ([`Action::Execute`]) everything produced so far is
//! committed, so the "step started" record is durable before the executor runs.
//! A stage that can resume its effects from its changelog (orchestrate,
//! [`Processor::concurrent_effects`]) has them run on the async runtime, at
//! most [`MAX_EFFECTS`] at a time, while it goes on with other records: a
//! slow executor call for one deployment does not hold up the others.
//! Results are handed back on the runner's thread between records. Before
//! partitions are revoked and before the runner stops, it waits for the
//! running effects and hands their results over, but starts no new one: a
//! step recorded as started is started again by the partition's next owner,
//! with the same key. Other stages (notify: commit statuses must not
//! overtake each other) run one effect at a time.
//! On a revoke the open batch is committed inside the rebalance callback; on an
//! assignment the stage's state is rebuilt from its changelog for exactly the
//! assigned partitions before any input is handed over. Undecodable or invalid
//! records go to the dead-letter topic and the stage goes on (past the
//! per-minute limit it pauses); a fatal error stops the runner without
//! committing, and the supervisor restarts it from the last commit.
//!
//! Here: the pipeline's state and what it does with one record. The poll loop
//! and the supervisor are in `poll.rs`; the rebalance and statistics callbacks
//! in `context.rs`; producing in `produce.rs`; the end of a batch in
//! `commit.rs`, with what each delivery mode commits and when in
//! `exactly_once.rs` and `at_least_once.rs`; effects in `effects.rs`;
//! dead-lettering in `dead_letter.rs`.

mod at_least_once;
mod commit;
mod context;
mod dead_letter;
mod effects;
mod exactly_once;
mod poll;
mod produce;

use crate::codec;
use crate::domain::{DeadLetter, ErrorKind};
use crate::executors::Executor;
use crate::kafka::budget::DeadLetterBudget;
use crate::kafka::config::{DeliveryConfig, DeliveryMode};
use crate::kafka::dedup::Dedup;
use crate::kafka::{restore, ClientSettings, Shutdown};
use crate::stages::{Action, InputRecord, OutputRecord, ProcessError, Processor, StageName};
use crate::timefmt::wall_clock;
use commit::offset_list;
pub use poll::{run, supervise};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// Header carrying a record's id, for de-duplication.
pub const ID_HEADER: &str = "medic-id";

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_IN_FLIGHT: usize = 10_000;
/// Effects (executor calls) one runner runs at the same time.
pub const MAX_EFFECTS: usize = 64;
/// The most of a record's bytes a dead letter carries: with its other fields
/// it must fit in a Kafka record (1 MB by default).
pub const MAX_DEADLETTER_PAYLOAD: usize = 512 * 1024;

/// What an effect task reports: the result, or the panic that ended it.
type EffectDone = Result<crate::stages::EffectResult, String>;

/// What one runner needs to know.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Cluster.
    pub settings: ClientSettings,
    /// Consumer group id.
    pub group: String,
    /// Unique per runner instance; part of the transactional id.
    pub instance: String,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// Where undecodable records go.
    pub deadletter_topic: String,
}

/// Why a runner stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunnerError {
    /// Will not fix itself (wrong settings, a broker without transactions).
    #[error("{0}")]
    Setup(String),
    /// Nothing was committed past the problem; start again from the last commit.
    #[error("{0}")]
    Restart(String),
}

/// Counters of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Records handed to the stage.
    pub consumed: u64,
    /// Records produced (including dead letters).
    pub produced: u64,
    /// Records sent to the dead-letter topic.
    pub deadlettered: u64,
    /// Redelivered records dropped by id.
    pub duplicates: u64,
    /// Changelog records applied during restores.
    pub restored: u64,
}

/// Live view of one runner, shared with whoever started it (health checks,
/// tests): the partitions it owns right now.
#[derive(Debug, Default)]
pub struct StageStatus {
    assigned: Mutex<BTreeSet<(String, i32)>>,
}

impl StageStatus {
    /// A status with nothing assigned.
    pub fn new() -> Arc<StageStatus> {
        Arc::new(StageStatus::default())
    }

    /// `(topic, partition)` pairs currently assigned to this runner.
    pub fn assigned(&self) -> BTreeSet<(String, i32)> {
        lock(&self.assigned).clone()
    }
}

/// The next offset to read per `(topic, partition)`.
type Offsets = BTreeMap<(String, i32), i64>;

struct Pipeline {
    processor: Box<dyn Processor>,
    /// Set when the runner stops on an error: nothing more may be committed.
    poisoned: bool,
    producer: FutureProducer,
    mode: DeliveryMode,
    stage: StageName,
    deadletter_topic: String,
    txn_open: bool,
    in_flight: Vec<DeliveryFuture>,
    offsets: Offsets,
    /// At-least-once: the last batch's deliveries and offsets, committed at
    /// the end of the next batch (or at any full [`Pipeline::commit`]).
    pending: Option<(Vec<DeliveryFuture>, Offsets)>,
    dedup: Dedup,
    dlq_budget: DeadLetterBudget,
    max_dlq: u32,
    shutdown: Shutdown,
    executor: Arc<dyn Executor>,
    rt: Handle,
    stats: RunStats,
    metrics: crate::telemetry::StageMetrics,
    /// Results of running effects come back here.
    effects_tx: std::sync::mpsc::Sender<EffectDone>,
    effects_rx: std::sync::mpsc::Receiver<EffectDone>,
    /// Effects started whose result has not been handed to the stage.
    effects_running: usize,
    /// Whether effects may run while the stage goes on.
    concurrent: bool,
    /// Set while the runner stops or gives partitions up: results of running
    /// effects are still taken, but no new effect starts.
    draining: bool,
}

struct StageContext {
    stage: StageName,
    /// Partitions whose lag this instance reported last time.
    lagging: Mutex<BTreeSet<(String, i32)>>,
    pipeline: Arc<Mutex<Pipeline>>,
    status: Arc<StageStatus>,
    settings: ClientSettings,
    error: Mutex<Option<RunnerError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock already stopped this runner's thread;
    // the data is still consistent enough to commit nothing further.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipeline {
    fn fatal(&self, e: ProcessError) -> RunnerError {
        RunnerError::Restart(format!("{}: {e}", self.stage))
    }

    fn handle(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        msg: &BorrowedMessage<'_>,
    ) -> Result<(), RunnerError> {
        self.stats.consumed += 1;
        self.metrics.consumed(msg.topic());
        let input = InputRecord {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key(),
            payload: msg.payload(),
            timestamp: msg.timestamp().to_millis(),
        };
        // Every log line written while this record is handled carries where
        // it came from and the deployment (the key); stages add the recovery.
        // A `debug` span: enabled it costs about 1 µs per record.
        let span = tracing::debug_span!(
            "record",
            stage = self.stage.as_str(),
            topic = input.topic,
            partition = input.partition,
            offset = input.offset,
            deployment = tracing::field::Empty,
            recovery = tracing::field::Empty,
        );
        if let (false, Some(key)) = (span.is_disabled(), input.key) {
            span.record("deployment", String::from_utf8_lossy(key).as_ref());
        }
        let _in_span = span.enter();
        let id = msg
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == ID_HEADER).and_then(|h| h.value))
            .and_then(|v| std::str::from_utf8(v).ok());
        let duplicate = id.is_some_and(|id| self.dedup.check_and_insert(id));
        if duplicate {
            self.stats.duplicates += 1;
        } else {
            let mut attempt = 0;
            let started = Instant::now();
            let result = loop {
                match self.processor.process(&input, wall_clock()) {
                    Err(ProcessError::Transient(e)) if attempt < 3 => {
                        attempt += 1;
                        tracing::warn!(stage = %self.stage, error = %e, attempt, "transient failure; retrying");
                        std::thread::sleep(Duration::from_millis(100 << attempt));
                    }
                    other => break other,
                }
            };
            self.metrics.processed(started.elapsed());
            match result {
                Ok(actions) => self.run_actions(consumer, actions)?,
                Err(ProcessError::Undecodable(e)) => {
                    self.dead_letter(consumer, &input, ErrorKind::Undecodable, e)?
                }
                Err(ProcessError::Invalid(e)) => {
                    self.dead_letter(consumer, &input, ErrorKind::Invalid, e)?
                }
                Err(ProcessError::Transient(e)) => {
                    self.dead_letter(consumer, &input, ErrorKind::Processing, e)?
                }
                Err(fatal @ ProcessError::Fatal(_)) => return Err(self.fatal(fatal)),
            }
        }
        self.offsets
            .insert((input.topic.to_string(), input.partition), input.offset + 1);
        self.finish_effects(consumer, false)
    }

    fn run_actions(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        actions: Vec<Action>,
    ) -> Result<(), RunnerError> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Emit(out) => self.send(out)?,
                Action::Execute(request) => {
                    // The records announcing this effect must be durable first.
                    self.commit(consumer)?;
                    if self.draining {
                        // Recorded as started: whoever owns the partition
                        // next starts it again, with the same key.
                        tracing::info!(stage = %self.stage, key = request.key(), "stopping; effect left to the partition's next owner");
                        continue;
                    }
                    self.start_effect(request);
                    let most = if self.concurrent { MAX_EFFECTS } else { 1 };
                    while self.effects_running >= most {
                        self.finish_effects(consumer, true)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn timer(&mut self, consumer: &BaseConsumer<StageContext>) -> Result<(), RunnerError> {
        let actions = self
            .processor
            .on_timer(wall_clock())
            .map_err(|e| self.fatal(e))?;
        self.run_actions(consumer, actions)
    }
}

/// The message of a panic payload.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic")
        .to_string()
}
