//! Fuzzes the layer-store record decoder (frame, then postcard payload).
//!
//! Contract (in `record_contract.rs`, which the store's tests share to replay this target's
//! corpus): any input may be refused with an error; panics, hangs and huge allocations are bugs.
//! Seeds in `corpus/record` come from our own encoder.
#![no_main]

#[path = "../../layer-store/tests/store/record_contract.rs"]
mod record_contract;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| record_contract::decode_all(data));
