//! Rebuilding a stage's state from its compacted changelog topics.

use super::ClientSettings;
use crate::stages::Processor;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Forgets the processor's state, then reads `partitions` of each of its state
/// topics from the beginning to the end (read-committed), applying every
/// record. Returns the number of records applied.
pub fn restore(
    settings: &ClientSettings,
    processor: &mut dyn Processor,
    partitions: &BTreeSet<i32>,
    timeout: Duration,
) -> Result<u64, String> {
    processor.reset();
    let mut applied = 0;
    for topic in processor.state_topics() {
        applied += restore_topic(settings, processor, &topic, partitions, timeout)?;
    }
    Ok(applied)
}

fn restore_topic(
    settings: &ClientSettings,
    processor: &mut dyn Processor,
    topic: &str,
    partitions: &BTreeSet<i32>,
    timeout: Duration,
) -> Result<u64, String> {
    read_topic(
        settings,
        topic,
        Some(partitions),
        timeout,
        |key, payload| {
            processor
                .restore(topic, key, payload)
                .map_err(|e| e.to_string())
        },
    )
}

/// Reads `partitions` of `topic` (every partition when `None`) from the
/// beginning to the end as it is now (read-committed), calling `apply` with
/// each record's key and value. Returns the number of records read.
pub fn read_topic(
    settings: &ClientSettings,
    topic: &str,
    partitions: Option<&BTreeSet<i32>>,
    timeout: Duration,
    mut apply: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), String>,
) -> Result<u64, String> {
    let mut config = settings.base();
    config
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("group.id", "medic-restore");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("reader of {topic}: {e}"))?;
    let partitions: BTreeSet<i32> = match partitions {
        Some(p) => p.clone(),
        None => consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata of {topic}: {e}"))?
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect(),
    };
    let mut tpl = TopicPartitionList::new();
    let mut pending = BTreeSet::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| format!("assign {topic}/{p}: {e}"))?;
            pending.insert(p);
        }
    }
    if pending.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assign {topic}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut applied = 0u64;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "reading {topic} partitions {pending:?} did not finish within {timeout:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                apply(m.key().unwrap_or_default(), m.payload()).map_err(|e| {
                    format!("record {}/{}@{}: {e}", m.topic(), m.partition(), m.offset())
                })?;
                applied += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => tracing::warn!(topic, error = %e, "while reading"),
        }
    }
    Ok(applied)
}
