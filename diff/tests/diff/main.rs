//! Integration tests of strata-diff: real trees, real tars, real overlay mounts.

mod apply;
mod breakout;
mod changes;
mod corpus;
mod interop;
mod roundtrip;
mod support;
mod swap;
mod upper;
mod write;
