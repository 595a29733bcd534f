//! Strategy (policy) YAML loaded and validated over the built-in policy, then planned with.
//! Input layout and properties: `medic::fuzzing::policy`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("policy"),
    |data: &[u8]| medic::fuzzing::policy(data)
);
