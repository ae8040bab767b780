//! Serde round trips over JSON shaped exactly like the spec's examples, and
//! the typed errors bad input must produce.

mod fuzz_regressions;
mod samples;
mod wire_errors;
