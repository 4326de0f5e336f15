//! Shared fixtures for Strata's criterion benchmarks (the benches live in `benches/`).
#![forbid(unsafe_code)]
