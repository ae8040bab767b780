//! Integration tests of dps-allocation: one binary, one module per concern.

mod allocator;
mod battery;
mod candidates;
mod egress;
mod geo;
mod hashing;
mod reprovision;
mod support;
mod webhook;
