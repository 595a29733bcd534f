//! End to end on a broker: raw log records in `medic.logs.raw`, medic's
//! stages (the processors and runner `medic run` uses, wired by
//! `app::spawn_stages`) reading them from the earliest offset.
//!
//! One run, one broker, one delivery mode:
//!
//! 1. loads `--records` raw records (seeded; ~200-byte CI and application
//!    lines, a `--failure-share` of them carrying real failure lines from
//!    `tests/data/categorization/labelled.jsonl`, over `--deployments`
//!    deployments, a `--json-share` in Fluent Bit's JSON and the rest plain
//!    text keyed by deployment);
//! 2. the ceilings, with medic's client settings: reading the records,
//!    a raw pass-through (consume then produce, no decoding, medic's batching
//!    and commit protocol) over one and two hops, and medic's runner with a
//!    core that copies records unchanged over two hops;
//! 3. medic, closed loop, for each `--stages` set (`categorize`: ingest and
//!    categorize, the two stages from raw line to categorized failure;
//!    `all`: the five stages), from a fresh load: records/s, CPU seconds per
//!    1,000 records for medic and for the broker, peak RSS, and the stage
//!    processing time from the runners' own `medic_processing_seconds`
//!    samples;
//! 4. open loop (unless `--skip-open-loop`): records paced at `--levels` of
//!    the closed-loop rate, latency from each raw line's create time to its
//!    categorized failure and (for `all`) its recovery outcome.
//!
//! `cargo bench --bench e2e -- --help` lists the options; results and the
//! commands that produced them are in `benches/README.md`.

#[path = "support/corpus.rs"]
mod corpus;

#[path = "e2e/broker.rs"]
mod broker;
#[path = "e2e/ceiling.rs"]
mod ceiling;
#[path = "e2e/open_loop.rs"]
mod open_loop;
#[path = "e2e/probe.rs"]
mod probe;
#[path = "../tests/common/tansu.rs"]
mod tansu;

use broker::{Broker, Kind};
use clap::Parser;
use medic::app::{self, Rules};
use medic::config::{Config, DeliveryMode};
use medic::kafka::runner::{RunStats, RunnerError};
use medic::kafka::{ClientSettings, Shutdown};
use medic::stages::StageName;
use medic::topics::Topics;
use probe::{CpuSnapshot, CpuSplit, Probe, CONSUMED, PRODUCED};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The allocator the `medic` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// medic end to end on a broker: throughput against its ceilings, CPU,
/// memory, stage processing time and open-loop latency.
#[derive(Parser, Debug)]
#[command(name = "e2e")]
struct Args {
    /// Raw log records per closed-loop run.
    #[arg(long, default_value_t = 500_000)]
    records: usize,
    /// Share of lines carrying real failure text.
    #[arg(long, default_value_t = 0.01)]
    failure_share: f64,
    /// Distinct deployments (`service/environment`) the lines come from.
    #[arg(long, default_value_t = 1_000)]
    deployments: usize,
    /// Share of records in Fluent Bit's JSON; the rest are plain-text lines
    /// keyed by deployment.
    #[arg(long, default_value_t = 0.5)]
    json_share: f64,
    /// embedded, tansu-memory or tansu-sqlite (Tansu is started and stopped
    /// by the bench, from PATH or ~/.cargo/bin).
    #[arg(long, default_value = "embedded")]
    broker: String,
    /// An external broker, `host:port,...`, instead of `--broker`.
    #[arg(long)]
    brokers: Option<String>,
    /// Process id of the external broker, to measure its CPU time.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// exactly-once or at-least-once; default exactly-once on the embedded
    /// cluster, at-least-once elsewhere (Tansu has no transactions).
    #[arg(long)]
    mode: Option<String>,
    /// Stage sets to run, comma-separated: categorize (ingest + categorize), all.
    #[arg(long, value_delimiter = ',', default_value = "categorize,all")]
    stages: Vec<String>,
    /// Skip the open-loop latency runs.
    #[arg(long)]
    skip_open_loop: bool,
    /// Skip the raw-consume, pass-through and identity-runner ceilings.
    #[arg(long)]
    skip_ceiling: bool,
    /// Skip the identity-runner ceiling (medic's runner with a copying core).
    #[arg(long)]
    skip_identity: bool,
    /// Open-loop rates as shares of the closed-loop records/s.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,0.9")]
    levels: Vec<f64>,
    /// Measured seconds per open-loop rate (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    open_loop_secs: f64,
    /// Seconds paced before the measured part, not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Longest wait for outstanding outputs after pacing stops.
    #[arg(long, default_value_t = 45.0)]
    drain_secs: f64,
    /// categorize.window_quiet_ms for every run. 0: a window closes at the
    /// first timer tick after its last line (production default: 30000).
    #[arg(long, default_value_t = 0)]
    window_quiet_ms: i64,
    /// delivery.timer_interval_ms for every run (production default: 250).
    #[arg(long, default_value_t = 50)]
    timer_ms: u64,
    /// Partitions of the topics with a record per raw line: the raw log
    /// topic, signals and the window changelog (co-partitioned), and the
    /// pass-through's; every other topic as `topics/` declares it (6).
    /// librdkafka's mock cluster keeps at most 5 MiB per partition and
    /// silently drops older records, so the default (0) is, on the embedded
    /// cluster, one partition per 3 MiB of the corpus (at least 6), and 6
    /// elsewhere.
    #[arg(long, default_value_t = 0)]
    partitions: i32,
    /// delivery.batch_max_records of every stage (medic's default: 5,000); the
    /// pass-through batches the same.
    #[arg(long)]
    batch_max_records: Option<usize>,
    /// A librdkafka producer property for medic and the ceilings alike,
    /// `KEY=VALUE` (kafka.producer_properties); repeatable.
    #[arg(long = "producer-property")]
    producer_properties: Vec<String>,
    /// A librdkafka consumer property for medic and the ceilings alike,
    /// `KEY=VALUE` (kafka.consumer_properties); repeatable.
    #[arg(long = "consumer-property")]
    consumer_properties: Vec<String>,
    /// A phase in which nothing moves for this many seconds is given up.
    #[arg(long, default_value_t = 60)]
    stall_secs: u64,
    /// Corpus seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the first N raw records of the corpus (value, tab, key) and exit.
    #[arg(long)]
    print_corpus: Option<usize>,
    /// Passed by `cargo bench`. Without it (`cargo test --benches`) the
    /// bench only checks that it works: 2,000 records, categorize, no
    /// ceilings, no open loop.
    #[arg(long, hide = true)]
    bench: bool,
}

struct Ctx {
    args: Args,
    kind: Kind,
    /// The broker of the current phase: every phase starts a fresh one
    /// (an external broker stays), so no phase reads what another wrote.
    broker: Option<Broker>,
    mode: DeliveryMode,
    settings: ClientSettings,
    rt: tokio::runtime::Runtime,
    probe: &'static Probe,
    corpus: Vec<corpus::RawRecord>,
    rules: Rules,
    /// Partitions of the topics with a record per raw line.
    partitions: i32,
    run: String,
    seq: AtomicU32,
}

/// Stages started by [`Ctx::start`].
struct Running {
    shutdown: Shutdown,
    handles: Vec<(
        StageName,
        std::thread::JoinHandle<Result<RunStats, RunnerError>>,
    )>,
}

impl Running {
    /// Stops the stages and waits for them; the first error wins.
    fn stop(self) -> Result<(), String> {
        self.shutdown.trigger();
        for (stage, handle) in self.handles {
            match handle.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("{stage}: {e}")),
                Err(_) => return Err(format!("{stage}: thread panicked")),
            }
        }
        Ok(())
    }
}

impl Ctx {
    /// Starts `stages` with `config`, as `medic run` would.
    fn start(&self, stages: &[StageName], config: &Config) -> Result<Running, String> {
        let executor = Arc::new(app::executors(config)?);
        let shutdown = Shutdown::new();
        let handles = app::spawn_stages(
            stages,
            config,
            &self.rules,
            &self.settings,
            executor,
            self.rt.handle().clone(),
            &shutdown,
        );
        Ok(Running { shutdown, handles })
    }

    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("a broker runs between phases")
    }

    fn prefix(&self, what: &str) -> String {
        format!(
            "{}-{}-{what}",
            self.run,
            self.seq.fetch_add(1, Ordering::SeqCst)
        )
    }

    fn config(&self, prefix: &str) -> Config {
        let mut config = Config::default();
        config.kafka.brokers = Some(self.broker().bootstrap.clone());
        config.kafka.topic_prefix = prefix.to_string();
        config.kafka.group_prefix = prefix.to_string();
        config.delivery.mode = self.mode;
        config.delivery.timer_interval_ms = self.args.timer_ms;
        config.categorize.window_quiet_ms = self.args.window_quiet_ms;
        // At the failure rates of a load test every further automated action
        // would wait for a human; the breaker is a guard, not the subject.
        config.orchestrate.circuit_breaker_max_actions = 0;
        if let Some(n) = self.args.batch_max_records {
            config.delivery.batch_max_records = n;
        }
        config.kafka.producer_properties = self.settings.producer_properties.clone();
        config.kafka.consumer_properties = self.settings.consumer_properties.clone();
        config
    }

    fn records(&self) -> u64 {
        self.corpus.len() as u64
    }

    /// A fresh broker (the old one stopped) with every medic topic under a
    /// fresh prefix.
    fn fresh(&mut self, what: &str) -> Result<Topics, String> {
        if self.kind != Kind::External {
            // Stop the old one first: its memory and CPU are not this phase's.
            self.broker = None;
            self.broker = Some(Broker::start(self.kind, None)?);
            self.settings.brokers = self.broker().bootstrap.clone();
        }
        let prefix = self.prefix(what);
        let topics = Topics::new(&prefix);
        self.broker()
            .create_medic_topics(&self.settings, &topics, self.partitions, &self.rt)?;
        Ok(topics)
    }

    /// [`Ctx::fresh`], with the corpus loaded into the raw topic: the topics
    /// and the load's records/s.
    fn prepare(&mut self, what: &str) -> Result<(Topics, f64), String> {
        let topics = self.fresh(what)?;
        eprintln!(
            "  {what}: loading {} records into {}",
            self.records(),
            topics.logs_raw
        );
        let load_secs = ceiling::load(&self.settings, &topics.logs_raw, &self.corpus)?;
        let mut marks = ceiling::watermarks(&self.settings, &topics.logs_raw)?;
        let mut kept: i64 = marks.iter().map(|(low, high)| high - low).sum();
        for _ in 0..10 {
            if kept == self.records() as i64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            marks = ceiling::watermarks(&self.settings, &topics.logs_raw)?;
            kept = marks.iter().map(|(low, high)| high - low).sum();
        }
        if kept != self.records() as i64 {
            let readable = ceiling::read_all(&self.settings, &topics.logs_raw)?.len();
            return Err(format!(
                "every record was acknowledged, but the broker keeps {kept} of the {} \
                 records loaded ({readable} readable from the beginning); (low, high) per \
                 partition: {marks:?}{}",
                self.records(),
                if self.broker().in_process() {
                    " (the embedded cluster keeps 5 MiB per partition: raise --partitions)"
                } else {
                    ""
                }
            ));
        }
        Ok((topics, self.records() as f64 / load_secs))
    }
}

/// One measured phase.
struct Measured {
    /// From start to the first record consumed (group join, restore, transactions).
    startup: f64,
    /// From the first record consumed to the last.
    secs: f64,
    cpu: CpuSplit,
    rss_start: f64,
    rss_peak: f64,
    broker_rss: Option<(f64, f64)>,
    timed_out: bool,
}

/// Polls `progress` (records through so far, done) every 2 ms and measures
/// the phase between the first record and the end: CPU split at those two
/// instants, peak RSS of the whole phase (reset at its start). Gives up after
/// `timeout`, or when nothing moved for 30 s.
fn watch(ctx: &Ctx, mut progress: impl FnMut() -> (u64, bool), timeout: Duration) -> Measured {
    let me = std::process::id();
    probe::reset_peak_rss(me);
    if let Some(pid) = ctx.broker().pid {
        probe::reset_peak_rss(pid);
    }
    let (rss_start, _) = probe::rss_mib(me);
    let broker_start = ctx.broker().pid.map(|p| probe::rss_mib(p).0);
    let t0 = Instant::now();
    let mut first: Option<(Instant, CpuSnapshot)> = None;
    let mut timed_out = false;
    let (mut last, mut moved) = (0, Instant::now());
    loop {
        let (through, done) = progress();
        if through > 0 && first.is_none() {
            first = Some((Instant::now(), CpuSnapshot::take(ctx.broker().pid)));
        }
        if through != last {
            (last, moved) = (through, Instant::now());
        }
        if done {
            break;
        }
        let stalled = moved.elapsed() > Duration::from_secs(ctx.args.stall_secs);
        if t0.elapsed() > timeout || stalled {
            eprintln!(
                "  no progress for {} s (or over the time limit) at {through} records; on the \
                 embedded cluster a partition over 5 MiB loses its oldest records (--partitions)",
                ctx.args.stall_secs
            );
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let end = Instant::now();
    let end_cpu = CpuSnapshot::take(ctx.broker().pid);
    let (first_at, first_cpu) = first.unwrap_or((end, end_cpu.clone()));
    Measured {
        startup: (first_at - t0).as_secs_f64(),
        secs: (end - first_at).as_secs_f64(),
        cpu: probe::cpu_between(&first_cpu, &end_cpu, ctx.broker().in_process()),
        rss_start,
        rss_peak: probe::rss_mib(me).1,
        broker_rss: ctx
            .broker()
            .pid
            .map(|p| (broker_start.unwrap_or(0.0), probe::rss_mib(p).1)),
        timed_out,
    }
}

/// A row of the throughput table.
struct Row {
    name: String,
    records: u64,
    /// The load before the phase, records/s.
    load_rate: f64,
    m: Measured,
}

impl Row {
    /// Records/s; `NaN` when the phase did not finish.
    fn rate(&self) -> f64 {
        if self.m.timed_out {
            return f64::NAN;
        }
        self.records as f64 / self.m.secs.max(1e-9)
    }
}

/// A closed-loop medic run.
struct MedicRun {
    row: Row,
    /// Failures whose id an earlier failure already had.
    repeated_ids: usize,
    /// `(stage → topic, at the end of the timed run, 2 s later)`.
    produced: Vec<(String, u64, u64)>,
    processing: Vec<(String, u64, Vec<u64>, u64)>,
}

fn stage_set(name: &str) -> Result<Vec<StageName>, String> {
    match name {
        "categorize" => Ok(vec![StageName::Ingest, StageName::Categorize]),
        "all" => Ok(StageName::ALL.to_vec()),
        other => Err(format!("--stages {other}: expected categorize or all")),
    }
}

/// Loads the corpus into a fresh broker and runs `stages` over it.
fn run_medic(ctx: &mut Ctx, set: &str, stages: &[StageName]) -> Result<MedicRun, String> {
    let (topics, load_rate) = ctx.prepare(set)?;
    let ctx = &*ctx;
    let prefix = topics.prefix.clone();
    let config = ctx.config(&prefix);
    ctx.probe.reset();
    let inputs: Vec<(&'static str, Vec<String>)> = stages
        .iter()
        .map(|&s| {
            (
                s.as_str(),
                app::processor(s, &config, &topics, &ctx.rules).input_topics(),
            )
        })
        .collect();
    eprintln!("  running {set}");
    let running = ctx.start(stages, &config)?;
    let n = ctx.records();
    let raw = topics.logs_raw.clone();
    let mut last_report = Instant::now();
    let m = watch(
        ctx,
        || {
            let counts = ctx.probe.counts();
            if last_report.elapsed() > Duration::from_secs(5) {
                last_report = Instant::now();
                let mut c: Vec<String> = counts
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|((m, s, t), v)| {
                        let t = t.strip_prefix(&format!("{prefix}.")).unwrap_or(t);
                        format!(
                            "{s} {} {t} {v}",
                            if *m == CONSUMED { "read" } else { "wrote" }
                        )
                    })
                    .collect();
                c.sort();
                eprintln!("    {}", c.join(", "));
            }
            let mut into: HashMap<&str, u64> = HashMap::new();
            let mut from: HashMap<(&str, &str), u64> = HashMap::new();
            for ((metric, stage, topic), v) in &counts {
                if *metric == PRODUCED {
                    *into.entry(topic.as_str()).or_default() += v;
                } else if *metric == CONSUMED {
                    *from.entry((stage.as_str(), topic.as_str())).or_default() += v;
                }
            }
            *into.entry(raw.as_str()).or_default() += n;
            let read_raw = from.get(&("ingest", raw.as_str())).copied().unwrap_or(0);
            let caught_up = inputs.iter().all(|(stage, topics)| {
                topics.iter().all(|t| {
                    from.get(&(*stage, t.as_str())).copied().unwrap_or(0)
                        >= into.get(t.as_str()).copied().unwrap_or(0)
                })
            });
            let through: u64 = from.values().sum();
            (through, read_raw >= n && caught_up)
        },
        Duration::from_secs(900),
    );
    let produced_counts = |counts: HashMap<(&'static str, String, String), u64>| {
        let mut out: Vec<(String, u64)> = counts
            .into_iter()
            .filter(|((metric, _, _), _)| *metric == PRODUCED)
            // Counters of earlier phases stay registered, at zero.
            .filter_map(|((_, stage, topic), v)| {
                let topic = topic.strip_prefix(&format!("{prefix}."))?;
                Some((format!("{stage} → {topic}"), v))
            })
            .collect();
        out.sort();
        out
    };
    let at_end = produced_counts(ctx.probe.counts());
    // What the last timer ticks close after the last raw line, and what the
    // stages downstream make of it: counted, not timed.
    std::thread::sleep(Duration::from_millis(2 * ctx.args.timer_ms + 2_000));
    let after = produced_counts(ctx.probe.counts());
    let produced = after
        .into_iter()
        .map(|(what, n)| {
            let then = at_end.iter().find(|(w, _)| *w == what).map_or(0, |x| x.1);
            (what, then, n)
        })
        .collect();
    // decide drops a repeated failure id as a redelivered duplicate, so two
    // failures sharing one id lose the second (ids before 0.2 were
    // `deployment@first_seen` and did collide).
    let failures = ceiling::read_all(&ctx.settings, &topics.failures)?;
    let mut ids = std::collections::HashSet::new();
    let repeated_ids = failures
        .iter()
        .filter_map(|v| v.as_deref())
        .filter_map(|v| medic::codec::decode::<medic::domain::CategorizedFailure>(v).ok())
        .filter(|f| !ids.insert(f.id.clone()))
        .count();
    let processing = stages
        .iter()
        .filter_map(|s| {
            let h = ctx.probe.processing(s.as_str())?;
            let (count, qs, max) = h.summary(&[0.5, 0.99, 0.999]);
            Some((s.as_str().to_string(), count, qs, max))
        })
        .collect();
    running.stop()?;
    Ok(MedicRun {
        row: Row {
            name: format!("medic `{set}` ({})", names(stages)),
            records: n,
            load_rate,
            m,
        },
        repeated_ids,
        produced,
        processing,
    })
}

fn names(stages: &[StageName]) -> String {
    stages
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The ceilings, each on a fresh broker with the corpus loaded.
fn ceilings(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let n = ctx.records();
    let mut rows = Vec::new();

    let (topics, load_rate) = ctx.prepare("raw-consume")?;
    let raw = topics.logs_raw.clone();
    eprintln!("  ceiling: raw consume");
    let progress = Arc::new(AtomicU64::new(0));
    let handle = ceiling::spawn_raw_consume(&ctx.settings, &raw, n, progress.clone())?;
    let m = watch(
        ctx,
        || {
            let p = progress.load(Ordering::Relaxed);
            (p, p >= n)
        },
        Duration::from_secs(3600),
    );
    handle.join().map_err(|_| "raw consume panicked")??;
    rows.push(Row {
        name: "raw consume (assigned, no commits)".into(),
        records: n,
        load_rate,
        m,
    });

    let (topics, load_rate) = ctx.prepare("pass-through")?;
    let ctx = &mut *ctx;
    let raw = topics.logs_raw.clone();
    eprintln!("  ceiling: pass-through, 2 hops");
    let prefix = topics.prefix.clone();
    let config = ctx.config(&prefix);
    let hops = [format!("{prefix}.hop1"), format!("{prefix}.hop2")];
    ctx.broker()
        .create_topics(&ctx.settings, &hops, ctx.partitions, &ctx.rt)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let inputs = [raw.clone(), hops[0].clone()];
    let threads: Vec<_> = (0..2)
        .map(|i| {
            ceiling::spawn_pass_through(
                &ctx.settings,
                &config,
                ceiling::Hop {
                    input: inputs[i].clone(),
                    output: hops[i].clone(),
                    group: format!("{prefix}.hop{}", i + 1),
                    consumed: counters[i].clone(),
                },
                stop.clone(),
            )
        })
        .collect();
    let mut first_hop_done: Option<Instant> = None;
    let mut started_at: Option<Instant> = None;
    let m = watch(
        ctx,
        || {
            let (a, b) = (
                counters[0].load(Ordering::Relaxed),
                counters[1].load(Ordering::Relaxed),
            );
            if a > 0 && started_at.is_none() {
                started_at = Some(Instant::now());
            }
            if a >= n && first_hop_done.is_none() {
                first_hop_done = Some(Instant::now());
            }
            (a + b, b >= n)
        },
        Duration::from_secs(3600),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "pass-through panicked")??;
    }
    if let (Some(s), Some(d)) = (started_at, first_hop_done) {
        // The first hop alone: same phase, its own end.
        rows.push(Row {
            name: "pass-through, 1 hop (timed within the 2-hop run)".into(),
            records: n,
            load_rate,
            m: Measured {
                startup: m.startup,
                secs: (d - s).as_secs_f64(),
                cpu: CpuSplit::default(),
                rss_start: m.rss_start,
                rss_peak: m.rss_peak,
                broker_rss: None,
                timed_out: false,
            },
        });
    }
    rows.push(Row {
        name: "pass-through, 2 hops".into(),
        records: n,
        load_rate,
        m,
    });

    if ctx.args.skip_identity {
        return Ok(rows);
    }
    let (topics, load_rate) = ctx.prepare("identity")?;
    let ctx = &*ctx;
    let raw = topics.logs_raw.clone();
    eprintln!("  ceiling: medic runner with a copying core, 2 hops");
    let prefix = topics.prefix.clone();
    let hops = [format!("{prefix}.hop1"), format!("{prefix}.hop2")];
    ctx.broker()
        .create_topics(&ctx.settings, &hops, ctx.partitions, &ctx.rt)?;
    ctx.probe.reset();
    let shutdown = Shutdown::new();
    let executor: Arc<dyn medic::executors::Executor> =
        Arc::new(app::executors(&ctx.config(&prefix))?);
    let inputs = [raw, hops[0].clone()];
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let config = ctx.config(&format!("{prefix}.{i}"));
            ceiling::spawn_identity(
                &ctx.settings,
                &config,
                inputs[i].clone(),
                hops[i].clone(),
                executor.clone(),
                ctx.rt.handle().clone(),
                &shutdown,
            )
        })
        .collect();
    let m = watch(
        ctx,
        || {
            let counts = ctx.probe.counts();
            let read = |t: &str| {
                counts
                    .iter()
                    .filter(|((metric, _, topic), _)| *metric == CONSUMED && topic == t)
                    .map(|(_, v)| *v)
                    .sum::<u64>()
            };
            let (a, b) = (read(&inputs[0]), read(&inputs[1]));
            (a + b, b >= n)
        },
        Duration::from_secs(3600),
    );
    shutdown.trigger();
    for t in threads {
        match t.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("identity runner: {e}")),
            Err(_) => return Err("identity runner panicked".into()),
        }
    }
    rows.push(Row {
        name: "medic runner, copying core, 2 hops".into(),
        records: n,
        load_rate,
        m,
    });
    Ok(rows)
}

/// One open-loop rate.
struct OpenRow {
    set: String,
    level: f64,
    rate: f64,
    sent: u64,
    backlog: u64,
    measured: open_loop::Measured,
    approvals: u64,
}

fn open_loop_run(
    ctx: &mut Ctx,
    set: &str,
    stages: &[StageName],
    level: f64,
    max_rate: f64,
) -> Result<OpenRow, String> {
    let whole = stages.len() == StageName::ALL.len();
    let rate = max_rate * level;
    let topics = ctx.fresh(&format!("open-{set}"))?;
    let ctx = &*ctx;
    let config = ctx.config(&topics.prefix);
    ctx.probe.reset();
    let running = ctx.start(stages, &config)?;
    let seen = Arc::new(Mutex::new(open_loop::Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader =
        open_loop::spawn_reader(&ctx.settings, &topics, whole, seen.clone(), stop.clone())?;
    eprintln!(
        "  open loop {set}: {:.0} records/s ({:.0} % of {:.0}) for {} + {} s",
        rate,
        level * 100.0,
        max_rate,
        ctx.args.warmup_secs,
        ctx.args.open_loop_secs
    );
    let secs = ctx.args.warmup_secs + ctx.args.open_loop_secs;
    let created = open_loop::Created::default();
    let (sent, start_ms) = open_loop::pace(
        &ctx.settings,
        &topics.logs_raw,
        &ctx.corpus,
        rate,
        secs,
        &created,
    )?;
    let consumed: u64 = ctx
        .probe
        .counts()
        .iter()
        .filter(|((metric, stage, topic), _)| {
            *metric == CONSUMED && stage == "ingest" && *topic == topics.logs_raw
        })
        .map(|(_, v)| *v)
        .sum();
    let backlog = sent.saturating_sub(consumed);
    let from_ms = (start_ms + ctx.args.warmup_secs * 1000.0) as i64;
    let to_ms = (start_ms + secs * 1000.0) as i64;
    // Drain: every failure of the window answered (whole pipeline), or
    // nothing new for two seconds once the raw lines are all consumed.
    let deadline = Instant::now() + Duration::from_secs_f64(ctx.args.drain_secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let s = seen.lock().unwrap();
        let quiet = s
            .last_read
            .is_none_or(|t| t.elapsed() > Duration::from_secs(2));
        let pending = whole && open_loop::pending_outcomes(&s) > 0;
        if quiet && !pending {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().map_err(|_| "reader panicked")??;
    running.stop()?;
    let s = seen.lock().unwrap();
    Ok(OpenRow {
        set: set.to_string(),
        level,
        rate,
        sent,
        backlog,
        measured: open_loop::measure(&s, &created, from_ms, to_ms, whole),
        approvals: s.approvals,
    })
}

fn per_k(cpu: f64, records: u64) -> f64 {
    cpu * 1000.0 / records as f64
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}

fn run(mut args: Args) -> Result<(), String> {
    if !args.bench {
        eprintln!("e2e: not run by `cargo bench` (no --bench): a 2,000-record smoke run");
        args.records = 2_000;
        args.stages = vec!["categorize".into()];
        args.skip_ceiling = true;
        args.skip_open_loop = true;
    }
    let probe = Probe::install();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let kind = match &args.brokers {
        Some(_) => Kind::External,
        None => Kind::parse(&args.broker)?,
    };
    let mode = match args.mode.as_deref() {
        None if kind == Kind::Embedded => DeliveryMode::ExactlyOnce,
        None => DeliveryMode::AtLeastOnce,
        Some("exactly-once") => DeliveryMode::ExactlyOnce,
        Some("at-least-once") => DeliveryMode::AtLeastOnce,
        Some(other) => return Err(format!("--mode {other}: exactly-once or at-least-once")),
    };
    if mode == DeliveryMode::ExactlyOnce && matches!(kind, Kind::TansuMemory | Kind::TansuSqlite) {
        return Err("Tansu has no transactions: use --mode at-least-once".into());
    }
    let sets: Vec<(String, Vec<StageName>)> = args
        .stages
        .iter()
        .map(|s| stage_set(s).map(|v| (s.clone(), v)))
        .collect::<Result<_, _>>()?;

    let failures: Vec<String> = include_str!("../tests/data/categorization/labelled.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("text")?.as_str().map(str::to_string))
        .collect();
    let corpus = corpus::raw_logs(
        args.seed,
        args.records,
        args.deployments,
        args.failure_share,
        args.json_share,
        &failures,
    );
    if let Some(n) = args.print_corpus {
        for r in corpus.iter().take(n) {
            println!(
                "{}\t{}",
                String::from_utf8_lossy(&r.value),
                r.key.as_deref().unwrap_or("")
            );
        }
        return Ok(());
    }
    let bytes: usize = corpus.iter().map(|r| r.value.len()).sum();
    let failing = corpus.iter().filter(|r| r.failure).count();
    let json = corpus.iter().filter(|r| r.key.is_none()).count();

    let broker = Broker::start(kind, args.brokers.as_deref().map(|b| (b, args.broker_pid)))?;
    let mut settings =
        ClientSettings::from_config(broker.bootstrap.clone(), &Config::default().kafka);
    let pair = |property: &String| {
        property
            .split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or_else(|| format!("{property}: expected KEY=VALUE"))
    };
    for property in &args.producer_properties {
        let (k, v) = pair(property)?;
        settings.producer_properties.insert(k, v);
    }
    for property in &args.consumer_properties {
        let (k, v) = pair(property)?;
        settings.consumer_properties.insert(k, v);
    }
    if let Ok(debug) = std::env::var("E2E_RDKAFKA_DEBUG") {
        settings.properties.insert("debug".into(), debug);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or(0);
    let partitions = match (args.partitions, kind) {
        (p, _) if p > 0 => p,
        (_, Kind::Embedded) => ((bytes as f64 / (3.0 * 1024.0 * 1024.0)).ceil() as i32).max(6),
        _ => 6,
    };
    let mut ctx = Ctx {
        partitions,
        kind,
        broker: Some(broker),
        mode,
        settings,
        rt,
        probe,
        corpus,
        rules: Rules::builtin(),
        run: format!("e2e{nanos}"),
        seq: AtomicU32::new(0),
        args,
    };

    println!("## e2e: {}, {}", ctx.broker().kind.name(), mode);
    println!();
    println!(
        "{} records, {:.0} bytes on average ({} in Fluent Bit JSON, {} plain text keyed by \
         deployment), {} with failure text, {} deployments; window_quiet_ms {}, \
         timer_interval_ms {}, {} partitions in raw, signals and windows, {} cores",
        ctx.records(),
        bytes as f64 / ctx.records().max(1) as f64,
        json,
        ctx.records() as usize - json,
        failing,
        ctx.args.deployments,
        ctx.args.window_quiet_ms,
        ctx.args.timer_ms,
        ctx.partitions,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let delivery = ctx.config("header").delivery;
    println!(
        "Delivery: batch_max_records {}, batch_linger_ms {}; over medic's defaults, producer \
         properties {:?}, consumer properties {:?}",
        delivery.batch_max_records,
        delivery.batch_linger_ms,
        ctx.settings.producer_properties,
        ctx.settings.consumer_properties
    );
    println!();

    let ceiling_rows = if ctx.args.skip_ceiling {
        Vec::new()
    } else {
        ceilings(&mut ctx)?
    };
    let mut runs = Vec::new();
    for (set, stages) in &sets {
        runs.push(run_medic(&mut ctx, set, stages)?);
    }

    let pass2 = ceiling_rows
        .iter()
        .find(|r| r.name == "pass-through, 2 hops")
        .map(Row::rate);
    let raw_rate = ceiling_rows.first().map(Row::rate);
    println!(
        "| run | records/s | s | startup s | client CPU s / 1k | broker CPU s / 1k | peak RSS MiB \
         (start) | broker peak RSS MiB | ÷ pass-through 2 hops | ÷ raw consume | load records/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in ceiling_rows.iter().chain(runs.iter().map(|r| &r.row)) {
        let cpu = &row.m.cpu;
        let has_cpu = !cpu.by_thread.is_empty();
        println!(
            "| {}{} | {:.0} | {:.2} | {:.2} | {} | {} | {:.0} ({:.0}) | {} | {} | {} | {:.0} |",
            row.name,
            if row.m.timed_out { " (TIMED OUT)" } else { "" },
            row.rate(),
            row.m.secs,
            row.m.startup,
            if has_cpu {
                format!("{:.4}", per_k(cpu.medic, row.records))
            } else {
                "—".into()
            },
            match (has_cpu, cpu.broker) {
                (true, Some(b)) => format!("{:.4}", per_k(b, row.records)),
                _ => "—".into(),
            },
            row.m.rss_peak,
            row.m.rss_start,
            row.m
                .broker_rss
                .map_or("—".into(), |(_, peak)| format!("{peak:.0}")),
            pass2.map_or("—".into(), |p| format!("{:.2}", row.rate() / p)),
            raw_rate.map_or("—".into(), |p| format!("{:.2}", row.rate() / p)),
            row.load_rate,
        );
    }
    println!();
    println!(
        "CPU split: /proc/self/stat (all threads, living or exited) between the first record \
         consumed and the last; the broker is {}; the bench's main thread (polling counters) is \
         left out. Client CPU is everything else in this process: medic's stage threads, \
         librdkafka's client threads and the tokio workers (or the ceiling's own client).",
        if ctx.broker().in_process() {
            "librdkafka's mock-cluster thread `rdk:mock` (/proc/self/task/*/stat by thread name)"
        } else if ctx.broker().pid.is_some() {
            "the broker process (/proc/<pid>/stat)"
        } else {
            "not measured (external broker without --broker-pid)"
        }
    );
    println!();

    for run in &runs {
        println!("### {}", run.row.name);
        println!();
        println!("CPU seconds by thread while it ran:");
        println!();
        println!("| threads | CPU s | per 1k records |");
        println!("|---|---|---|");
        for (name, secs) in &run.row.m.cpu.by_thread {
            println!(
                "| {name} | {secs:.2} | {:.4} |",
                per_k(*secs, run.row.records)
            );
        }
        if let Some(b) = run.row.m.cpu.broker.filter(|_| !ctx.broker().in_process()) {
            println!(
                "| broker process | {b:.2} | {:.4} |",
                per_k(b, run.row.records)
            );
        }
        println!();
        println!("Records produced:");
        println!();
        println!("| stage → topic | by the end of the timed run | 2 s later |");
        println!("|---|---|---|");
        for (what, then, n) in &run.produced {
            println!("| {what} | {then} | {n} |");
        }
        println!();
        println!(
            "Failures carrying the id of an earlier failure, which decide drops as redelivered \
             duplicates: {}",
            run.repeated_ids
        );
        println!();
        println!(
            "Stage processing time per record (medic_processing_seconds, recorded by the runner \
             around the core's `process`):"
        );
        println!();
        println!("| stage | records | p50 µs | p99 µs | p999 µs | max µs |");
        println!("|---|---|---|---|---|---|");
        for (stage, count, qs, max) in &run.processing {
            println!(
                "| {stage} | {count} | {:.1} | {:.1} | {:.1} | {:.1} |",
                qs[0] as f64 / 1000.0,
                qs[1] as f64 / 1000.0,
                qs[2] as f64 / 1000.0,
                *max as f64 / 1000.0
            );
        }
        println!();
    }

    if !ctx.args.skip_open_loop {
        let mut open = Vec::new();
        for ((set, stages), run) in sets.iter().zip(&runs) {
            if run.row.m.timed_out {
                eprintln!("  no open loop for {set}: its closed-loop run did not finish");
                continue;
            }
            for level in ctx.args.levels.clone() {
                open.push(open_loop_run(&mut ctx, set, stages, level, run.row.rate())?);
            }
        }
        println!("### Open loop: raw line create time → output read back (ms)");
        println!();
        println!(
            "| stages | load | records/s | sent | backlog at end | output | count | p50 | p99 | \
             p999 | max |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for o in &open {
            let mut lines = vec![("categorized failure".to_string(), &o.measured.failures, 0)];
            if o.set == "all" {
                lines.push(("outcome".into(), &o.measured.outcomes, 0));
                lines.push((
                    "outcome, no timed wait".into(),
                    &o.measured.outcomes_no_wait,
                    0,
                ));
            }
            for (what, lat, _) in lines {
                let q = lat.quantiles();
                let f = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1}"));
                println!(
                    "| {} | {:.0} % | {:.0} | {} | {} | {what} | {} | {} | {} | {} | {} |",
                    o.set,
                    o.level * 100.0,
                    o.rate,
                    o.sent,
                    o.backlog,
                    lat.0.len(),
                    f(q.map(|q| q.0)),
                    f(q.map(|q| q.1)),
                    f(q.map(|q| q.2)),
                    f(q.map(|q| q.3)),
                );
            }
            if o.set == "all" {
                println!(
                    "|  |  |  |  |  | outcomes after a timed wait: {}, through a gate the bench \
                     approved: {} (approvals sent {}), failures without an outcome: {} |  |  |  \
                     |  |  |",
                    o.measured.waited, o.measured.gated, o.approvals, o.measured.missing_outcomes
                );
            }
        }
        println!();
        println!(
            "Latency: from the create time of the raw failure line that opened the failure (its \
             first evidence; stamped with the time it was due, so a producer falling behind \
             counts) to the time the reader read the failure, or its recovery's outcome; 1 ms \
             resolution. Backlog: raw records not yet consumed by ingest when pacing ended."
        );
    }
    Ok(())
}
