//! Command-line interface: the arguments (`Cli`, `Command`), the setup every
//! subcommand shares (configuration layering, logging, the cluster to talk
//! to, shutdown on SIGINT/SIGTERM) and the dispatch. Each subcommand lives in
//! its own file: `run`, `demo`, `bridge`, `categorize`, `plan`, `strategies`,
//! `simulate`, `stats`, `topics`, `approve`, `check_config`.

mod approve;
mod bridge;
mod categorize;
mod check_config;
mod demo;
mod plan;
mod run;
mod simulate;
mod stats;
mod strategies;
mod topics;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand, ValueEnum};
use medic::config::{Config, DeliveryMode};
use medic::kafka::{ClientSettings, Shutdown};
use medic::stages::categorize::rules::RulePack;
use medic::topics::Topics;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
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
    /// outcome topic (needs --brokers). Recoveries with simulated steps are
    /// counted but left out of the rates and times.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Count recoveries with simulated (dry-run) steps in the rates and
        /// times as if those steps had run.
        #[arg(long)]
        include_simulated: bool,
        /// Only recoveries that ended within this long before now: `30m`,
        /// `1h`, `24h`, `7d`.
        #[arg(long, value_parser = parse_window)]
        since: Option<i64>,
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
    Simulate(simulate::Args),
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
            demo::command(config, &topics, Duration::from_secs(timeout_secs)).await
        }
        Command::Bridge => {
            init_tracing("info", log_format);
            bridge::command(config, topics).await
        }
        Command::Run { stage } => {
            init_tracing("info", log_format);
            run::command(config, &topics, stage).await
        }
        Command::Topics {
            command: TopicsCommand::List,
        } => topics::list(&topics),
        Command::Topics {
            command: TopicsCommand::Apply,
        } => {
            init_tracing("warn", log_format);
            topics::apply(&config, &topics).await
        }
        Command::Approve {
            recovery_id,
            approver,
            reject,
            reason,
        } => {
            init_tracing("warn", log_format);
            approve::command(&config, &topics, recovery_id, approver, reject, reason).await
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
        } => plan::command(
            &config,
            &topics,
            message,
            environment,
            service,
            policy_files,
            json,
        ),
        Command::Strategies { command } => strategies::command(&config, &topics, command),
        Command::Stats {
            json,
            include_simulated,
            since,
        } => stats::command(&config, &topics, json, include_simulated, since),
        Command::Simulate(args) => simulate::command(&config, &topics, args),
        Command::CheckConfig => check_config::command(&config),
    }
}

/// A window such as `30m`, `1h`, `24h` or `7d`, in milliseconds.
fn parse_window(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a window such as 30m, 1h, 24h or 7d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    n.checked_mul(unit_ms).ok_or_else(bad)
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
