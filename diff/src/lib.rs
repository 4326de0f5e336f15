//! Parallel directory diff, OCI layer writer and safe layer applier.
//!
//! This crate is a documented skeleton; issue 3 fills it.
#![forbid(unsafe_code)]
