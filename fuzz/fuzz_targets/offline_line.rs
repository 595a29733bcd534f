//! Lines of `medic categorize --input` through the offline categorizer.
//! Input layout and properties: `medic::fuzzing::offline_line`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("offline_line"),
    |data: &[u8]| medic::fuzzing::offline_line(data)
);
