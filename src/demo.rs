//! `medic demo`: the whole pipeline on the embedded cluster, fed with sample
//! data kept in `demo/` (log records in Fluent Bit, Vector and Filebeat shapes,
//! plain text lines, and CI webhook payloads from GitHub, GitLab and CircleCI).
//!
//! The demo plays the operator: it approves every recovery whose state says it
//! waits for approval, then prints one line per failing deployment as its outcome
//! arrives. It succeeds when every deployment in `demo/expected.yaml` has an
//! outcome of the expected failure type and no other deployment has one.

use crate::ci::{self, Delivery};
use crate::codec;
use crate::config::Config;
use crate::domain::{
    Approval, ApprovalDecision, CiPlatform, DeploymentKey, RecoveryOutcome, RecoveryState,
    RecoveryStatus,
};
use crate::kafka::ClientSettings;
use crate::timefmt::wall_clock;
use crate::topics::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Sample raw log files: `(file, contents)`.
pub const LOG_FILES: &[(&str, &str)] = &[
    (
        "fluent-bit.jsonl",
        include_str!("../demo/logs/fluent-bit.jsonl"),
    ),
    ("vector.jsonl", include_str!("../demo/logs/vector.jsonl")),
    (
        "filebeat.jsonl",
        include_str!("../demo/logs/filebeat.jsonl"),
    ),
    ("plain.txt", include_str!("../demo/logs/plain.txt")),
];

/// Sample CI payloads: `(platform, event header, body)`.
pub const CI_PAYLOADS: &[(CiPlatform, &str, &str)] = &[
    (
        CiPlatform::GithubActions,
        "workflow_job",
        include_str!("../demo/ci/github-workflow_job-failure.json"),
    ),
    (
        CiPlatform::GitlabCi,
        "Pipeline Hook",
        include_str!("../demo/ci/gitlab-pipeline-failed.derived.json"),
    ),
    (
        CiPlatform::Circleci,
        "workflow-completed",
        include_str!("../demo/ci/circleci-workflow-completed-failed.json"),
    ),
];

/// Expected failure type per deployment.
pub const EXPECTED: &str = include_str!("../demo/expected.yaml");

/// Name of the demo's approver in the audit trail.
pub const APPROVER: &str = "demo-operator";

/// One record of the demo feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key, when the sample has one.
    pub key: Option<String>,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// The records the demo feeds in.
pub fn feed(topics: &Topics, now: i64) -> Result<Vec<FeedRecord>, String> {
    let mut records = Vec::new();
    for (file, text) in LOG_FILES {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // plain.txt lines are "<record key>\t<line>", as a producer keying by deployment would send them.
            let (key, value) = match (*file == "plain.txt")
                .then(|| line.split_once('\t'))
                .flatten()
            {
                Some((k, v)) => (Some(k.to_string()), v),
                None => (None, line),
            };
            records.push(FeedRecord {
                topic: topics.logs_raw.clone(),
                key,
                value: value.as_bytes().to_vec(),
            });
        }
    }
    for (platform, event, body) in CI_PAYLOADS {
        let delivery = Delivery {
            event: Some(event),
            delivery_id: None,
            received_at: now,
        };
        let mut ci_event = ci::normalize(*platform, body.as_bytes(), &delivery)
            .map_err(|e| format!("demo payload for {platform}: {e}"))?
            .ok_or_else(|| format!("demo payload for {platform} normalized to nothing"))?;
        // The sample payloads are years old; the demo sends them as if the
        // runs had just finished, as a live webhook would be.
        ci_event.started_at = None;
        ci_event.finished_at = Some(now);
        let key = DeploymentKey::new(&ci_event.service, &ci_event.environment).to_string();
        let value = codec::encode(&ci_event).map_err(|e| e.to_string())?;
        records.push(FeedRecord {
            topic: topics.ci_events.clone(),
            key: Some(key),
            value,
        });
    }
    Ok(records)
}

/// Approves each approval gate once, as a ChatOps bot answering the
/// `approval_needed` notification would (the demo, the end-to-end bench).
#[derive(Debug, Default)]
pub struct GateAnswerer {
    /// `recovery_id@gate` of every gate answered.
    answered: std::collections::BTreeSet<String>,
}

impl GateAnswerer {
    /// The approval for `state` when it waits at a gate not answered yet;
    /// a recovery may pass more than one gate.
    pub fn answer(
        &mut self,
        state: &RecoveryState,
        approver: &str,
        reason: Option<&str>,
        at: crate::domain::Millis,
    ) -> Option<Approval> {
        if state.status != RecoveryStatus::AwaitingApproval {
            return None;
        }
        let gate = format!(
            "{}@{}",
            state.recovery_id,
            state.cursor.as_deref().unwrap_or_default()
        );
        self.answered.insert(gate).then(|| Approval {
            recovery_id: state.recovery_id.clone(),
            decision: ApprovalDecision::Approved,
            approver: approver.into(),
            reason: reason.map(str::to_string),
            decided_at: at,
        })
    }
}

/// What the demo saw.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// Outcomes by deployment key.
    pub outcomes: BTreeMap<String, RecoveryOutcome>,
    /// Recoveries the demo approved.
    pub approved: Vec<String>,
    /// Everything that did not go as expected; empty on success.
    pub problems: Vec<String>,
}

/// Produces the feed to `settings`' cluster, approves gated plans and collects
/// outcomes until every expected deployment has one or `timeout` passes.
/// `out` receives one line per outcome as it arrives.
pub async fn drive(
    settings: &ClientSettings,
    topics: &Topics,
    config: &Config,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<DemoReport, String> {
    let expected: BTreeMap<String, String> =
        serde_yaml_ng::from_str(EXPECTED).map_err(|e| format!("demo/expected.yaml: {e}"))?;
    let producer: FutureProducer = settings
        .producer(crate::config::DeliveryMode::AtLeastOnce, None)
        .create()
        .map_err(|e| format!("demo producer: {e}"))?;
    let send = |topic: &str, key: Option<&str>, value: &[u8]| {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        producer
            .send_result(record)
            .map_err(|(e, _)| format!("producing to {topic}: {e}"))
    };
    for FeedRecord { topic, key, value } in feed(topics, wall_clock())? {
        let delivery = send(&topic, key.as_deref(), &value)?;
        delivery
            .await
            .map_err(|_| "demo producer closed".to_string())?
            .map_err(|(e, _)| format!("producing to {topic}: {e}"))?;
    }

    let watcher: BaseConsumer = settings
        .consumer(&format!("{}.demo-watch", config.kafka.group_prefix))
        .create()
        .map_err(|e| format!("demo consumer: {e}"))?;
    watcher
        .subscribe(&[topics.state.as_str(), topics.outcomes.as_str()])
        .map_err(|e| format!("demo consumer: {e}"))?;

    let mut report = DemoReport::default();
    let deadline = Instant::now() + timeout;
    writeln!(
        out,
        "{:<26} {:<15} {:<9} {:<24} outcome",
        "deployment", "failure type", "severity", "strategy"
    )
    .ok();
    let mut gates = GateAnswerer::default();
    while report.outcomes.len() < expected.len() && Instant::now() < deadline {
        let polled = tokio::task::block_in_place(|| watcher.poll(Duration::from_millis(100)));
        let Some(Ok(msg)) = polled else { continue };
        let Some(payload) = msg.payload() else {
            continue;
        };
        if msg.topic() == topics.state {
            let state: RecoveryState = codec::decode(payload).map_err(|e| e.to_string())?;
            let answer = gates.answer(&state, APPROVER, Some("approved by the demo"), wall_clock());
            if let Some(approval) = answer {
                let value = codec::encode(&approval).map_err(|e| e.to_string())?;
                send(&topics.approvals, Some(&state.deployment_key), &value)?
                    .await
                    .map_err(|_| "demo producer closed".to_string())?
                    .map_err(|(e, _)| format!("approving: {e}"))?;
                if !report.approved.contains(&state.recovery_id) {
                    report.approved.push(state.recovery_id);
                }
            }
        } else {
            let outcome: RecoveryOutcome = codec::decode(payload).map_err(|e| e.to_string())?;
            writeln!(
                out,
                "{:<26} {:<15} {:<9} {:<24} {}{}",
                outcome.deployment_key,
                outcome.failure_type.to_string(),
                outcome.severity.to_string(),
                outcome.strategy,
                outcome.outcome,
                if outcome.dry_run { " (dry run)" } else { "" }
            )
            .ok();
            report
                .outcomes
                .insert(outcome.deployment_key.clone(), outcome);
        }
    }
    let _ = producer.flush(Duration::from_secs(5));

    for (key, want) in &expected {
        match report.outcomes.get(key) {
            None => report
                .problems
                .push(format!("no outcome for {key} within {timeout:?}")),
            Some(o) if o.failure_type.as_str() != want => report.problems.push(format!(
                "{key}: categorized as {}, expected {want}",
                o.failure_type
            )),
            Some(_) => {}
        }
    }
    for key in report
        .outcomes
        .keys()
        .filter(|k| !expected.contains_key(*k))
    {
        report
            .problems
            .push(format!("unexpected failure reported for {key}"));
    }
    Ok(report)
}
