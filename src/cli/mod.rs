//! Command-line interface.

mod categorize;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use medic::app;
use medic::bridge::BridgeState;
use medic::config::{Config, DeliveryMode};
use medic::demo;
use medic::domain::{Approval, ApprovalDecision, DeploymentKey};
use medic::domain::{CategorizedFailure, StrategyCount};
use medic::kafka::embedded::EmbeddedCluster;
use medic::kafka::restore::read_topic;
use medic::kafka::{admin, ClientSettings, Shutdown};
use medic::stages::categorize::{offline, rules::RulePack};
use medic::stages::decide::policy::Policy;
use medic::stages::decide::simulate::{self, Recorded};
use medic::stages::decide::{render, select, Decide};
use medic::stages::Processor;
use medic::stages::StageName;
use medic::topics::{self, Topics};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Detects deployment failures in Kafka, categorizes them, decides and runs
/// recoveries, and tells people what happened.
#[derive(Debug, Parser)]
#[command(name = "medic", version, about)]
pub struct Cli {
    /// Configuration file (YAML); defaults are compiled in.
    #[arg(long, global = true, env = "MEDIC_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers, host:port,...; omit to use the embedded cluster.
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// Delivery mode between stages.
    #[arg(long, global = true, value_enum)]
    delivery_mode: Option<Mode>,
    /// Topic name prefix.
    #[arg(long, global = true)]
    topic_prefix: Option<String>,
    /// Log format on stderr: `text` for people, `json` (one object per line,
    /// with the record's span fields) for log pipelines. Filter with `RUST_LOG`.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MEDIC_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on the embedded cluster with sample data and
    /// print one line per failing deployment.
    Demo {
        /// Give up when the outcomes have not all arrived after this many seconds.
        #[arg(long, default_value_t = 90)]
        timeout_secs: u64,
    },
    /// Run one stage, or all of them, until SIGINT/SIGTERM.
    Run {
        /// Which stage.
        #[arg(value_enum)]
        stage: StageArg,
    },
    /// Run the CI/CD webhook bridge alone (`medic run all` starts it too).
    Bridge,
    /// Manage topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Approve (or reject) a recovery waiting for a human decision.
    Approve {
        /// The recovery id, e.g. checkout/production#1764400000500.684c6ca6.
        recovery_id: String,
        /// Who decides; written to the audit trail.
        #[arg(long = "by", visible_alias = "approver", env = "USER")]
        approver: String,
        /// Reject instead of approve.
        #[arg(long)]
        reject: bool,
        /// Why, for the audit trail.
        #[arg(long = "comment", visible_alias = "reason")]
        reason: Option<String>,
    },
    /// Categorize text offline with the same code the categorize stage runs.
    ///
    /// `medic categorize "MESSAGE"` prints one verdict. `--input FILE` (or `-`)
    /// reads one JSON object per line (`message` required; `environment`,
    /// `service`, `status_codes`, `error_rate`, `affected_users` optional; a
    /// line that is not JSON is the message) and writes one JSON result per
    /// line, in order. `--unmatched FILE` lists the most frequent shapes of
    /// the lines no rule matched.
    Categorize {
        /// The text to categorize.
        message: Option<String>,
        /// JSON-lines input, `-` for standard input.
        #[arg(long, conflicts_with_all = ["message", "unmatched"])]
        input: Option<PathBuf>,
        /// Log lines (one per line, `-` for standard input) to mine for unmatched shapes.
        #[arg(long, conflicts_with = "message")]
        unmatched: Option<PathBuf>,
        /// Environment for a MESSAGE (sets the severity base).
        #[arg(long)]
        environment: Option<String>,
        /// Extra rule packs, applied after those in the configuration.
        #[arg(long = "rule-pack")]
        rule_packs: Vec<PathBuf>,
        /// How many shapes `--unmatched` lists.
        #[arg(long, default_value_t = 25)]
        top: usize,
    },
    /// Check a configuration file and print the effective configuration's key values.
    CheckConfig,
    /// Categorize a message and show the recovery plan medic would make:
    /// category, chosen strategy, rejected candidates with the reason, and
    /// every decision on the way.
    Plan {
        /// The log line or error text.
        message: String,
        /// Environment of the failing deployment.
        #[arg(long, default_value = "production")]
        environment: String,
        /// Service of the failing deployment.
        #[arg(long, default_value = "service")]
        service: String,
        /// Extra policy files over the configured policy.
        #[arg(long = "policy")]
        policy_files: Vec<PathBuf>,
        /// Print the plan as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Recoveries by strategy and outcome, success and zero-downtime rates,
    /// time to recover, manual interventions and failures prevented, from the
    /// outcome topic (needs --brokers).
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Recovery strategies: list, draw, check.
    Strategies {
        #[command(subcommand)]
        command: StrategiesCommand,
    },
    /// Replay recorded failures under the current and a candidate policy and
    /// print which plans would change (strategy, gate, terminal, actions).
    ///
    /// Input: one JSON object or text line per failure (a CategorizedFailure,
    /// a Signal, `{"message": ...}` or plain text), or with `--brokers` and no
    /// `--input`, everything now on the failures topic. Nothing is written.
    Simulate {
        /// Directory of policy files (`*.yaml`) applied over the built-in policy.
        #[arg(long)]
        policy: PathBuf,
        /// Recorded inputs, `-` for standard input.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 3 when any plan would change (for CI checks of policy changes).
        #[arg(long)]
        fail_on_change: bool,
        /// With --brokers: only failures that began at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// With --brokers: only failures that began before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum StrategiesCommand {
    /// Every strategy with what it applies to, its prior success rate and,
    /// with `--brokers`, what medic has learned (from the decide.stats topic).
    List,
    /// Draw a strategy's tree.
    Render {
        /// Strategy id.
        id: String,
        /// Picture format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: RenderFormat,
    },
    /// Print the generated part of docs/strategies.md for the configured policy.
    Docs,
    /// Check policy files: exits 0 when they load over the built-in policy.
    Validate {
        /// Policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RenderFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StageArg {
    All,
    Ingest,
    Categorize,
    Decide,
    Orchestrate,
    Notify,
    /// The candidate policy of `shadow.policy_files` on live failures, in dry
    /// run, outcomes to medic.shadow.outcomes (not part of `all`).
    Shadow,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create missing topics from topics/ and report drift on existing ones.
    /// Exits 3 when the cluster differs from topics/.
    Apply,
    /// Print the topic definitions.
    List,
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), &|k| std::env::var(k).ok())?;
    if let Some(b) = &cli.brokers {
        config.kafka.brokers = Some(b.clone());
    }
    if let Some(m) = cli.delivery_mode {
        config.delivery.mode = match m {
            Mode::ExactlyOnce => DeliveryMode::ExactlyOnce,
            Mode::AtLeastOnce => DeliveryMode::AtLeastOnce,
        };
    }
    if let Some(p) = &cli.topic_prefix {
        config.kafka.topic_prefix = p.clone();
    }
    config
        .validate()
        .map_err(|(field, message)| anyhow!("command line: {field}: {message}"))?;
    Ok(config)
}

/// Settings for the configured cluster; `command` needs a real one.
fn real_cluster(config: &Config, command: &str) -> anyhow::Result<ClientSettings> {
    let brokers =
        config.kafka.brokers.clone().with_context(|| {
            format!("{command} needs --brokers (or kafka.brokers / MEDIC_BROKERS)")
        })?;
    Ok(ClientSettings::from_config(brokers, &config.kafka))
}

/// Logs to stderr at `default` level unless `RUST_LOG` says otherwise (e.g.
/// `RUST_LOG=info,medic::kafka=debug`).
fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

async fn shutdown_on_signal(shutdown: Shutdown) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.trigger();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: finishing in-flight records and committing");
    shutdown.trigger();
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(&cli)?;
    let log_format = cli.log_format;
    let topics = Topics::new(&config.kafka.topic_prefix);
    match cli.command {
        Command::Demo { timeout_secs } => {
            init_tracing("warn", log_format);
            run_demo(config, &topics, Duration::from_secs(timeout_secs)).await
        }
        Command::Bridge => {
            init_tracing("info", log_format);
            let settings = real_cluster(&config, "bridge")?;
            let shutdown = Shutdown::new();
            tokio::spawn(shutdown_on_signal(shutdown.clone()));
            let listener = bind_bridge(&config).await?;
            run_bridge(config, settings, topics, listener, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { stage } => {
            init_tracing("info", log_format);
            let stages: Vec<StageName> = match stage {
                StageArg::All => StageName::ALL.to_vec(),
                StageArg::Ingest => vec![StageName::Ingest],
                StageArg::Categorize => vec![StageName::Categorize],
                StageArg::Decide => vec![StageName::Decide],
                StageArg::Orchestrate => vec![StageName::Orchestrate],
                StageArg::Notify => vec![StageName::Notify],
                StageArg::Shadow => vec![StageName::Shadow],
            };
            run_stages(config, &topics, &stages).await
        }
        Command::Topics {
            command: TopicsCommand::List,
        } => {
            for (name, spec) in topics.all() {
                println!(
                    "{name:<32} {:>3} partitions  {:<22} {:<20} {}",
                    spec.partitions,
                    spec.config
                        .get("cleanup.policy")
                        .map(String::as_str)
                        .unwrap_or("delete"),
                    spec.value,
                    spec.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Topics {
            command: TopicsCommand::Apply,
        } => {
            init_tracing("warn", log_format);
            let settings = real_cluster(&config, "topics apply")?;
            let report = admin::apply(&settings, &topics)
                .await
                .map_err(|e| anyhow!(e))?;
            for t in &report.created {
                println!("created    {t}");
            }
            for t in &report.unchanged {
                println!("unchanged  {t}");
            }
            for d in &report.drift {
                println!("DRIFT      {d}");
            }
            for w in &report.warnings {
                println!("warning    {w}");
            }
            if report.drift.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "medic: {} topic setting(s) differ from topics/; medic does not change existing topics, fix them by hand",
                    report.drift.len()
                );
                Ok(ExitCode::from(3))
            }
        }
        Command::Approve {
            recovery_id,
            approver,
            reject,
            reason,
        } => {
            init_tracing("warn", log_format);
            let key = DeploymentKey::of_recovery_id(&recovery_id).with_context(|| {
                format!("'{recovery_id}' is not a recovery id (service/environment#number)")
            })?;
            let settings = real_cluster(&config, "approve")?;
            let approval = Approval {
                recovery_id: recovery_id.clone(),
                decision: if reject {
                    ApprovalDecision::Rejected
                } else {
                    ApprovalDecision::Approved
                },
                approver,
                reason,
                decided_at: medic::timefmt::wall_clock(),
            };
            let value = medic::codec::encode(&approval)?;
            let producer: rdkafka::producer::FutureProducer = settings
                .producer(DeliveryMode::AtLeastOnce, None)
                .create()
                .context("creating the producer")?;
            let key = key.to_string();
            let record = rdkafka::producer::FutureRecord::to(&topics.approvals)
                .key(&key)
                .payload(&value);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow!("sending the approval to {}: {e}", topics.approvals))?;
            println!(
                "{} {recovery_id} as {}",
                approval.decision, approval.approver
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Categorize {
            message,
            input,
            unmatched,
            environment,
            rule_packs,
            top,
        } => {
            let mut packs = config.categorize.rule_packs.clone();
            packs.extend(rule_packs);
            let pack = RulePack::load_files(&packs)?;
            categorize::command(
                &pack,
                &config.ingest,
                message,
                input,
                unmatched,
                environment,
                top,
            )
        }
        Command::Plan {
            message,
            environment,
            service,
            policy_files,
            json,
        } => {
            let pack = RulePack::load_files(&config.categorize.rule_packs)?;
            let mut files = config.decide.policy_files.clone();
            files.extend(policy_files);
            let policy = Arc::new(Policy::load_files(&files)?);
            let input = offline::OfflineInput {
                message,
                environment: Some(environment),
                service: Some(service),
                ..Default::default()
            };
            let Some(failure) = offline::failure(&pack, &input) else {
                println!(
                    "no rule matched: medic reports no failure for this text, so it plans nothing"
                );
                return Ok(ExitCode::SUCCESS);
            };
            let plan = Decide::new(topics.clone(), config.decide.clone(), policy)
                .plan(&failure, medic::timefmt::wall_clock());
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", render::explain(&failure, &plan));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Strategies { command } => strategies_command(&config, &topics, command),
        Command::Stats { json } => {
            let settings = real_cluster(&config, "stats")?;
            let mut outcomes = Vec::new();
            let mut unreadable = 0u64;
            read_topic(
                &settings,
                &topics.outcomes,
                None,
                Duration::from_secs(120),
                |_, value| {
                    match value.map(medic::codec::decode) {
                        Some(Ok(o)) => outcomes.push(o),
                        _ => unreadable += 1,
                    }
                    Ok(())
                },
            )
            .map_err(|e| anyhow!(e))?;
            if unreadable > 0 {
                eprintln!(
                    "medic: {unreadable} records on {} could not be read and are not counted",
                    topics.outcomes
                );
            }
            let stats = medic::stats::Stats::from_outcomes(&outcomes);
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            policy,
            input,
            json,
            fail_on_change,
            since,
            until,
        } => {
            let rules = app::rules(&config)?;
            let candidate = Arc::new(Policy::load_dir(&policy)?);
            let mut inputs: Vec<(usize, Result<Recorded, String>)> = Vec::new();
            match (input, &config.kafka.brokers) {
                (Some(path), _) => {
                    for (n, line) in read_input(&path)?.lines().enumerate() {
                        let line = line.with_context(|| format!("reading {}", path.display()))?;
                        if let Some(r) = simulate::parse_line(&line).transpose() {
                            inputs.push((n + 1, r));
                        }
                    }
                }
                (None, Some(_)) => {
                    let settings = real_cluster(&config, "simulate")?;
                    let mut n = 0;
                    read_topic(
                        &settings,
                        &topics.failures,
                        None,
                        Duration::from_secs(120),
                        |_, value| {
                            n += 1;
                            let record =
                                value
                                    .ok_or_else(|| "a tombstone".to_string())
                                    .and_then(|v| {
                                        medic::codec::decode::<CategorizedFailure>(v)
                                            .map_err(|e| e.to_string())
                                    });
                            let in_range = |f: &CategorizedFailure| {
                                since.is_none_or(|s| f.first_seen >= s)
                                    && until.is_none_or(|u| f.first_seen < u)
                            };
                            match record {
                                Ok(f) if !in_range(&f) => {}
                                other => {
                                    inputs.push((n, other.map(|f| Recorded::Failure(Box::new(f)))))
                                }
                            }
                            Ok(())
                        },
                    )
                    .map_err(|e| anyhow!(e))?;
                }
                (None, None) => bail!("give --input FILE, or --brokers to read the failures topic"),
            }
            let report =
                simulate::simulate(&rules.pack, &config.decide, rules.policy, candidate, inputs);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(if fail_on_change && !report.differences.is_empty() {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::CheckConfig => {
            let rules = app::rules(&config)?;
            app::executors(&config).map_err(|e| anyhow!(e))?;
            let channels: Vec<String> = config
                .notify
                .all_channels()
                .into_iter()
                .map(|c| c.name)
                .collect();
            println!(
                "ok: brokers={} delivery.mode={} topic_prefix={} dry_run={} channels={} rule_pack={} policy={}",
                config.kafka.brokers.as_deref().unwrap_or("(embedded)"),
                config.delivery.mode,
                config.kafka.topic_prefix,
                config.orchestrate.dry_run,
                if channels.is_empty() {
                    "none".to_string()
                } else {
                    channels.join(",")
                },
                rules.pack.version(),
                rules.policy.version(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The configured recovery policy alone (no rule pack to build).
fn configured_policy(config: &Config) -> anyhow::Result<Arc<Policy>> {
    Ok(Arc::new(Policy::load_files(&config.decide.policy_files)?))
}

fn strategies_command(
    config: &Config,
    topics: &Topics,
    command: StrategiesCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        StrategiesCommand::Validate { files } => {
            let policy = Policy::load_files(&files)?;
            println!(
                "ok: {} strategies, policy version {}",
                policy.strategies().len(),
                policy.version()
            );
            Ok(ExitCode::SUCCESS)
        }
        StrategiesCommand::Docs => {
            let policy = configured_policy(config)?;
            print!("{}", render::docs(&policy));
            Ok(ExitCode::SUCCESS)
        }
        StrategiesCommand::Render { id, format } => {
            let policy = configured_policy(config)?;
            let strategy = policy.strategy(&id).with_context(|| {
                let ids: Vec<&str> = policy.strategies().iter().map(|s| s.id.as_str()).collect();
                format!("no strategy '{id}' (known: {})", ids.join(", "))
            })?;
            let format = match format {
                RenderFormat::Mermaid => render::Format::Mermaid,
                RenderFormat::Dot => render::Format::Dot,
            };
            print!("{}", render::render(strategy, format));
            Ok(ExitCode::SUCCESS)
        }
        StrategiesCommand::List => {
            let policy = configured_policy(config)?;
            let mut decide = Decide::new(topics.clone(), config.decide.clone(), policy.clone());
            let learned = match &config.kafka.brokers {
                Some(_) => {
                    let settings = real_cluster(config, "strategies list")?;
                    read_topic(
                        &settings,
                        &topics.decide_stats,
                        None,
                        Duration::from_secs(60),
                        |key, value| {
                            decide
                                .restore(&topics.decide_stats, key, value)
                                .map_err(|e| e.to_string())
                        },
                    )
                    .map_err(|e| anyhow!(e))?;
                    true
                }
                None => false,
            };
            println!("policy {}", policy.version());
            println!(
                "{:<26} {:<34} {:>5} {:>9} {:>9}",
                "strategy", "applies to", "prior", "learned", "expected"
            );
            for s in policy.strategies() {
                let types: Vec<&str> = s.applies_to.types.iter().map(|t| t.as_str()).collect();
                let types = if types.is_empty() {
                    "every type".to_string()
                } else {
                    types.join(", ")
                };
                let rows: Vec<(&String, &StrategyCount)> = decide
                    .learned()
                    .iter()
                    .filter(|(k, c)| {
                        k.split('/').next() == Some(s.id.as_str()) && c.succeeded + c.failed > 0
                    })
                    .collect();
                let (ok, n) = rows.iter().fold((0, 0), |(ok, n), (_, c)| {
                    (ok + c.succeeded, n + c.succeeded + c.failed)
                });
                let learned_text = if learned {
                    format!("{ok}/{n}")
                } else {
                    "-".into()
                };
                println!(
                    "{:<26} {:<34} {:>5.2} {:>9} {:>9.2}",
                    s.id, types, s.prior_success_rate, learned_text, s.prior_success_rate
                );
                for (key, c) in rows {
                    let failure_type = key.split('/').nth(1).unwrap_or("?");
                    println!(
                        "  for {:<55} {:>4}/{:<4} {:>9.2}",
                        failure_type,
                        c.succeeded,
                        c.succeeded + c.failed,
                        select::expected_success(s, *c)
                    );
                }
            }
            if !learned {
                println!(
                    "
(learned rates come from the cluster: add --brokers)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_time(text: &str) -> Result<i64, String> {
    medic::timefmt::parse_datetime(text)
        .ok_or_else(|| format!("'{text}' is not an RFC 3339 time, e.g. 2026-11-29T08:00:00Z"))
}

pub(crate) fn read_input(path: &std::path::Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(std::io::BufReader::new(file)))
}

/// Binds the bridge's listener, so that a taken port fails before anything starts.
async fn bind_bridge(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(&config.bridge.listen)
        .await
        .with_context(|| {
            format!(
                "bridge cannot listen on {} (bridge.listen / MEDIC_BRIDGE_LISTEN)",
                config.bridge.listen
            )
        })
}

/// Serves the webhook bridge on `listener` until `shutdown` is set.
async fn run_bridge(
    config: Config,
    settings: ClientSettings,
    topics: Topics,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let metrics = medic::telemetry::install();
    let state = BridgeState::new(&config.bridge, &settings, &topics.ci_events, metrics)
        .map_err(|e| anyhow!(e))?
        .with_approvals(&config.bridge.approvals, &topics.approvals);
    if !config.bridge.approvals.tokens.is_empty() {
        tracing::info!(path = %config.bridge.approvals.path, "approvals endpoint");
    }
    let address = listener.local_addr()?;
    let paths = state.paths();
    if paths.is_empty() {
        tracing::warn!(%address, "webhook bridge up, but no platform has a secret configured: every webhook endpoint answers 404");
    }
    for (path, platform) in &paths {
        tracing::info!(%address, %path, %platform, "webhook endpoint");
    }
    println!(
        "webhook bridge listening on http://{address} ({} platform(s) configured)",
        paths.len()
    );
    let stop = async move {
        while !shutdown.is_triggered() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    medic::bridge::serve(
        Arc::new(state),
        config.bridge.body_limit_bytes,
        listener,
        stop,
    )
    .await?;
    Ok(())
}

fn check_layout() -> anyhow::Result<()> {
    let conflicts =
        topics::copartition_conflicts(topics::specs().iter().map(|s| (s, s.partitions)));
    if !conflicts.is_empty() {
        bail!(
            "topics/ declares co-partitioned topics with different partition counts: {conflicts:?}"
        );
    }
    Ok(())
}

async fn run_stages(
    config: Config,
    topics: &Topics,
    stages: &[StageName],
) -> anyhow::Result<ExitCode> {
    check_layout()?;
    let rules = app::rules(&config)?;
    if stages.contains(&StageName::Shadow) && rules.shadow_policy.is_none() {
        bail!("shadow mode needs a candidate policy: set shadow.policy_files");
    }
    let mut _embedded = None;
    let brokers = match &config.kafka.brokers {
        Some(b) => b.clone(),
        None => {
            let cluster =
                EmbeddedCluster::start(1, topics).context("starting the embedded cluster")?;
            let bootstrap = cluster.bootstrap_servers();
            println!("embedded Kafka cluster listening on {bootstrap}");
            println!(
                "produce raw logs to {} and CI events to {}; data is lost on exit",
                topics.logs_raw, topics.ci_events
            );
            _embedded = Some(cluster);
            bootstrap
        }
    };
    let settings = ClientSettings::from_config(brokers, &config.kafka);
    let executor = Arc::new(app::executors(&config).map_err(|e| anyhow!(e))?);
    let shutdown = Shutdown::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    medic::telemetry::install();
    let bridge_in_process = stages.len() == StageName::ALL.len();
    // One /metrics per process: the bridge's when it runs here, else its own.
    let metrics_server = match (&config.metrics.listen, bridge_in_process) {
        (Some(address), false) if !address.is_empty() => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("metrics.listen: cannot listen on {address}"))?;
            println!("metrics on http://{}/metrics", listener.local_addr()?);
            let stop = shutdown.clone();
            Some(tokio::spawn(medic::telemetry::serve(
                listener,
                async move {
                    while !stop.is_triggered() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            )))
        }
        _ => None,
    };
    let bridge = if bridge_in_process {
        let listener = bind_bridge(&config).await?;
        Some(tokio::spawn(run_bridge(
            config.clone(),
            settings.clone(),
            topics.clone(),
            listener,
            shutdown.clone(),
        )))
    } else {
        None
    };
    let handles = app::spawn_stages(
        stages,
        &config,
        &rules,
        &settings,
        executor,
        tokio::runtime::Handle::current(),
        &shutdown,
    );
    let mut failed = false;
    if let Some(bridge) = bridge {
        match bridge.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("medic: bridge: {e:#}");
                shutdown.trigger();
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    for (stage, handle) in handles {
        let result = tokio::task::spawn_blocking(move || handle.join()).await;
        match result {
            Ok(Ok(Ok(stats))) => tracing::info!(%stage, ?stats, "stage finished"),
            Ok(Ok(Err(e))) => {
                eprintln!("medic: {stage}: {e}");
                shutdown.trigger();
                failed = true;
            }
            _ => {
                eprintln!("medic: {stage}: the stage thread panicked");
                shutdown.trigger();
                failed = true;
            }
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_demo(
    mut config: Config,
    topics: &Topics,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    check_layout()?;
    if config.kafka.brokers.is_some() {
        bail!("the demo runs on the embedded cluster; drop --brokers");
    }
    let rules = app::rules(&config)?;
    // Short windows so the demo finishes in seconds rather than minutes.
    config.categorize.window_quiet_ms = 1_500;
    config.categorize.window_max_ms = 20_000;
    config.delivery.timer_interval_ms = 100;
    config.delivery.batch_linger_ms = 10;
    let cluster = EmbeddedCluster::start(1, topics).context("starting the embedded cluster")?;
    let settings = ClientSettings::from_config(cluster.bootstrap_servers(), &config.kafka);
    println!(
        "medic demo: embedded cluster at {}, {} delivery, recoveries in dry run\n",
        settings.brokers, config.delivery.mode
    );
    let executor = Arc::new(app::executors(&config).map_err(|e| anyhow!(e))?);
    let shutdown = Shutdown::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let handles = app::spawn_stages(
        &StageName::ALL,
        &config,
        &rules,
        &settings,
        executor,
        tokio::runtime::Handle::current(),
        &shutdown,
    );
    let mut stdout = std::io::stdout();
    let report = demo::drive(&settings, topics, &config, timeout, &mut stdout).await;
    shutdown.trigger();
    let mut problems = Vec::new();
    for (stage, handle) in handles {
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => problems.push(format!("{stage} stopped: {e}")),
            _ => problems.push(format!("{stage} panicked")),
        }
    }
    let report = report.map_err(|e| anyhow!(e))?;
    problems.extend(report.problems.iter().cloned());
    println!();
    if problems.is_empty() {
        println!(
            "{} failing deployments categorized and recovered (dry run); {} recoveries approved as {}.",
            report.outcomes.len(),
            report.approved.len(),
            demo::APPROVER
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("medic demo: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}
