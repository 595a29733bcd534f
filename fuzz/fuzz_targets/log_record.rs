//! Raw log record values (Fluent Bit, Vector, Filebeat, JSON, plain text) through ingest.
//! Input layout and properties: `medic::fuzzing::log_record`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("log_record"),
    |data: &[u8]| medic::fuzzing::log_record(data)
);
