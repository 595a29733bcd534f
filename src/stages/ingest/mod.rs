//! Ingest: raw log records and CI events in, [`Signal`]s out, keyed by
//! deployment key. Stateless.
//!
//! Every non-empty log line becomes a signal (categorize decides what matters);
//! a CI event becomes a signal only when the run failed, timed out or was
//! cancelled. Records that are not text, JSON nested deeper than the parser
//! follows and records too large for a log line go to the dead-letter topic.

mod ci;
pub mod config;
pub mod shippers;

pub use ci::ci_signal;

use crate::domain::{DeploymentKey, Millis, RawLogEnvelope, Signal, SignalKind};
use crate::stages::{
    decode_input, Action, InputRecord, OutputRecord, ProcessError, Processor, StageName,
};
use crate::topics::Topics;
use config::IngestConfig;

/// The ingest stage.
pub struct Ingest {
    topics: Topics,
    config: IngestConfig,
}

impl Ingest {
    /// An ingest stage reading and writing `topics`.
    pub fn new(topics: Topics, config: IngestConfig) -> Self {
        Ingest { topics, config }
    }

    /// Turns one raw log record into a signal; `None` for an empty line.
    pub fn log_signal(
        &self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Option<Signal>, ProcessError> {
        let payload = input.payload.unwrap_or_default();
        let parsed = shippers::parse(payload, input.key, &self.config).map_err(|e| match e {
            shippers::ParseError::TooLarge { .. } => ProcessError::Invalid(e.to_string()),
            _ => ProcessError::Undecodable(e.to_string()),
        })?;
        if parsed.text.trim().is_empty() {
            return Ok(None);
        }
        let key = DeploymentKey::new(
            parsed.service.as_deref().unwrap_or("unknown"),
            parsed
                .environment
                .as_deref()
                .unwrap_or(&self.config.default_environment),
        );
        Ok(Some(Signal {
            id: format!("{}/{}/{}", input.topic, input.partition, input.offset),
            deployment_key: key.to_string(),
            service: key.service().to_string(),
            environment: key.environment().to_string(),
            kind: SignalKind::Log,
            observed_at: parsed.observed_at.or(input.timestamp).unwrap_or(now),
            text: parsed.text,
            level: parsed.level,
            status_code: parsed.status_code,
            affected_users: parsed.affected_users,
            error_rate: parsed.error_rate,
            ci: None,
            origin: RawLogEnvelope {
                shipper: parsed.shipper.unwrap_or(crate::domain::Shipper::PlainText),
                topic: input.topic.to_string(),
                partition: input.partition,
                offset: input.offset,
                kafka_timestamp: input.timestamp,
                host: parsed.host,
                pod: parsed.pod,
                namespace: parsed.namespace,
                container: parsed.container,
            },
            attributes: parsed.attributes,
        }))
    }
}

impl Processor for Ingest {
    fn stage(&self) -> StageName {
        StageName::Ingest
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.topics.logs_raw.clone(), self.topics.ci_events.clone()]
    }

    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let signal = if input.topic == self.topics.ci_events {
            let event = decode_input(input)?;
            ci_signal(&event, input.topic, input.partition, input.offset)
        } else {
            self.log_signal(input, now)?
        };
        match signal {
            None => Ok(Vec::new()),
            Some(signal) => Ok(vec![Action::Emit(OutputRecord::encode(
                &self.topics.signals,
                &signal.deployment_key,
                Some(signal.id.clone()),
                &signal,
            )?)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn record<'a>(topic: &'a str, key: Option<&'a [u8]>, payload: &'a [u8]) -> InputRecord<'a> {
        InputRecord {
            topic,
            partition: 2,
            offset: 41,
            key,
            payload: Some(payload),
            timestamp: Some(5),
        }
    }

    #[test]
    fn a_log_line_becomes_one_signal_keyed_by_deployment() {
        let topics = Topics::default();
        let mut ingest = Ingest::new(topics.clone(), IngestConfig::default());
        let raw = br#"{"log":"OOMKilled\n","kubernetes":{"pod_name":"checkout-7d9f8b6c5-x2x9q","namespace_name":"prod"}}"#;
        let actions = ingest
            .process(&record(&topics.logs_raw, None, raw), 99)
            .expect("ok");
        let [Action::Emit(out)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(out.topic, "medic.signals");
        assert_eq!(out.key, "checkout/production");
        assert_eq!(out.id.as_deref(), Some("medic.logs.raw/2/41"));
        let signal: Signal = codec::decode(out.value.as_deref().expect("value")).expect("decodes");
        assert_eq!(signal.text, "OOMKilled");
        assert_eq!(signal.observed_at, 5, "falls back to the Kafka timestamp");
    }

    #[test]
    fn empty_lines_produce_nothing_and_binary_is_undecodable() {
        let topics = Topics::default();
        let mut ingest = Ingest::new(topics.clone(), IngestConfig::default());
        assert!(ingest
            .process(&record(&topics.logs_raw, None, b"   \n"), 1)
            .expect("ok")
            .is_empty());
        let err = ingest
            .process(&record(&topics.logs_raw, None, b"\xc3\x28"), 1)
            .unwrap_err();
        assert!(matches!(err, ProcessError::Undecodable(_)), "{err:?}");
        let err = ingest
            .process(&record(&topics.ci_events, None, b"{}"), 1)
            .unwrap_err();
        assert!(matches!(err, ProcessError::Undecodable(_)), "{err:?}");
    }
}
