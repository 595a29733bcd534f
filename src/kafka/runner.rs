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
//! per-minute limit it pauses); a fatal error stops the runner without committing, and the supervisor
//! restarts it from the last commit.

use super::budget::DeadLetterBudget;
use super::config::{DeliveryConfig, DeliveryMode};
use super::dedup::Dedup;
use super::{restore, ClientSettings, Shutdown};
use crate::codec;
use crate::domain::{DeadLetter, ErrorKind};
use crate::executors::Executor;
use crate::stages::{Action, InputRecord, OutputRecord, ProcessError, Processor, StageName};
use crate::timefmt::wall_clock;
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

impl StageContext {
    fn fail(&self, e: RunnerError) {
        lock(&self.error).get_or_insert(e);
    }
}

impl ClientContext for StageContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): sets
    /// `medic_consumer_lag` per assigned partition — records between this
    /// instance's position (what it handed to the stage, else its committed
    /// offset, else the earliest) and the end of the partition (the last
    /// stable offset under read_committed). Partitions it no longer holds go to 0,
    /// so summing over instances gives the group's lag.
    fn stats_raw(&self, statistics: &[u8]) {
        // Only the fields needed, each optional: the full statistics hold
        // histograms for every broker and partition that are not used here.
        #[derive(serde::Deserialize)]
        struct Stats {
            #[serde(default)]
            topics: BTreeMap<String, Topic>,
        }
        #[derive(serde::Deserialize)]
        struct Topic {
            #[serde(default)]
            partitions: BTreeMap<i32, Partition>,
        }
        #[derive(serde::Deserialize)]
        struct Partition {
            #[serde(default)]
            desired: bool,
            #[serde(default = "unknown")]
            app_offset: i64,
            #[serde(default = "unknown")]
            committed_offset: i64,
            #[serde(default = "unknown")]
            lo_offset: i64,
            #[serde(default = "unknown")]
            ls_offset: i64,
            #[serde(default = "unknown")]
            hi_offset: i64,
        }
        fn unknown() -> i64 {
            -1
        }
        let statistics: Stats = match serde_json::from_slice(statistics) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable librdkafka statistics");
                return;
            }
        };
        let mut now = BTreeSet::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                // Nothing consumed or committed yet: the group starts at the
                // earliest offset, so all of the partition is lag.
                let position = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|o| *o >= 0)
                    .unwrap_or(-1);
                if end < 0 || position < 0 {
                    continue;
                }
                let lag = (end - position).max(0);
                crate::telemetry::consumer_lag(self.stage.as_str(), topic, *partition, lag);
                now.insert((topic.clone(), *partition));
            }
        }
        let mut lagging = lock(&self.lagging);
        for (topic, partition) in lagging.difference(&now) {
            crate::telemetry::consumer_lag(self.stage.as_str(), topic, *partition, 0);
        }
        *lagging = now;
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            lock(&self.status.assigned).clear();
            tracing::info!(
                partitions = tpl.count(),
                "partitions revoked; committing the open batch"
            );
            // Results of running effects belong to the state being given up.
            let mut pipeline = lock(&self.pipeline);
            let done = pipeline
                .drain(consumer)
                .and_then(|()| pipeline.commit(consumer));
            if let Err(e) = done {
                self.fail(e);
            }
            // The state of the revoked partitions belongs to their next owner:
            // until the assignment restores it, the timer must not act on it
            // (close a window, time out a recovery) from here.
            pipeline.processor.reset();
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            *lock(&self.status.assigned) = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let mut pipeline = lock(&self.pipeline);
            let stage = pipeline.stage;
            match restore::restore(
                &self.settings,
                pipeline.processor.as_mut(),
                &partitions,
                RESTORE_TIMEOUT,
            ) {
                Ok(n) => {
                    pipeline.stats.restored += n;
                    tracing::info!(%stage, ?partitions, restored = n, "partitions assigned; state restored");
                }
                Err(e) => self.fail(RunnerError::Restart(format!(
                    "{stage}: restoring state failed: {e}"
                ))),
            }
        }
    }
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

    /// Runs `request` on the runtime; its result comes back through
    /// [`finish_effects`](Self::finish_effects). Log lines of the call carry
    /// the span of the record that asked for it.
    fn start_effect(&mut self, request: crate::stages::EffectRequest) {
        use tracing::Instrument;
        let executor = self.executor.clone();
        let done = self.effects_tx.clone();
        let call =
            async move { executor.execute(&request).await }.instrument(tracing::Span::current());
        let call = self.rt.spawn(call);
        self.rt.spawn(async move {
            let result = call.await.map_err(|e| match e.try_into_panic() {
                Ok(panic) => panic_text(panic.as_ref()),
                Err(_) => "the executor call was cancelled".to_string(),
            });
            // The runner may have stopped; then nobody needs the result.
            let _ = done.send(result);
        });
        self.effects_running += 1;
    }

    /// Hands the results of finished effects to the stage and acts on what
    /// it answers; with `wait`, first waits for one to finish. An executor
    /// that panicked stops the runner, like a panic in the stage: the step is
    /// started again, with the same key, from the last commit.
    fn finish_effects(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        wait: bool,
    ) -> Result<(), RunnerError> {
        let mut wait = wait;
        // Called after every record: most stages have nothing running.
        while self.effects_running > 0 {
            let done = if wait {
                wait = false;
                self.effects_rx.recv().map_err(|_| {
                    RunnerError::Restart(format!("{}: effect results lost", self.stage))
                })?
            } else {
                match self.effects_rx.try_recv() {
                    Ok(done) => done,
                    Err(_) => return Ok(()),
                }
            };
            self.effects_running -= 1;
            let result = done.map_err(|panic| {
                RunnerError::Restart(format!("{}: executor panicked: {panic}", self.stage))
            })?;
            let more = self
                .processor
                .on_effect(result, wall_clock())
                .map_err(|e| self.fatal(e))?;
            self.run_actions(consumer, more)?;
        }
        Ok(())
    }

    /// Waits for every running effect and hands its result to the stage;
    /// effects the results ask for are not started.
    fn drain(&mut self, consumer: &BaseConsumer<StageContext>) -> Result<(), RunnerError> {
        self.draining = true;
        let mut result = Ok(());
        while result.is_ok() && self.effects_running > 0 {
            result = self.finish_effects(consumer, true);
        }
        self.draining = false;
        result
    }

    /// Waits for running effects without looking at their results (the
    /// runner is stopping on an error): no call is still under way when the
    /// next owner starts the unanswered steps again.
    fn abandon_effects(&mut self) {
        while self.effects_running > 0 && self.effects_rx.recv().is_ok() {
            self.effects_running -= 1;
        }
    }

    fn timer(&mut self, consumer: &BaseConsumer<StageContext>) -> Result<(), RunnerError> {
        let actions = self
            .processor
            .on_timer(wall_clock())
            .map_err(|e| self.fatal(e))?;
        self.run_actions(consumer, actions)
    }

    fn dead_letter(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        input: &InputRecord<'_>,
        kind: ErrorKind,
        error: String,
    ) -> Result<(), RunnerError> {
        while let Err(wait) = self.dlq_budget.take(Instant::now()) {
            // A burst of bad records (a producer's bad deploy) must not drain
            // a topic into the dead-letter topic: keep what is done, pause.
            tracing::error!(
                stage = %self.stage,
                limit = self.max_dlq,
                pause_secs = wait.as_secs(),
                "dead-letter limit per minute reached; pausing this stage"
            );
            self.commit(consumer)?;
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.shutdown.is_triggered() {
                    return Err(RunnerError::Restart(format!(
                        "{}: stopped while paused at the dead-letter limit",
                        self.stage
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        tracing::warn!(stage = %self.stage, topic = input.topic, partition = input.partition, offset = input.offset, kind = %kind, %error, "dead-lettering record");
        let mut error = error;
        let mut payload = input.payload.map(<[u8]>::to_vec);
        if let Some(p) = payload
            .as_mut()
            .filter(|p| p.len() > MAX_DEADLETTER_PAYLOAD)
        {
            error.push_str(&format!(
                " (payload cut to its first {MAX_DEADLETTER_PAYLOAD} of {} bytes)",
                p.len()
            ));
            p.truncate(MAX_DEADLETTER_PAYLOAD);
        }
        let letter = DeadLetter {
            stage: self.stage.to_string(),
            source_topic: input.topic.to_string(),
            source_partition: input.partition,
            source_offset: input.offset,
            source_key: input.key.map(<[u8]>::to_vec),
            payload,
            error_kind: kind,
            error,
            at: wall_clock(),
        };
        let key = input
            .key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let value = codec::encode(&letter).map_err(|e| RunnerError::Restart(e.to_string()))?;
        self.stats.deadlettered += 1;
        self.metrics.deadlettered(input.topic);
        let topic = self.deadletter_topic.clone();
        self.send(OutputRecord {
            topic,
            key,
            value: Some(value),
            id: None,
            observation: None,
        })
    }

    fn send(&mut self, out: OutputRecord) -> Result<(), RunnerError> {
        if self.mode == DeliveryMode::ExactlyOnce && !self.txn_open {
            self.producer
                .begin_transaction()
                .map_err(|e| RunnerError::Restart(format!("begin transaction: {e}")))?;
            self.txn_open = true;
        }
        self.metrics.produced(&out);
        let mut headers = OwnedHeaders::new();
        if let Some(id) = &out.id {
            headers = headers.insert(Header {
                key: ID_HEADER,
                value: Some(id.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&out.topic)
            .key(out.key.as_str())
            .headers(headers);
        if let Some(value) = &out.value {
            record = record.payload(value.as_slice());
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(RunnerError::Restart(format!(
                        "producing to {}: {e}",
                        out.topic
                    )))
                }
            }
        }
        self.stats.produced += 1;
        if self.mode == DeliveryMode::AtLeastOnce && self.in_flight.len() >= MAX_IN_FLIGHT {
            self.await_deliveries()?;
        }
        Ok(())
    }

    fn await_deliveries(&mut self) -> Result<(), RunnerError> {
        let deliveries = std::mem::take(&mut self.in_flight);
        self.await_all(deliveries)
    }

    fn await_all(&self, deliveries: Vec<DeliveryFuture>) -> Result<(), RunnerError> {
        for delivery in deliveries {
            match self.rt.block_on(delivery) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(RunnerError::Restart(format!("delivery failed: {e}")))
                }
                Err(_) => {
                    return Err(RunnerError::Restart(
                        "producer closed before delivery".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Waits, without the client's 100 ms polling steps, until librdkafka's
    /// queue is empty: a delivery future resolves a moment before its record
    /// leaves the queue.
    fn settle_producer(&self) -> Result<(), String> {
        let deadline = Instant::now() + TXN_TIMEOUT;
        loop {
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("flushing before commit: {e}")),
            }
        }
    }

    /// Produces what the stage flushes at the end of a batch (changelog updates).
    fn end_batch(&mut self) -> Result<(), RunnerError> {
        let flushed = self
            .processor
            .end_batch(wall_clock())
            .map_err(|e| self.fatal(e))?;
        for action in flushed {
            match action {
                Action::Emit(out) => self.send(out)?,
                Action::Execute(_) => {
                    return Err(RunnerError::Restart(format!(
                        "{}: end_batch requested an effect",
                        self.stage
                    )))
                }
            }
        }
        Ok(())
    }

    /// The end of a poll batch. Exactly-once, and whenever a commit must be
    /// durable at once, this is [`Pipeline::commit`]. At-least-once, it
    /// commits the previous batch's offsets once that batch's outputs are
    /// acknowledged (they have had this batch's time), and leaves this
    /// batch's outputs in flight until the next one ends.
    fn commit_batch(&mut self, consumer: &BaseConsumer<StageContext>) -> Result<(), RunnerError> {
        if self.mode == DeliveryMode::ExactlyOnce || self.poisoned {
            return self.commit(consumer);
        }
        self.end_batch()?;
        if let Some((deliveries, offsets)) = self.pending.take() {
            self.await_all(deliveries)?;
            self.commit_offsets(consumer, &offsets)?;
        }
        if !self.in_flight.is_empty() || !self.offsets.is_empty() {
            self.pending = Some((
                std::mem::take(&mut self.in_flight),
                std::mem::take(&mut self.offsets),
            ));
        }
        Ok(())
    }

    /// At-least-once: commits `offsets` synchronously; a failure only means
    /// redelivery.
    fn commit_offsets(
        &self,
        consumer: &BaseConsumer<StageContext>,
        offsets: &Offsets,
    ) -> Result<(), RunnerError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = offset_list(offsets)?;
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            // The records will be redelivered to whoever owns them now; their
            // outputs carry ids, so consumers drop the copies.
            tracing::warn!(stage = %self.stage, error = %e, "offset commit failed; records will be redelivered");
        }
        Ok(())
    }

    /// Flushes changelog updates, then makes every output and processed
    /// offset durable, the previous batch's included.
    fn commit(&mut self, consumer: &BaseConsumer<StageContext>) -> Result<(), RunnerError> {
        if self.poisoned {
            return Ok(());
        }
        if let Some((mut deliveries, offsets)) = self.pending.take() {
            // The earlier batch's records first; this batch's offsets are
            // further on, so they win where both have a partition.
            deliveries.append(&mut self.in_flight);
            self.in_flight = deliveries;
            for (partition, next) in offsets {
                self.offsets.entry(partition).or_insert(next);
            }
        }
        self.end_batch()?;
        if self.offsets.is_empty() && !self.txn_open && self.in_flight.is_empty() {
            return Ok(());
        }
        let tpl = offset_list(&self.offsets)?;
        match self.mode {
            DeliveryMode::ExactlyOnce => {
                if !self.txn_open {
                    self.producer
                        .begin_transaction()
                        .map_err(|e| RunnerError::Restart(format!("begin transaction: {e}")))?;
                    self.txn_open = true;
                }
                let result = (|| {
                    // Commit only once every record of the transaction is
                    // acknowledged: rdkafka's `commit_transaction` flushes
                    // first, and with any record still in flight that flush
                    // polls for a fixed 100 ms, which capped a stage at about
                    // ten transactions a second.
                    self.await_deliveries().map_err(|e| e.to_string())?;
                    self.settle_producer()?;
                    if tpl.count() > 0 {
                        let group = consumer
                            .group_metadata()
                            .ok_or("the consumer has no group metadata")?;
                        self.producer
                            .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)
                            .map_err(|e| format!("sending offsets: {e}"))?;
                    }
                    self.producer
                        .commit_transaction(TXN_TIMEOUT)
                        .map_err(|e| format!("committing: {e}"))
                })();
                self.txn_open = false;
                self.in_flight.clear();
                if let Err(e) = result {
                    let _ = self.producer.abort_transaction(TXN_TIMEOUT);
                    return Err(RunnerError::Restart(format!(
                        "{}: transaction aborted: {e}",
                        self.stage
                    )));
                }
            }
            DeliveryMode::AtLeastOnce => {
                self.await_deliveries()?;
                self.commit_offsets(consumer, &self.offsets)?;
            }
        }
        self.offsets.clear();
        Ok(())
    }
}

/// The consumer offsets to commit: the next offset to read per partition.
fn offset_list(offsets: &Offsets) -> Result<TopicPartitionList, RunnerError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
            .map_err(|e| RunnerError::Restart(format!("offset list: {e}")))?;
    }
    Ok(tpl)
}

/// Runs one stage instance until `shutdown` is set or an error stops it.
pub fn run(
    config: &RunnerConfig,
    processor: Box<dyn Processor>,
    executor: Arc<dyn Executor>,
    rt: Handle,
    shutdown: &Shutdown,
    status: Arc<StageStatus>,
) -> Result<RunStats, RunnerError> {
    let stage = processor.stage();
    let mode = config.delivery.mode;
    let transactional_id = format!("{}.{}", config.group, config.instance);
    let producer: FutureProducer = config
        .settings
        .producer(mode, Some(&transactional_id))
        .create()
        .map_err(|e| RunnerError::Setup(format!("{stage}: cannot create producer: {e}")))?;
    if mode == DeliveryMode::ExactlyOnce {
        producer.init_transactions(TXN_TIMEOUT).map_err(|e| {
            RunnerError::Setup(format!(
                "{stage}: cannot start Kafka transactions ({e}); if the brokers do not support \
                 transactions, set delivery.mode: at-least-once (or MEDIC_DELIVERY_MODE=at-least-once)"
            ))
        })?;
    }
    let inputs = processor.input_topics();
    let (effects_tx, effects_rx) = std::sync::mpsc::channel();
    let concurrent = processor.concurrent_effects();
    let pipeline = Arc::new(Mutex::new(Pipeline {
        processor,
        poisoned: false,
        producer,
        mode,
        stage,
        deadletter_topic: config.deadletter_topic.clone(),
        txn_open: false,
        in_flight: Vec::new(),
        offsets: BTreeMap::new(),
        pending: None,
        dedup: Dedup::new(config.delivery.dedup_capacity),
        dlq_budget: DeadLetterBudget::new(
            config.delivery.max_deadletters_per_minute,
            Duration::from_secs(60),
            Instant::now(),
        ),
        max_dlq: config.delivery.max_deadletters_per_minute,
        shutdown: shutdown.clone(),
        executor,
        rt,
        stats: RunStats::default(),
        metrics: crate::telemetry::StageMetrics::new(stage.as_str()),
        effects_tx,
        effects_rx,
        effects_running: 0,
        concurrent,
        draining: false,
    }));
    let context = StageContext {
        stage,
        lagging: Mutex::new(BTreeSet::new()),
        pipeline: pipeline.clone(),
        status,
        settings: config.settings.clone(),
        error: Mutex::new(None),
    };
    let consumer: BaseConsumer<StageContext> = config
        .settings
        .consumer(&config.group)
        .create_with_context(context)
        .map_err(|e| RunnerError::Setup(format!("{stage}: cannot create consumer: {e}")))?;
    let topic_refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|e| RunnerError::Setup(format!("{stage}: cannot subscribe to {inputs:?}: {e}")))?;
    tracing::info!(%stage, group = %config.group, %mode, ?inputs, "stage started");

    let result = poll_loop(config, &consumer, &pipeline, shutdown);
    let stats = {
        let mut p = lock(&pipeline);
        let closing = match &result {
            Ok(()) => p.drain(&consumer).and_then(|()| p.commit(&consumer)),
            Err(_) => {
                // Stop without committing: the next owner starts from the last commit.
                p.abandon_effects();
                p.poisoned = true;
                if p.txn_open {
                    let _ = p.producer.abort_transaction(TXN_TIMEOUT);
                    p.txn_open = false;
                }
                Ok(())
            }
        };
        let _ = p.producer.flush(Duration::from_secs(10));
        closing.and(result).map(|()| p.stats)
    };
    // Leaving the group runs the revoke callback, which locks the pipeline:
    // the lock above must be released first.
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(%stage, ?stats, "stage stopped");
    stats
}

fn poll_loop(
    config: &RunnerConfig,
    consumer: &BaseConsumer<StageContext>,
    pipeline: &Arc<Mutex<Pipeline>>,
    shutdown: &Shutdown,
) -> Result<(), RunnerError> {
    let linger = Duration::from_millis(config.delivery.batch_linger_ms);
    let timer_every = Duration::from_millis(config.delivery.timer_interval_ms);
    let mut last_timer = Instant::now();
    let take_error = || lock(&consumer.context().error).take();
    while !shutdown.is_triggered() {
        let mut records = 0usize;
        let started = Instant::now();
        loop {
            let timeout = if records == 0 {
                // Effect results are picked up between polls.
                let idle = if lock(pipeline).effects_running > 0 {
                    10
                } else {
                    100
                };
                Duration::from_millis(idle).min(timer_every)
            } else {
                linger.saturating_sub(started.elapsed())
            };
            let polled = consumer.poll(timeout);
            if let Some(e) = take_error() {
                return Err(e);
            }
            match polled {
                None => break,
                Some(Ok(msg)) => {
                    guarded(|| lock(pipeline).handle(consumer, &msg))?;
                    records += 1;
                }
                Some(Err(e)) => {
                    if let KafkaError::MessageConsumptionFatal(_) = e {
                        return Err(RunnerError::Restart(format!("consumer failed: {e}")));
                    }
                    tracing::warn!(error = %e, "consumer error");
                }
            }
            if records >= config.delivery.batch_max_records
                || started.elapsed() >= linger
                || shutdown.is_triggered()
            {
                break;
            }
        }
        let run_timer = last_timer.elapsed() >= timer_every;
        if run_timer {
            last_timer = Instant::now();
        }
        guarded(|| {
            let mut p = lock(pipeline);
            p.finish_effects(consumer, false)?;
            if run_timer {
                p.timer(consumer)?;
            }
            p.commit_batch(consumer)
        })?;
    }
    Ok(())
}

/// Runs `f`, turning a panic in a stage core or an executor into a restart
/// from the last commit instead of a dead thread.
fn guarded(f: impl FnOnce() -> Result<(), RunnerError>) -> Result<(), RunnerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(RunnerError::Restart(format!(
            "panic while processing: {}",
            panic_text(panic.as_ref())
        )))
    })
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

/// Runs a stage under supervision: a runner that stops with
/// [`RunnerError::Restart`] is started again after a backoff (1 s doubling to
/// 30 s), with a fresh processor whose state is restored from its changelog.
pub fn supervise(
    config: RunnerConfig,
    factory: impl Fn() -> Box<dyn Processor>,
    executor: Arc<dyn Executor>,
    rt: Handle,
    shutdown: Shutdown,
    status: Arc<StageStatus>,
) -> Result<RunStats, RunnerError> {
    let mut backoff = Duration::from_secs(1);
    loop {
        match run(
            &config,
            factory(),
            executor.clone(),
            rt.clone(),
            &shutdown,
            status.clone(),
        ) {
            Ok(stats) => return Ok(stats),
            Err(RunnerError::Setup(e)) => return Err(RunnerError::Setup(e)),
            Err(RunnerError::Restart(e)) => {
                tracing::error!(group = %config.group, error = %e, ?backoff, "stage stopped; restarting from the last commit");
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if shutdown.is_triggered() {
                        return Err(RunnerError::Restart(e));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
