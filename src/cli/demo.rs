//! `medic demo`: the whole pipeline on the embedded cluster, driven with fixture traffic.

use super::run::{check_layout, join_stage};
use super::shutdown_on_signal;
use anyhow::{anyhow, bail, Context};
use medic::app;
use medic::config::Config;
use medic::kafka::embedded::EmbeddedCluster;
use medic::kafka::{ClientSettings, Shutdown};
use medic::stages::StageName;
use medic::topics::Topics;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Runs the demo and reports what it saw.
pub(super) async fn command(
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
    let report = medic::demo::drive(&settings, topics, &config, timeout, &mut stdout).await;
    shutdown.trigger();
    let mut problems = Vec::new();
    for (stage, handle) in handles {
        match join_stage(handle).await {
            Ok(_) => {}
            Err(Some(e)) => problems.push(format!("{stage} stopped: {e}")),
            Err(None) => problems.push(format!("{stage} panicked")),
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
            medic::demo::APPROVER
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("medic demo: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}
