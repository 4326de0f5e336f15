//! Fuzzes the codec's tar reader, the one parser every layer goes through (import keeps its raw
//! blocks, apply reads its entries).
//!
//! Contract (in `codec/tests/codec/tar_contract.rs`, which the codec's tests share to replay
//! this target's corpus): any input may be refused with an error; panics, hangs and huge
//! allocations are bugs; an accepted entry's path is clean; reading with and without the raw
//! blocks gives the same entries; and a tar read to its end is rebuilt byte for byte from its
//! raw blocks and contents.
#![no_main]

#[path = "../../codec/tests/codec/tar_contract.rs"]
mod tar_contract;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tar_contract::read_checked(data));
