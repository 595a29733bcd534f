//! Dead-lettering: an undecodable or invalid record goes to the dead-letter
//! topic with its reason, and the stage goes on (past the per-minute limit it
//! pauses).

use super::*;

impl Pipeline {
    pub(super) fn dead_letter(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        input: &InputRecord<'_>,
        kind: ErrorKind,
        error: String,
    ) -> Result<(), RunnerError> {
        while let Err(wait) = self.dlq_budget.take(Instant::now()) {
            // A burst of bad records (a producer's bad deploy) must not drain
            // a topic into the dead-letter topic: keep what is done, pause.
            tracing::error!(
                stage = %self.stage,
                limit = self.max_dlq,
                pause_secs = wait.as_secs(),
                "dead-letter limit per minute reached; pausing this stage"
            );
            self.commit(consumer)?;
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.shutdown.is_triggered() {
                    return Err(RunnerError::Restart(format!(
                        "{}: stopped while paused at the dead-letter limit",
                        self.stage
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        tracing::warn!(stage = %self.stage, topic = input.topic, partition = input.partition, offset = input.offset, kind = %kind, %error, "dead-lettering record");
        let mut error = error;
        let mut payload = input.payload.map(<[u8]>::to_vec);
        if let Some(p) = payload
            .as_mut()
            .filter(|p| p.len() > MAX_DEADLETTER_PAYLOAD)
        {
            error.push_str(&format!(
                " (payload cut to its first {MAX_DEADLETTER_PAYLOAD} of {} bytes)",
                p.len()
            ));
            p.truncate(MAX_DEADLETTER_PAYLOAD);
        }
        let letter = DeadLetter {
            stage: self.stage.to_string(),
            source_topic: input.topic.to_string(),
            source_partition: input.partition,
            source_offset: input.offset,
            source_key: input.key.map(<[u8]>::to_vec),
            payload,
            error_kind: kind,
            error,
            at: wall_clock(),
        };
        let key = input
            .key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let value = codec::encode(&letter).map_err(|e| RunnerError::Restart(e.to_string()))?;
        self.stats.deadlettered += 1;
        self.metrics.deadlettered(input.topic);
        let topic = self.deadletter_topic.clone();
        self.send(OutputRecord {
            topic,
            key,
            value: Some(value),
            id: None,
            observation: None,
        })
    }
}
