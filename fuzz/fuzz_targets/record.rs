//! Fuzzes the layer-store record decoder (frame, then postcard payload).
//!
//! Contract: any input may be refused with an error; panics, hangs and huge allocations are bugs.
//! Seeds in `corpus/record` come from our own encoder; `layer-store`'s tests replay them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer_store::record::{self, ImageRecord, Kind, LayerMeta, LayerRecord};

fuzz_target!(|data: &[u8]| {
    let _ = record::decode::<LayerRecord>(Kind::Layer, data);
    let _ = record::decode::<ImageRecord>(Kind::Image, data);
    let _ = record::decode::<LayerMeta>(Kind::LayerMeta, data);
    // The checksum keeps mutations out of the payload decoder; reach it directly too.
    let _ = record::decode_payload::<LayerRecord>(data);
    let _ = record::decode_payload::<ImageRecord>(data);
});
