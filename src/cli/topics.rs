//! `medic topics list|apply`: the topic definitions, and creating them on a cluster.

use super::real_cluster;
use anyhow::anyhow;
use medic::config::Config;
use medic::kafka::admin;
use medic::topics::Topics;
use std::process::ExitCode;

/// Prints the topic definitions.
pub(super) fn list(topics: &Topics) -> anyhow::Result<ExitCode> {
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

/// Creates missing topics and reports drift; exits 3 on drift.
pub(super) async fn apply(config: &Config, topics: &Topics) -> anyhow::Result<ExitCode> {
    let settings = real_cluster(config, "topics apply")?;
    let report = admin::apply(&settings, topics)
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
