//! Prints every recovery outcome on a cluster as it arrives. Shows that the
//! public contract needs nothing but the schema: values are Avro
//! single-object encoded and decode without a registry.
//!
//! ```sh
//! cargo run --example tail_outcomes -- localhost:9092 [topic-prefix]
//! ```

use medic::domain::RecoveryOutcome;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".into());
    let prefix = std::env::args().nth(2).unwrap_or_else(|| "medic".into());
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "medic-example-tail-outcomes")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()?;
    consumer.subscribe(&[&format!("{prefix}.recovery.outcomes")])?;
    loop {
        let message = consumer.recv().await?;
        match message
            .payload()
            .map(medic::codec::decode::<RecoveryOutcome>)
        {
            Some(Ok(o)) => println!(
                "{} {} {} {} -> {} ({})",
                o.deployment_key, o.severity, o.failure_type, o.strategy, o.outcome, o.detail
            ),
            Some(Err(e)) => eprintln!("offset {}: {e}", message.offset()),
            None => {}
        }
    }
}
