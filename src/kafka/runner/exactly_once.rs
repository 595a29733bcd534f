//! Exactly-once: a batch's outputs and its input offsets go into one Kafka
//! transaction (`send_offsets_to_transaction`, `commit_transaction`); a
//! failure aborts it and restarts the runner from the last commit.

use super::*;

impl Pipeline {
    /// Commits the open transaction with the offsets in `tpl`, opening one
    /// first when none is open.
    pub(super) fn commit_transaction(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        tpl: &TopicPartitionList,
    ) -> Result<(), RunnerError> {
        if !self.txn_open {
            self.producer
                .begin_transaction()
                .map_err(|e| RunnerError::Restart(format!("begin transaction: {e}")))?;
            self.txn_open = true;
        }
        let result = (|| {
            // Commit only once every record of the transaction is
            // acknowledged: rdkafka's `commit_transaction` flushes
            // first, and with any record still in flight that flush
            // polls for a fixed 100 ms, which capped a stage at about
            // ten transactions a second.
            self.await_deliveries().map_err(|e| e.to_string())?;
            self.settle_producer()?;
            if tpl.count() > 0 {
                let group = consumer
                    .group_metadata()
                    .ok_or("the consumer has no group metadata")?;
                self.producer
                    .send_offsets_to_transaction(tpl, &group, TXN_TIMEOUT)
                    .map_err(|e| format!("sending offsets: {e}"))?;
            }
            self.producer
                .commit_transaction(TXN_TIMEOUT)
                .map_err(|e| format!("committing: {e}"))
        })();
        self.txn_open = false;
        self.in_flight.clear();
        if let Err(e) = result {
            let _ = self.producer.abort_transaction(TXN_TIMEOUT);
            return Err(RunnerError::Restart(format!(
                "{}: transaction aborted: {e}",
                self.stage
            )));
        }
        Ok(())
    }
}
