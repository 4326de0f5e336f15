//! Fuzzes the layer-store tar splitter (the parser every imported layer goes through).
//!
//! Contract (in `tar_contract.rs`, which the store's tests share to replay this target's corpus):
//! any input may be refused with an error; panics, hangs and huge allocations are bugs, and an
//! accepted entry's path never contains a `..` component.
#![no_main]

#[path = "../../layer-store/tests/store/tar_contract.rs"]
mod tar_contract;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tar_contract::split_checked(data));
