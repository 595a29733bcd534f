//! Committing a batch: what ends a poll batch, and making every output and
//! processed offset durable in the configured delivery mode
//! (`exactly_once.rs`, `at_least_once.rs`).

use super::*;

impl Pipeline {
    /// The end of a poll batch. Exactly-once, and whenever a commit must be
    /// durable at once, this is [`Pipeline::commit`]. At-least-once, it
    /// commits the previous batch's offsets once that batch's outputs are
    /// acknowledged (they have had this batch's time), and leaves this
    /// batch's outputs in flight until the next one ends.
    pub(super) fn commit_batch(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
    ) -> Result<(), RunnerError> {
        if self.mode == DeliveryMode::ExactlyOnce || self.poisoned {
            return self.commit(consumer);
        }
        self.pipelined_batch(consumer)
    }

    /// Flushes changelog updates, then makes every output and processed
    /// offset durable, the previous batch's included.
    pub(super) fn commit(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
    ) -> Result<(), RunnerError> {
        if self.poisoned {
            return Ok(());
        }
        if let Some((mut deliveries, offsets)) = self.pending.take() {
            // The earlier batch's records first; this batch's offsets are
            // further on, so they win where both have a partition.
            deliveries.append(&mut self.in_flight);
            self.in_flight = deliveries;
            for (partition, next) in offsets {
                self.offsets.entry(partition).or_insert(next);
            }
        }
        self.end_batch()?;
        if self.offsets.is_empty() && !self.txn_open && self.in_flight.is_empty() {
            return Ok(());
        }
        let tpl = offset_list(&self.offsets)?;
        match self.mode {
            DeliveryMode::ExactlyOnce => self.commit_transaction(consumer, &tpl)?,
            DeliveryMode::AtLeastOnce => {
                self.await_deliveries()?;
                self.commit_offsets(consumer, &self.offsets)?;
            }
        }
        self.offsets.clear();
        Ok(())
    }
}

/// The consumer offsets to commit: the next offset to read per partition.
pub(super) fn offset_list(offsets: &Offsets) -> Result<TopicPartitionList, RunnerError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
            .map_err(|e| RunnerError::Restart(format!("offset list: {e}")))?;
    }
    Ok(tpl)
}
