//! Fuzzes the layer-store tar splitter (the parser every imported layer goes through).
//!
//! Contract: any input may be refused with an error; panics, hangs and huge allocations are bugs,
//! and an accepted entry's path never contains a `..` component.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use strata_layer_store::Limits;
use strata_layer_store::object::ObjectId;
use strata_layer_store::tarstream::{self, TarError};

fuzz_target!(|data: &[u8]| {
    let result = tarstream::split(data, &Limits::default(), |file: &mut dyn Read, at| {
        let mut buf = Vec::new();
        file.take(at.size)
            .read_to_end(&mut buf)
            .map_err(|source| at.read_error(source))?;
        Ok::<_, TarError>(ObjectId::of(&buf))
    });
    if let Ok(parts) = result {
        for entry in &parts.entries {
            assert!(!entry.path.split(|&b| b == b'/').any(|c| c == b".."));
        }
    }
});
