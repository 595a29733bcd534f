//! `medic plan`: the category and the recovery plan medic would make for a message.

use medic::config::Config;
use medic::stages::categorize::{offline, rules::RulePack};
use medic::stages::decide::policy::Policy;
use medic::stages::decide::{render, Decide};
use medic::topics::Topics;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Categorizes `message` and prints the plan the decide stage would make.
pub(super) fn command(
    config: &Config,
    topics: &Topics,
    message: String,
    environment: String,
    service: String,
    policy_files: Vec<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
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
        println!("no rule matched: medic reports no failure for this text, so it plans nothing");
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
