//! `medic simulate`: replays recorded failures through a candidate policy and reports what would change.

use super::{parse_time, read_input, real_cluster};
use anyhow::{anyhow, bail, Context};
use medic::app;
use medic::config::Config;
use medic::domain::CategorizedFailure;
use medic::kafka::restore::read_topic;
use medic::stages::decide::policy::Policy;
use medic::stages::decide::simulate::Recorded;
use medic::topics::Topics;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `medic simulate` arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
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
}

/// Replays failures from `--input` (or the failures topic) through the policy in `--policy`.
pub(super) fn command(config: &Config, topics: &Topics, args: Args) -> anyhow::Result<ExitCode> {
    let Args {
        policy,
        input,
        json,
        fail_on_change,
        since,
        until,
    } = args;
    let rules = app::rules(config)?;
    let candidate = Arc::new(Policy::load_dir(&policy)?);
    let mut inputs: Vec<(usize, Result<Recorded, String>)> = Vec::new();
    match (input, &config.kafka.brokers) {
        (Some(path), _) => {
            for (n, line) in read_input(&path)?.lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if let Some(r) = medic::stages::decide::simulate::parse_line(&line).transpose() {
                    inputs.push((n + 1, r));
                }
            }
        }
        (None, Some(_)) => {
            let settings = real_cluster(config, "simulate")?;
            let mut n = 0;
            read_topic(
                &settings,
                &topics.failures,
                None,
                Duration::from_secs(120),
                |_, value| {
                    n += 1;
                    let record = value
                        .ok_or_else(|| "a tombstone".to_string())
                        .and_then(|v| {
                            medic::codec::decode::<CategorizedFailure>(v).map_err(|e| e.to_string())
                        });
                    let in_range = |f: &CategorizedFailure| {
                        since.is_none_or(|s| f.first_seen >= s)
                            && until.is_none_or(|u| f.first_seen < u)
                    };
                    match record {
                        Ok(f) if !in_range(&f) => {}
                        other => inputs.push((n, other.map(|f| Recorded::Failure(Box::new(f))))),
                    }
                    Ok(())
                },
            )
            .map_err(|e| anyhow!(e))?;
        }
        (None, None) => bail!("give --input FILE, or --brokers to read the failures topic"),
    }
    let report = medic::stages::decide::simulate::simulate(
        &rules.pack,
        &config.decide,
        rules.policy,
        candidate,
        inputs,
    );
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
