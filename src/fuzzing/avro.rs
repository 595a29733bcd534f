//! The `avro_decode` target: every record type's Avro decoding and re-encoding.

use super::*;

/// One record type: its name and a function that checks one encoded value.
pub(super) type AvroCase = (&'static str, fn(&[u8]));

macro_rules! avro_cases {
    ($($ty:ident),+ $(,)?) => {
        /// Every record type medic reads, in [`codec::SCHEMA_SOURCES`] order.
        pub(super) const AVRO_CASES: &[AvroCase] = &[$((stringify!($ty), avro_round_trip::<$ty>)),+];

        /// The JSON example of every record type, from `schemas/examples/`.
        pub(super) const AVRO_EXAMPLES: &[(&str, &str)] = &[
            $((stringify!($ty), include_str!(concat!("../../schemas/examples/", stringify!($ty), ".json")))),+
        ];

        pub(super) fn example_encoding(name: &str, json: &str) -> Option<Vec<u8>> {
            match name {
                $(stringify!($ty) => codec::encode(&serde_json::from_str::<$ty>(json).ok()?).ok(),)+
                _ => None,
            }
        }
    };
}

codec::record_types!(avro_cases);

/// Fingerprints of every schema version medic reads, per record type.
static FINGERPRINTS: LazyLock<Vec<Vec<[u8; 8]>>> = LazyLock::new(|| {
    let fingerprint = |text: &str| -> Option<[u8; 8]> {
        text.parse::<serde_avro_fast::Schema>()
            .ok()
            .map(|s| *s.rabin_fingerprint())
    };
    AVRO_CASES
        .iter()
        .map(|(name, _)| {
            let mut versions = Vec::new();
            for (_, text) in codec::SCHEMA_SOURCES
                .iter()
                .chain(codec::RELEASED_SOURCES)
                .filter(|(n, _)| n == name)
            {
                if let Some(f) = fingerprint(text) {
                    if !versions.contains(&f) {
                        versions.push(f);
                    }
                }
            }
            versions
        })
        .collect()
});

/// Decoding must not panic; a decoded value must re-encode, and the
/// re-encoding must decode and encode to the same bytes again.
fn avro_round_trip<T: AvroRecord>(bytes: &[u8]) {
    let Ok(value) = codec::decode::<T>(bytes) else {
        return;
    };
    let first = codec::encode(&value)
        .unwrap_or_else(|e| panic!("a decoded {} does not re-encode: {e}", T::SCHEMA));
    let again: T = codec::decode(&first)
        .unwrap_or_else(|e| panic!("a re-encoded {} does not decode: {e}", T::SCHEMA));
    let second = codec::encode(&again).expect("encodes");
    assert_eq!(
        first,
        second,
        "{} is not stable over a round trip",
        T::SCHEMA
    );
}

/// `avro_decode`: the first byte selects the record type (modulo 13, in
/// [`codec::SCHEMA_SOURCES`] order); the second is 255 when the rest is a
/// whole single-object encoding (header included), otherwise it selects one
/// of the type's known writer schemas (current or released) whose header is
/// put before the rest, the Avro datum.
///
/// Properties: decoding never panics; a decoded value re-encodes, and the
/// re-encoding decodes and encodes to the same bytes again.
pub fn avro_decode(data: &[u8]) {
    let mut bytes = Bytes { data };
    let index = usize::from(bytes.byte()) % AVRO_CASES.len();
    let mode = bytes.byte();
    let rest = bytes.rest();
    let (_, check) = AVRO_CASES[index];
    if mode == 255 {
        check(rest);
        return;
    }
    let versions = &FINGERPRINTS[index];
    let Some(fingerprint) = versions.get(usize::from(mode) % versions.len().max(1)) else {
        return;
    };
    let mut record = Vec::with_capacity(10 + rest.len());
    record.extend_from_slice(&[0xC3, 0x01]);
    record.extend_from_slice(fingerprint);
    record.extend_from_slice(rest);
    check(&record);
}
