//! At-least-once: every produced record is acknowledged first, then the
//! offsets are committed synchronously; a crash between the two resends
//! outputs, which consumers drop by their `medic-id`.

use super::*;

impl Pipeline {
    /// The end of an at-least-once batch: commits the previous batch's
    /// offsets once its outputs are acknowledged, and leaves this batch's
    /// outputs in flight until the next batch ends.
    pub(super) fn pipelined_batch(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
    ) -> Result<(), RunnerError> {
        self.end_batch()?;
        if let Some((deliveries, offsets)) = self.pending.take() {
            self.await_all(deliveries)?;
            self.commit_offsets(consumer, &offsets)?;
        }
        if !self.in_flight.is_empty() || !self.offsets.is_empty() {
            self.pending = Some((
                std::mem::take(&mut self.in_flight),
                std::mem::take(&mut self.offsets),
            ));
        }
        Ok(())
    }

    /// At-least-once: commits `offsets` synchronously; a failure only means
    /// redelivery.
    pub(super) fn commit_offsets(
        &self,
        consumer: &BaseConsumer<StageContext>,
        offsets: &Offsets,
    ) -> Result<(), RunnerError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = offset_list(offsets)?;
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            // The records will be redelivered to whoever owns them now; their
            // outputs carry ids, so consumers drop the copies.
            tracing::warn!(stage = %self.stage, error = %e, "offset commit failed; records will be redelivered");
        }
        Ok(())
    }
}
