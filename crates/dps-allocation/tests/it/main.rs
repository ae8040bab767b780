//! Integration tests of dps-allocation.
