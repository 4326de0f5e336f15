//! Integration tests of the codec, one module per part.

mod reader;
mod tar_contract;

use std::fs;
use std::path::Path;

/// Replays the `tar_reader` fuzz target's corpus (seeds and any crashers saved there) through
/// its contract.
#[test]
fn tar_reader_corpus_replays_under_its_contract() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tar_reader");
    let mut replayed = 0;
    for entry in fs::read_dir(dir)? {
        tar_contract::read_checked(&fs::read(entry?.path())?);
        replayed += 1;
    }
    assert!(replayed >= 2, "the seed corpus is missing");
    Ok(())
}
