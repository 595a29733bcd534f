//! `medic strategies validate|docs|render|list`: the recovery strategies.

use super::{real_cluster, RenderFormat, StrategiesCommand};
use anyhow::{anyhow, Context};
use medic::config::Config;
use medic::domain::StrategyCount;
use medic::kafka::restore::read_topic;
use medic::stages::decide::policy::Policy;
use medic::stages::decide::{render, select, Decide};
use medic::stages::Processor;
use medic::topics::Topics;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The configured recovery policy alone (no rule pack to build).
fn configured_policy(config: &Config) -> anyhow::Result<Arc<Policy>> {
    Ok(Arc::new(Policy::load_files(&config.decide.policy_files)?))
}

pub(super) fn command(
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
            println!("\n{:<16} {:<26} then", "type", "first choice");
            for t in medic::domain::FailureType::ALL {
                let mut ranked: Vec<(&str, f64)> = policy
                    .strategies()
                    .iter()
                    .filter(|s| s.applies_to.types.is_empty() || s.applies_to.types.contains(t))
                    .map(|s| {
                        let counts = decide
                            .learned()
                            .get(&select::stats_key(&s.id, *t))
                            .copied()
                            .unwrap_or_default();
                        (s.id.as_str(), select::expected_success(s, counts))
                    })
                    .collect();
                // Stable: equal rates keep policy order, as the choice does.
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                let first = ranked.first().map_or("none", |(id, _)| id);
                let then: Vec<String> = ranked
                    .iter()
                    .skip(1)
                    .map(|(id, p)| format!("{id} ({p:.2})"))
                    .collect();
                println!("{:<16} {:<26} {}", t.as_str(), first, then.join(", "));
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
