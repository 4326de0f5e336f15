//! Integration tests of strata-cow, laid out like the source. Tests that mount need root; they
//! skip with a printed reason otherwise, and fail under `STRATA_REQUIRE_ROOT=1`.

mod support;

mod conventions;
mod fallback;
mod guard;
mod many_layers;
mod overlay;
mod probe;
mod rootless;
mod spec;
