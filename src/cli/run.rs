//! `medic run <stage>|all`: the pipeline's stages (and, for `all`, the bridge) in this process.

use super::bridge::{bind_bridge, run_bridge};
use super::{shutdown_on_signal, StageArg};
use anyhow::{anyhow, bail, Context};
use medic::app;
use medic::config::Config;
use medic::kafka::embedded::EmbeddedCluster;
use medic::kafka::runner::{RunStats, RunnerError};
use medic::kafka::{ClientSettings, Shutdown};
use medic::stages::StageName;
use medic::topics::Topics;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Runs the stages `stage` names until SIGINT/SIGTERM.
pub(super) async fn command(
    config: Config,
    topics: &Topics,
    stage: StageArg,
) -> anyhow::Result<ExitCode> {
    let stages: Vec<StageName> = match stage {
        StageArg::All => StageName::ALL.to_vec(),
        StageArg::Ingest => vec![StageName::Ingest],
        StageArg::Categorize => vec![StageName::Categorize],
        StageArg::Decide => vec![StageName::Decide],
        StageArg::Orchestrate => vec![StageName::Orchestrate],
        StageArg::Notify => vec![StageName::Notify],
        StageArg::Shadow => vec![StageName::Shadow],
    };
    run_stages(config, topics, &stages).await
}

pub(super) fn check_layout() -> anyhow::Result<()> {
    let conflicts = medic::topics::copartition_conflicts(
        medic::topics::specs().iter().map(|s| (s, s.partitions)),
    );
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
    let (executors, router) = app::executors_and_router(&config).map_err(|e| anyhow!(e))?;
    if stages.contains(&StageName::Orchestrate) {
        app::check_routing(&config, &rules, &router).map_err(|e| anyhow!(e))?;
    }
    let executor = Arc::new(executors);
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
        match join_stage(handle).await {
            Ok(stats) => tracing::info!(%stage, ?stats, "stage finished"),
            Err(why) => {
                eprintln!(
                    "medic: {stage}: {}",
                    why.map_or("the stage thread panicked".to_string(), |e| e.to_string())
                );
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

/// Waits for a stage's thread without blocking the runtime: its statistics,
/// or the error it stopped on (`None` when the thread panicked).
pub(super) async fn join_stage(
    handle: std::thread::JoinHandle<Result<RunStats, RunnerError>>,
) -> Result<RunStats, Option<RunnerError>> {
    match tokio::task::spawn_blocking(move || handle.join()).await {
        Ok(Ok(result)) => result.map_err(Some),
        _ => Err(None),
    }
}
