//! Approval request bodies of the bridge's `POST /approvals/{recovery_id}`.
//! Input layout and properties: `medic::fuzzing::approval_body`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: medic::fuzzing::seed_from_env("approval_body"),
    |data: &[u8]| medic::fuzzing::approval_body(data)
);
