//! Producing: outputs sent with their `medic-id` header, and waiting for
//! their acknowledgements.

use super::*;

impl Pipeline {
    pub(super) fn send(&mut self, out: OutputRecord) -> Result<(), RunnerError> {
        if self.mode == DeliveryMode::ExactlyOnce && !self.txn_open {
            self.producer
                .begin_transaction()
                .map_err(|e| RunnerError::Restart(format!("begin transaction: {e}")))?;
            self.txn_open = true;
        }
        self.metrics.produced(&out);
        let mut headers = OwnedHeaders::new();
        if let Some(id) = &out.id {
            headers = headers.insert(Header {
                key: ID_HEADER,
                value: Some(id.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&out.topic)
            .key(out.key.as_str())
            .headers(headers);
        if let Some(value) = &out.value {
            record = record.payload(value.as_slice());
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(RunnerError::Restart(format!(
                        "producing to {}: {e}",
                        out.topic
                    )))
                }
            }
        }
        self.stats.produced += 1;
        if self.mode == DeliveryMode::AtLeastOnce && self.in_flight.len() >= MAX_IN_FLIGHT {
            self.await_deliveries()?;
        }
        Ok(())
    }

    pub(super) fn await_deliveries(&mut self) -> Result<(), RunnerError> {
        let deliveries = std::mem::take(&mut self.in_flight);
        self.await_all(deliveries)
    }

    pub(super) fn await_all(&self, deliveries: Vec<DeliveryFuture>) -> Result<(), RunnerError> {
        for delivery in deliveries {
            match self.rt.block_on(delivery) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(RunnerError::Restart(format!("delivery failed: {e}")))
                }
                Err(_) => {
                    return Err(RunnerError::Restart(
                        "producer closed before delivery".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Waits, without the client's 100 ms polling steps, until librdkafka's
    /// queue is empty: a delivery future resolves a moment before its record
    /// leaves the queue.
    pub(super) fn settle_producer(&self) -> Result<(), String> {
        let deadline = Instant::now() + TXN_TIMEOUT;
        loop {
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("flushing before commit: {e}")),
            }
        }
    }

    /// Produces what the stage flushes at the end of a batch (changelog updates).
    pub(super) fn end_batch(&mut self) -> Result<(), RunnerError> {
        let flushed = self
            .processor
            .end_batch(wall_clock())
            .map_err(|e| self.fatal(e))?;
        for action in flushed {
            match action {
                Action::Emit(out) => self.send(out)?,
                Action::Execute(_) => {
                    return Err(RunnerError::Restart(format!(
                        "{}: end_batch requested an effect",
                        self.stage
                    )))
                }
            }
        }
        Ok(())
    }
}
