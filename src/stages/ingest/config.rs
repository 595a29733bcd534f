//! The `ingest` section: raw log parsing.

use serde::Deserialize;

/// The largest `ingest.max_line_bytes` accepted whatever `message.max.bytes`
/// says: brokers rarely allow records of more than a few MB.
pub const MAX_LINE_BYTES_CEILING: usize = 4 * 1024 * 1024;

/// Room kept in a record for a signal's fields besides the line (keys,
/// envelope, attributes) when checking `ingest.max_line_bytes` against the
/// producer's `message.max.bytes`.
pub const SIGNAL_HEADROOM_BYTES: usize = 64 * 1024;

/// Where ingest finds service, environment and message in JSON records that
/// are not in one of the known shipper shapes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// JSON pointers (`/labels/app`) tried first for the service name.
    pub service_fields: Vec<String>,
    /// JSON pointers tried first for the environment.
    pub environment_fields: Vec<String>,
    /// JSON pointers tried first for the message text.
    pub message_fields: Vec<String>,
    /// Environment when nothing names one.
    pub default_environment: String,
    /// Longest raw record read as a log line, in bytes (default 512 KiB);
    /// longer ones are dead-lettered. Its signal carries the whole text, so
    /// keep it well under the broker's record limit (`message.max.bytes`,
    /// 1 MB by default); at most the producer's `message.max.bytes` less
    /// 64 KiB, and 4 MiB.
    pub max_line_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            service_fields: Vec::new(),
            environment_fields: Vec::new(),
            message_fields: Vec::new(),
            default_environment: "unknown".into(),
            max_line_bytes: crate::stages::ingest::shippers::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

impl IngestConfig {
    /// Checks values that parse but cannot work, for a producer whose records may
    /// be `record_limit` bytes; returns `(field, message)`.
    pub fn validate(&self, record_limit: usize) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        let line_ceiling = record_limit
            .saturating_sub(SIGNAL_HEADROOM_BYTES)
            .min(MAX_LINE_BYTES_CEILING);
        if !(1..=line_ceiling).contains(&self.max_line_bytes) {
            return fail(
                "ingest.max_line_bytes",
                format!(
                    "{} is outside 1..={line_ceiling}: a signal carries the whole line and must \
                     fit in one record of the producer's message.max.bytes ({record_limit}) with \
                     {SIGNAL_HEADROOM_BYTES} bytes to spare; raise that first (kafka.producer_properties)",
                    self.max_line_bytes
                ),
            );
        }
        Ok(())
    }
}
