//! Fuzzes the decoder of snapshot records, the `record` column of the `snapshots` table in a
//! root's database (versions 1 to 3).
//!
//! Contract (`strata_snapshotter::fuzzing::snapshot_record`): any bytes decode to an error or
//! to a record that survives encode and decode; never a panic. Seeds in
//! `corpus/snapshot_record` are the pinned samples of each version; `strata-snapshotter`'s
//! tests replay the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_snapshotter::fuzzing::snapshot_record(data));
