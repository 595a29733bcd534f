//! The poll loop: one runner thread per stage, polling batches and handing
//! records to the pipeline, and the supervisor that restarts it from the last
//! commit after a fatal error.

use super::*;

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
