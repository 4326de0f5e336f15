//! Fuzzes the snapshot Walk filter parser (containerd's filter syntax), which reads what any
//! gRPC client of `strata serve` sends.
//!
//! Contract: any input may be refused with a `FilterError`; panics and hangs are bugs, and a
//! filter that parses must be usable for matching. Seeds in `corpus/snapshot_filter` are the
//! filters of containerd's own conformance suite; `strata-snapshotter`'s tests replay them.
#![no_main]

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use libfuzzer_sys::fuzz_target;
use strata_snapshotter::filter::Filters;
use strata_snapshotter::{Info, Kind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let filters: Vec<&str> = text.split('\n').collect();
    if let Ok(parsed) = Filters::parse(&filters) {
        let info = Info {
            namespace: "strata".into(),
            name: "n".into(),
            parent: Some("p".into()),
            kind: Kind::Active,
            labels: BTreeMap::from([("containerd.io/gc.root".into(), "x".into())]),
            created: UNIX_EPOCH,
            updated: UNIX_EPOCH,
        };
        let _ = parsed.matches(&info);
    }
});
