//! The contract of the `tar_reader` fuzz target, shared with the test that replays its corpus:
//! arbitrary bytes go through the tar reader every layer goes through (the layer store's import
//! keeps the raw blocks, the applier reads only entries). Errors are fine; panics, hangs and
//! huge allocations are bugs. An accepted entry's path is clean; both ways of reading agree on
//! every entry; and for a tar read to its end, the raw blocks and the contents put back
//! together are the input, byte for byte (what export relies on).

use std::io::Read;

use strata_codec::Limits;
use strata_codec::tar::{EntryType, Header, TarError, TarReader};

/// Reads `data` as a layer tar both ways and checks the contract.
pub fn read_checked(data: &[u8]) {
    let kept = read(data, true);
    let plain = read(data, false);
    assert_eq!(
        kept.entries, plain.entries,
        "keeping raw blocks changed the entries"
    );
    assert_eq!(
        kept.error.is_some(),
        plain.error.is_some(),
        "keeping raw blocks changed the outcome: {:?} vs {:?}",
        kept.error,
        plain.error
    );
    for entry in &kept.entries {
        let path = &entry.path;
        if path.is_empty() {
            assert_eq!(entry.kind, EntryType::Dir, "the root is a directory");
            continue;
        }
        assert!(
            !path.starts_with(b"/")
                && !path.contains(&0)
                && !path
                    .split(|&b| b == b'/')
                    .any(|c| c == b".." || c == b"." || c.is_empty()),
            "accepted entry {:?} is not clean",
            String::from_utf8_lossy(path)
        );
    }
    if kept.error.is_none() {
        assert!(
            kept.rebuilt == data,
            "raw blocks and contents are not the input"
        );
    }
}

/// What one reading gave.
struct Reading {
    entries: Vec<Header>,
    rebuilt: Vec<u8>,
    error: Option<TarError>,
}

fn read(data: &[u8], keep_raw: bool) -> Reading {
    let mut reader = TarReader::new(data, Limits::default());
    if keep_raw {
        reader = reader.keep_raw();
    }
    let mut out = Reading {
        entries: Vec::new(),
        rebuilt: Vec::new(),
        error: None,
    };
    loop {
        match reader.next_entry() {
            Ok(Some(entry)) => {
                out.rebuilt.extend(reader.take_raw());
                let (size, path) = (entry.size, entry.path.clone());
                out.entries.push(entry);
                // Read plainly, every other file is left unread: the reader skips it.
                if keep_raw || out.entries.len() % 2 == 1 {
                    let mut contents = Vec::new();
                    if let Err(e) = (&mut reader).take(size).read_to_end(&mut contents) {
                        out.error = Some(TarError::EntryData {
                            path: String::from_utf8_lossy(&path).into_owned(),
                            offset: reader.offset(),
                            source: e,
                        });
                        return out;
                    }
                    assert!(contents.len() as u64 <= size);
                    out.rebuilt.extend(contents);
                }
            }
            Ok(None) => {
                out.rebuilt.extend(reader.take_raw());
                return out;
            }
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
}
