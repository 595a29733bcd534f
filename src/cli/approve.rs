//! `medic approve`: an approval or rejection for a gated recovery, sent to the approvals topic.

use super::real_cluster;
use anyhow::{anyhow, Context};
use medic::config::{Config, DeliveryMode};
use medic::domain::{Approval, ApprovalDecision, DeploymentKey};
use medic::topics::Topics;
use std::process::ExitCode;
use std::time::Duration;

/// Sends the decision on `recovery_id` to the approvals topic.
pub(super) async fn command(
    config: &Config,
    topics: &Topics,
    recovery_id: String,
    approver: String,
    reject: bool,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let key = DeploymentKey::of_recovery_id(&recovery_id).with_context(|| {
        format!("'{recovery_id}' is not a recovery id (service/environment#number)")
    })?;
    let settings = real_cluster(config, "approve")?;
    let approval = Approval {
        recovery_id: recovery_id.clone(),
        decision: if reject {
            ApprovalDecision::Rejected
        } else {
            ApprovalDecision::Approved
        },
        approver,
        reason,
        decided_at: medic::timefmt::wall_clock(),
    };
    let value = medic::codec::encode(&approval)?;
    let producer: rdkafka::producer::FutureProducer = settings
        .producer(DeliveryMode::AtLeastOnce, None)
        .create()
        .context("creating the producer")?;
    let key = key.to_string();
    let record = rdkafka::producer::FutureRecord::to(&topics.approvals)
        .key(&key)
        .payload(&value);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow!("sending the approval to {}: {e}", topics.approvals))?;
    println!(
        "{} {recovery_id} as {}",
        approval.decision, approval.approver
    );
    Ok(ExitCode::SUCCESS)
}
