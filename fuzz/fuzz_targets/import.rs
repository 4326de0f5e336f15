//! Arbitrary bytes as a layer tar, imported and materialized into a store beside an `outside`
//! directory (the contract is in `confinement.rs`, which the store's tests share to replay
//! this target's corpus). Errors are fine; panics and escapes are bugs.
#![no_main]

#[path = "../../layer-store/tests/store/confinement.rs"]
mod confinement;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| confinement::import_confined(data));
