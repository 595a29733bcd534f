//! Everything that talks to Kafka: client settings, the embedded cluster, the
//! admin commands and the generic stage runner. No other module imports rdkafka.

pub mod admin;
mod budget;
pub mod config;
pub(crate) mod dedup;
pub mod embedded;
pub mod restore;
pub mod runner;
mod shutdown;

pub use shutdown::Shutdown;

use config::{DeliveryMode, KafkaConfig};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;

/// How to reach a cluster: bootstrap servers plus pass-through librdkafka
/// properties (SASL, TLS, timeouts).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    /// `host:port,...`.
    pub brokers: String,
    /// Extra librdkafka properties for every client.
    pub properties: BTreeMap<String, String>,
    /// Extra properties for consumers only (`session.timeout.ms`, ...).
    pub consumer_properties: BTreeMap<String, String>,
    /// Extra properties for producers only (`compression.type`, ...).
    pub producer_properties: BTreeMap<String, String>,
}

impl ClientSettings {
    /// Settings for `brokers` with no extra properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        ClientSettings::from_config(brokers, &KafkaConfig::default())
    }

    /// Settings for `brokers` with the properties of `config`.
    pub fn from_config(brokers: impl Into<String>, config: &KafkaConfig) -> Self {
        ClientSettings {
            brokers: brokers.into(),
            properties: config.properties.clone(),
            consumer_properties: config.consumer_properties.clone(),
            producer_properties: config.producer_properties.clone(),
        }
    }

    /// A base config: bootstrap servers and the pass-through properties.
    pub fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// A consumer-group member that commits explicitly and reads only committed data.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        // Statistics feed `medic_consumer_lag`; `0` turns them off.
        if config.get("statistics.interval.ms").is_none() {
            config.set("statistics.interval.ms", "10000");
        }
        for (k, v) in &self.consumer_properties {
            config.set(k, v);
        }
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            // Eager assignment: every rebalance revokes everything, so state is
            // rebuilt for exactly the new assignment.
            .set("partition.assignment.strategy", "range");
        config
    }

    /// A producer partitioning like the Java client (murmur2), so keys land
    /// where other tools expect; transactional when `transactional_id` is set.
    /// The producer properties of the configuration (`linger.ms`,
    /// `compression.type`, ...) apply over medic's defaults, not over the
    /// delivery settings.
    pub fn producer(&self, mode: DeliveryMode, transactional_id: Option<&str>) -> ClientConfig {
        let mut config = self.base();
        config
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5");
        for (k, v) in &self.producer_properties {
            config.set(k, v);
        }
        match (mode, transactional_id) {
            (DeliveryMode::ExactlyOnce, Some(id)) => {
                config
                    .set("transactional.id", id)
                    .set("transaction.timeout.ms", "60000");
            }
            _ => {
                config.set("enable.idempotence", "true");
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_properties_apply_over_defaults_but_not_over_delivery() {
        let mut settings = ClientSettings::new("localhost:9092");
        settings.producer_properties.extend(
            [
                ("linger.ms", "20"),
                ("compression.type", "zstd"),
                ("transactional.id", "someone-else"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        settings
            .consumer_properties
            .insert("fetch.wait.max.ms".into(), "50".into());
        let producer = settings.producer(DeliveryMode::ExactlyOnce, Some("medic.decide.1"));
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("compression.type"), Some("zstd"));
        assert_eq!(producer.get("transactional.id"), Some("medic.decide.1"));
        assert_eq!(producer.get("partitioner"), Some("murmur2_random"));
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
        let plain = ClientSettings::new("localhost:9092").producer(DeliveryMode::AtLeastOnce, None);
        assert_eq!(plain.get("linger.ms"), Some("5"));
        assert_eq!(plain.get("enable.idempotence"), Some("true"));
    }
}
