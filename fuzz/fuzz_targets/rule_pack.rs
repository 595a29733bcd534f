//! Rule-pack YAML loaded over the built-in pack, then scanned with.
//! Input layout and properties: `medic::fuzzing::rule_pack`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("rule_pack"),
    |data: &[u8]| medic::fuzzing::rule_pack(data)
);
