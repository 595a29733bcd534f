//! `medic bridge`: the webhook bridge on its own.

use super::{real_cluster, shutdown_on_signal};
use anyhow::{anyhow, Context};
use medic::bridge::BridgeState;
use medic::config::Config;
use medic::kafka::{ClientSettings, Shutdown};
use medic::topics::Topics;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Serves the bridge until SIGINT/SIGTERM.
pub(super) async fn command(config: Config, topics: Topics) -> anyhow::Result<ExitCode> {
    let settings = real_cluster(&config, "bridge")?;
    let shutdown = Shutdown::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let listener = bind_bridge(&config).await?;
    run_bridge(config, settings, topics, listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Binds the bridge's listener, so that a taken port fails before anything starts.
pub(super) async fn bind_bridge(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
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
pub(super) async fn run_bridge(
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
