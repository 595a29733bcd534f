//! `medic topics apply`: create missing topics, report drift on existing ones.

use super::ClientSettings;
use crate::topics::{copartition_conflicts, TopicSpec, Topics};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Config keys compared for drift.
const COMPARED: &[&str] = &["cleanup.policy", "retention.ms"];

/// What `apply` found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ApplyReport {
    /// Topics created now.
    pub created: Vec<String>,
    /// Topics that already matched their spec.
    pub unchanged: Vec<String>,
    /// Differences between the cluster and `topics/`.
    pub drift: Vec<Drift>,
    /// Checks that could not be made (e.g. a broker without DescribeConfigs).
    pub warnings: Vec<String>,
}

/// One difference between a live topic and its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// Topic.
    pub topic: String,
    /// What differs.
    pub what: String,
    /// Value in `topics/`.
    pub expected: String,
    /// Value on the cluster.
    pub actual: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is {} on the cluster, {} in topics/",
            self.topic, self.what, self.actual, self.expected
        )
    }
}

/// Creates every missing topic under `topics` and compares the rest.
pub async fn apply(settings: &ClientSettings, topics: &Topics) -> Result<ApplyReport, String> {
    let admin: AdminClient<DefaultClientContext> = settings
        .base()
        .create()
        .map_err(|e| format!("cannot create admin client: {e}"))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| {
            format!(
                "cannot read cluster metadata from {}: {e}",
                settings.brokers
            )
        })?;
    let brokers = metadata.brokers().len().max(1) as i32;
    let live: BTreeMap<String, i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect();
    let mut report = ApplyReport::default();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));

    let all = topics.all();
    let missing: Vec<&(String, &TopicSpec)> = all
        .iter()
        .filter(|(name, _)| !live.contains_key(name))
        .collect();
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|(name, spec)| {
                let mut t = NewTopic::new(
                    name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication_factor.min(brokers)),
                );
                for (k, v) in &spec.config {
                    t = t.set(k, v);
                }
                t
            })
            .collect();
        let results = admin
            .create_topics(&new_topics, &opts)
            .await
            .map_err(|e| format!("CreateTopics failed: {e}"))?;
        for result in results {
            match result {
                Ok(name) => report.created.push(name),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => report.unchanged.push(name),
                Err((name, code)) => return Err(format!("cannot create {name}: {code}")),
            }
        }
    }

    let existing: Vec<&(String, &TopicSpec)> = all
        .iter()
        .filter(|(name, _)| live.contains_key(name))
        .collect();
    for (name, spec) in &existing {
        let actual = live[name];
        if actual != spec.partitions {
            report.drift.push(Drift {
                topic: name.clone(),
                what: "partition count".into(),
                expected: spec.partitions.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    if !existing.is_empty() {
        let resources: Vec<ResourceSpecifier<'_>> = existing
            .iter()
            .map(|(n, _)| ResourceSpecifier::Topic(n))
            .collect();
        match admin.describe_configs(&resources, &opts).await {
            Err(e) => report.warnings.push(format!(
                "cannot read topic configs (DescribeConfigs: {e}); only partitions were compared"
            )),
            Ok(results) => {
                for ((name, spec), result) in existing.iter().zip(results) {
                    match result {
                        Err(code) => report
                            .warnings
                            .push(format!("{name}: cannot read config: {code}")),
                        Ok(resource) => {
                            for key in COMPARED {
                                let Some(want) = spec.config.get(*key) else {
                                    continue;
                                };
                                let have = resource.get(key).and_then(|e| e.value.clone());
                                let same = match (*key, have.as_deref()) {
                                    // Compare policies as sets: "compact,delete" == "delete,compact".
                                    ("cleanup.policy", Some(h)) => {
                                        policy_set(h) == policy_set(want)
                                    }
                                    (_, Some(h)) => h == want,
                                    (_, None) => false,
                                };
                                if !same {
                                    report.drift.push(Drift {
                                        topic: name.clone(),
                                        what: key.to_string(),
                                        expected: want.clone(),
                                        actual: have.unwrap_or_else(|| "unset".into()),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        for (name, _) in &existing {
            if !report.drift.iter().any(|d| &d.topic == name) && !report.unchanged.contains(name) {
                report.unchanged.push(name.clone());
            }
        }
    }

    let layout = all
        .iter()
        .map(|(name, spec)| (*spec, live.get(name).copied().unwrap_or(spec.partitions)));
    for (group, members) in copartition_conflicts(layout) {
        report.warnings.push(format!(
            "co-partition group {group} has differing partition counts {members:?}: stages joining these topics will lose state"
        ));
    }
    Ok(report)
}

fn policy_set(p: &str) -> Vec<String> {
    let mut v: Vec<String> = p
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    v.sort();
    v
}
