//! Webhook authenticity checks of every platform's scheme.
//! Input layout and properties: `medic::fuzzing::verify_signature`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("verify_signature"),
    |data: &[u8]| medic::fuzzing::verify_signature(data)
);
