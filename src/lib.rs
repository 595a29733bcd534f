//! medic detects deployment failures in the logs and CI events flowing through
//! Kafka, works out what kind of failure each one is, decides how to recover,
//! carries the recovery out safely and tells people what happened.
//!
//! Five stages, each a Kafka consumer group, form the pipeline:
//! ingest → categorize → decide → orchestrate → notify. Every stage is a pure
//! core (no I/O, time passed in) driven by one generic runner that does all the
//! Kafka work, in exactly-once (transactions) or at-least-once (dedup by id)
//! delivery mode.
//!
//! # Layout
//!
//! * [`domain`] — the vocabulary: failure types, severities, and one record
//!   type per Avro schema in `schemas/`.
//! * [`codec`] — Avro single-object encoding of those records, straight from serde.
//! * [`topics`] — topic definitions from `topics/`, and the names under a prefix.
//! * [`config`] — loading and layering the YAML configuration; each section's
//!   type lives with the code it configures.
//! * [`stages`] — the five stage cores and the [`stages::Processor`] contract.
//! * [`ci`] — CI/CD webhook payloads to normalized events.
//! * [`executors`] — where side effects happen (dry-run recovery, webhooks).
//! * [`kafka`] — everything that touches Kafka: the runner, the embedded
//!   cluster, `topics apply`.
//! * [`app`] — wiring: which processor and executor each stage gets.
//! * [`demo`] — the end-to-end demo on the embedded cluster.

pub mod app;
pub mod bridge;
pub mod ci;
pub mod codec;
pub mod config;
pub mod demo;
pub mod domain;
pub mod executors;
#[cfg(feature = "fuzz")]
pub mod fuzzing;
pub mod kafka;
pub mod stages;
pub mod stats;
pub mod telemetry;
pub mod timefmt;
pub mod topics;
