//! The embedded cluster: librdkafka's in-process mock brokers, so that `medic
//! demo` and `medic run all` work with nothing else installed. Data lives in
//! memory and is gone when the process exits.

use crate::topics::Topics;
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A running embedded cluster with every medic topic created.
pub struct EmbeddedCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedCluster {
    /// Starts `brokers` in-process brokers and creates every topic of `topics`
    /// with its declared partition count.
    pub fn start(brokers: i32, topics: &Topics) -> Result<EmbeddedCluster, KafkaError> {
        let cluster = MockCluster::new(brokers)?;
        let replication = brokers.clamp(1, 3);
        for (name, spec) in topics.all() {
            cluster.create_topic(
                &name,
                spec.partitions,
                replication.min(spec.replication_factor),
            )?;
        }
        Ok(EmbeddedCluster { cluster })
    }

    /// `host:port,...` of the in-process brokers.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates an extra topic (tests use this for private topic sets).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), KafkaError> {
        self.cluster.create_topic(name, partitions, 1)
    }
}
