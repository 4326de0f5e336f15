//! The contract of the `record` fuzz target, shared with the test that replays its corpus: any
//! bytes go through every record decoder. Errors are fine; panics, hangs and huge allocations
//! are bugs.

use strata_layer_store::fuzzing::{self as record, Kind};
use strata_layer_store::{ImageRecord, LayerMeta, LayerRecord};

/// Decodes `data` as each kind of record, framed and bare.
pub fn decode_all(data: &[u8]) {
    let _ = record::decode::<LayerRecord>(Kind::Layer, data);
    let _ = record::decode::<ImageRecord>(Kind::Image, data);
    let _ = record::decode::<LayerMeta>(Kind::LayerMeta, data);
    // The checksum keeps mutations out of the payload decoder; reach it directly too.
    let _ = record::decode_payload::<LayerRecord>(data);
    let _ = record::decode_payload::<ImageRecord>(data);
    let _ = record::decode_payload::<LayerMeta>(data);
}
