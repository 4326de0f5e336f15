//! containerd's snapshotter semantics over overlay mounts and the layer store.
//!
//! This crate is a documented skeleton; issue 5 fills it.
#![forbid(unsafe_code)]
