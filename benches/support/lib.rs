//! Shared measurement helpers for the benchmarks.
