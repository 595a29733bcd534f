//! Webhook bodies of every CI platform through normalization, Avro and ingest.
//! Input layout and properties: `medic::fuzzing::webhook`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("webhook"),
    |data: &[u8]| medic::fuzzing::webhook(data)
);
