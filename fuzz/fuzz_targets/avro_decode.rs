//! Avro single-object decoding of every record type medic reads from Kafka.
//! Input layout and properties: `medic::fuzzing::avro_decode`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("avro_decode"),
    |data: &[u8]| medic::fuzzing::avro_decode(data)
);
