//! The `kafka` and `delivery` sections: how medic reaches the cluster and how
//! records move between stages (the runner's settings).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Cluster connection and naming.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port,...` of a real cluster; absent means the embedded cluster.
    pub brokers: Option<String>,
    /// Topic names are `<topic_prefix>.<name>`.
    pub topic_prefix: String,
    /// Consumer groups are `<group_prefix>.<stage>`.
    pub group_prefix: String,
    /// Extra librdkafka properties for every client (`security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`, ...). Values may use `${env:NAME}`
    /// or `${file:/path}`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only (`session.timeout.ms`,
    /// `max.poll.interval.ms`, ...).
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for producers only (`compression.type`, `linger.ms`, ...).
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            topic_prefix: "medic".into(),
            group_prefix: "medic".into(),
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

/// How a stage hands records to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DeliveryMode {
    /// Kafka transactions: consume, produce and commit atomically. Needs a
    /// broker with transaction support (Apache Kafka, Redpanda). The embedded
    /// cluster accepts transactions but keeps no offsets committed inside
    /// them, so a stage restarted on it reads its input again from the start.
    #[serde(rename = "exactly-once")]
    ExactlyOnce,
    /// Commit after the produced records are acknowledged; a crash may resend
    /// records, which consumers drop by record id.
    #[serde(rename = "at-least-once")]
    AtLeastOnce,
}

impl fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeliveryMode::ExactlyOnce => "exactly-once",
            DeliveryMode::AtLeastOnce => "at-least-once",
        })
    }
}

/// How records move between stages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// `exactly-once` or `at-least-once`.
    pub mode: DeliveryMode,
    /// Most records handled between two commits (default 5,000: at 500 the
    /// per-commit wait held categorize to 38 K records/s on the embedded
    /// cluster, at 5,000 it reaches 98 K; a batch also ends after
    /// `batch_linger_ms`, so low rates see no extra delay).
    pub batch_max_records: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub batch_linger_ms: u64,
    /// Record ids remembered per stage instance to drop redelivered duplicates.
    pub dedup_capacity: usize,
    /// At most this many records go to the dead-letter topic per minute and
    /// stage instance; past that the stage commits what it did and pauses
    /// until the minute is over, so a bad deploy cannot drain a topic into it.
    pub max_deadletters_per_minute: u32,
    /// How often each stage's timer runs (window closing, timeouts), in milliseconds.
    pub timer_interval_ms: u64,
    /// This process's name in transactional ids (`<group>.<instance_id>`;
    /// env `MEDIC_INSTANCE_ID`). Give each process a name that is stable
    /// across its restarts and unique among running processes (a StatefulSet
    /// pod name): a restarted process then aborts what its predecessor left
    /// open at once, instead of readers waiting for the transaction timeout.
    /// Unset: the process id and start time, new on every start.
    pub instance_id: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            mode: DeliveryMode::ExactlyOnce,
            batch_max_records: 5000,
            batch_linger_ms: 20,
            dedup_capacity: 100_000,
            max_deadletters_per_minute: 1_000,
            timer_interval_ms: 250,
            instance_id: None,
        }
    }
}

impl KafkaConfig {
    /// `(section, property)` of every configured librdkafka property.
    fn property_names(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.properties
            .keys()
            .map(|k| ("properties", k.as_str()))
            .chain(
                self.consumer_properties
                    .keys()
                    .map(|k| ("consumer_properties", k.as_str())),
            )
            .chain(
                self.producer_properties
                    .keys()
                    .map(|k| ("producer_properties", k.as_str())),
            )
    }
}

impl KafkaConfig {
    /// Checks values that parse but cannot work; returns `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        for (name, field) in [
            (&self.topic_prefix, "kafka.topic_prefix"),
            (&self.group_prefix, "kafka.group_prefix"),
        ] {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return fail(
                    field,
                    format!(
                        "'{name}' must be non-empty and use only letters, digits, '.', '_' and '-'"
                    ),
                );
            }
        }
        if let Some(brokers) = &self.brokers {
            if brokers.split(',').any(|b| b.trim().is_empty()) {
                return fail(
                    "kafka.brokers",
                    format!("'{brokers}' is not a host:port,... list"),
                );
            }
        }
        for (section, name) in self.property_names() {
            if OWNED_PROPERTIES.contains(&name) {
                return fail(
                    &format!("kafka.{section}.{name}"),
                    "medic sets this property itself to keep its delivery guarantee; \
                     use kafka.brokers or delivery.mode instead"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The largest record the producer sends (`message.max.bytes`, default
    /// 1,000,000).
    pub fn record_limit(&self) -> usize {
        self.producer_properties
            .get("message.max.bytes")
            .or_else(|| self.properties.get("message.max.bytes"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1_000_000)
    }
}

impl DeliveryConfig {
    /// Checks values that parse but cannot work; returns `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        let d = self;
        if d.batch_max_records == 0 {
            return fail("delivery.batch_max_records", "must be at least 1".into());
        }
        if d.timer_interval_ms == 0 {
            return fail("delivery.timer_interval_ms", "must be at least 1".into());
        }
        if let Some(id) = &d.instance_id {
            if id.is_empty()
                || id.len() > 200
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return fail(
                    "delivery.instance_id",
                    format!("'{id}' must be 1 to 200 letters, digits, '.', '_' or '-'"),
                );
            }
        }
        Ok(())
    }
}

/// Librdkafka properties medic sets itself; configuring them would break a guarantee.
const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "transactional.id",
    "isolation.level",
    "enable.idempotence",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "partitioner",
];
