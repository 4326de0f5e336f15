//! The contract of the `layer_tar` fuzz target, shared with the test that replays its corpus:
//! arbitrary bytes go through the tar splitter every imported layer goes through. Errors are
//! fine; panics, hangs and huge allocations are bugs, and an accepted entry's path never has a
//! `..` component.

use std::io::Read;

use strata_layer_store::Limits;
use strata_layer_store::ObjectId;
use strata_layer_store::tarstream::{self, TarError};

/// Splits `data` as a layer tar, hashing each file, and checks the accepted entries' paths.
pub fn split_checked(data: &[u8]) {
    let result = tarstream::split(data, &Limits::default(), |file: &mut dyn Read, at| {
        let mut buf = Vec::new();
        file.take(at.size)
            .read_to_end(&mut buf)
            .map_err(|source| at.read_error(source))?;
        Ok::<_, TarError>(ObjectId::of(&buf))
    });
    if let Ok(parts) = result {
        for entry in &parts.entries {
            assert!(
                !entry.path.split(|&b| b == b'/').any(|c| c == b".."),
                "accepted entry {:?} climbs out",
                String::from_utf8_lossy(&entry.path)
            );
        }
    }
}
