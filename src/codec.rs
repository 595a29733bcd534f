//! Avro encoding of every inter-stage value.
//!
//! Values are written in Avro *single-object encoding* (`C3 01`, the 8-byte
//! Rabin fingerprint of the writer schema, then the datum): registry-free and
//! self-describing enough to reject a record written with an unknown schema.
//! Encoding goes straight from the serde types in [`crate::domain`] to bytes with
//! `serde_avro_fast`; no dynamic `Value` tree is built per record (see
//! `benches/codec.rs` for the difference).
//!
//! Schemas are compiled into the binary from `schemas/*.avsc` and parsed once.
//! A reader can decode data written by any schema version listed for a type:
//! fields added later take their serde default, which is why the evolution
//! rule (tested in `tests/schemas.rs`) is that every new field has a default.

use crate::domain::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_avro_fast::Schema;
use std::sync::LazyLock;

/// A record type with an Avro schema in `schemas/`.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// Schema name: the file `schemas/<NAME>.avsc`.
    const SCHEMA: &'static str;
}

macro_rules! schemas {
    ($($ty:ident),+ $(,)?) => {
        $(impl AvroRecord for $ty { const SCHEMA: &'static str = stringify!($ty); })+

        /// Every schema compiled into medic: `(name, JSON text)`.
        pub const SCHEMA_SOURCES: &[(&str, &str)] = &[
            $((stringify!($ty), include_str!(concat!("../schemas/", stringify!($ty), ".avsc")))),+
        ];

        /// The last released version of every schema (`schemas/released/`):
        /// data written with it stays readable, and `tests/schemas.rs` checks
        /// that the current version only evolved from it compatibly.
        pub const RELEASED_SOURCES: &[(&str, &str)] = &[
            $((stringify!($ty), include_str!(concat!("../schemas/released/", stringify!($ty), ".avsc")))),+
        ];
    };
}

/// Calls macro `$m` with every record type medic puts on a topic, in the
/// order of [`SCHEMA_SOURCES`]: the one list of them.
macro_rules! record_types {
    ($m:ident) => {
        $m!(
            RawLogEnvelope,
            Signal,
            CiEvent,
            CategorizedFailure,
            CorrelationWindow,
            RecoveryPlan,
            Approval,
            RecoveryState,
            RecoveryOutcome,
            AuditRecord,
            DeadLetter,
            NotificationRecord,
            StrategyStats,
        );
    };
}
#[cfg(feature = "fuzz")]
pub(crate) use record_types;

record_types!(schemas);

/// Errors from encoding or decoding a value.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not single-object encoded Avro of the expected type.
    #[error("cannot decode {schema}: {reason}")]
    Decode {
        /// Expected schema name.
        schema: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The value does not fit its schema (a bug, not bad input).
    #[error("cannot encode {schema}: {reason}")]
    Encode {
        /// Schema name.
        schema: &'static str,
        /// What was wrong.
        reason: String,
    },
}

struct Registered {
    name: &'static str,
    /// Current version first, then history.
    versions: Vec<Schema>,
}

struct Registry {
    types: Vec<Registered>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let parse = |name: &str, text: &str| -> Schema {
        // Compiled-in data; `tests/schemas.rs` parses every file, so this cannot
        // fail in a released binary.
        text.parse()
            .unwrap_or_else(|e| panic!("compiled-in schema {name} is invalid: {e}"))
    };
    let types = SCHEMA_SOURCES
        .iter()
        .map(|(name, text)| {
            let mut versions = vec![parse(name, text)];
            for (old, text) in RELEASED_SOURCES.iter().filter(|(old, _)| old == name) {
                let released = parse(old, text);
                if released.rabin_fingerprint() != versions[0].rabin_fingerprint() {
                    versions.push(released);
                }
            }
            Registered { name, versions }
        })
        .collect();
    Registry { types }
});

fn registered(name: &'static str) -> &'static Registered {
    REGISTRY
        .types
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} implements AvroRecord but has no schema"))
}

/// The current parsed schema of a record type.
pub fn schema<T: AvroRecord>() -> &'static Schema {
    &registered(T::SCHEMA).versions[0]
}

/// The current schema's Rabin fingerprint, as written in every record's header.
pub fn fingerprint<T: AvroRecord>() -> [u8; 8] {
    *schema::<T>().rabin_fingerprint()
}

/// Appends the single-object encoding of `value` to `buf`.
pub fn encode_into<T: AvroRecord>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut config = serde_avro_fast::ser::SerializerConfig::new(schema::<T>());
    serde_avro_fast::to_single_object(value, buf, &mut config).map_err(|e| CodecError::Encode {
        schema: T::SCHEMA,
        reason: e.to_string(),
    })?;
    Ok(())
}

/// The single-object encoding of `value`.
pub fn encode<T: AvroRecord>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(256);
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Decodes a single-object encoded value written with any known version of `T`'s schema.
pub fn decode<T: AvroRecord>(bytes: &[u8]) -> Result<T, CodecError> {
    let err = |reason: String| CodecError::Decode {
        schema: T::SCHEMA,
        reason,
    };
    let header = bytes.get(0..10).ok_or_else(|| {
        err(format!(
            "{} bytes is shorter than the 10-byte header",
            bytes.len()
        ))
    })?;
    if header[0..2] != [0xC3, 0x01] {
        return Err(err(format!(
            "missing the Avro single-object marker C3 01 (starts with {:02X} {:02X})",
            header[0], header[1]
        )));
    }
    let writer = registered(T::SCHEMA)
        .versions
        .iter()
        .find(|s| s.rabin_fingerprint()[..] == header[2..10])
        .ok_or_else(|| {
            err(format!(
                "unknown writer schema fingerprint {}",
                header[2..10]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ))
        })?;
    serde_avro_fast::from_single_object_slice(bytes, writer).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> Approval {
        Approval {
            recovery_id: "checkout/production#1700000000000".into(),
            decision: ApprovalDecision::Approved,
            approver: "alice".into(),
            reason: Some("looked at the dashboards".into()),
            decided_at: 1_700_000_000_500,
        }
    }

    #[test]
    fn round_trip_is_lossless_and_starts_with_the_fingerprint() {
        let bytes = encode(&approval()).expect("encodes");
        assert_eq!(&bytes[0..2], &[0xC3, 0x01]);
        assert_eq!(bytes[2..10], fingerprint::<Approval>());
        assert_eq!(decode::<Approval>(&bytes).expect("decodes"), approval());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\xC3",
            b"{\"json\": true}",
            b"\xC3\x01\0\0\0\0\0\0\0\0\x02",
        ] {
            assert!(decode::<Signal>(bad).is_err(), "{bad:?}");
        }
        let mut truncated = encode(&approval()).expect("encodes");
        truncated.truncate(truncated.len() - 3);
        assert!(decode::<Approval>(&truncated).is_err());
    }

    #[test]
    fn a_record_of_another_type_is_rejected_by_fingerprint() {
        let bytes = encode(&approval()).expect("encodes");
        let err = decode::<Signal>(&bytes).unwrap_err().to_string();
        assert!(err.contains("unknown writer schema fingerprint"), "{err}");
    }
}
