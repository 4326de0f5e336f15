//! A deduplicating, content-addressed store of image layers.
//!
//! This crate is a documented skeleton; issue 4 fills it.
#![forbid(unsafe_code)]
