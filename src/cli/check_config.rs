//! `medic check-config`: loads everything a run would load and says what it found.

use anyhow::anyhow;
use medic::app;
use medic::config::Config;
use std::process::ExitCode;

/// Builds the rule pack, the policy and the executors from `config`, or fails
/// with the first problem.
pub(super) fn command(config: &Config) -> anyhow::Result<ExitCode> {
    let rules = app::rules(config)?;
    let (_, router) = app::executors_and_router(config).map_err(|e| anyhow!(e))?;
    app::check_routing(config, &rules, &router).map_err(|e| anyhow!(e))?;
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
        config.orchestrate.dry_run.describe(),
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
