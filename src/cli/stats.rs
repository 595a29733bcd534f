//! `medic stats`: recovery statistics from the outcomes topic.

use super::real_cluster;
use anyhow::anyhow;
use medic::config::Config;
use medic::kafka::restore::read_topic;
use medic::topics::Topics;
use std::process::ExitCode;
use std::time::Duration;

/// Reads the outcomes topic and prints what recovered and what did not.
pub(super) fn command(
    config: &Config,
    topics: &Topics,
    json: bool,
    include_simulated: bool,
    since_ms: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let settings = real_cluster(config, "stats")?;
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
    if let Some(window) = since_ms {
        let from = medic::timefmt::wall_clock() - window;
        outcomes.retain(|o: &medic::domain::RecoveryOutcome| o.finished_at >= from);
    }
    let stats = if include_simulated {
        medic::stats::Stats::from_outcomes_including_simulated(&outcomes)
    } else {
        medic::stats::Stats::from_outcomes(&outcomes)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{stats}");
    }
    Ok(ExitCode::SUCCESS)
}
