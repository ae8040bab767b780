//! Integration tests of dps-attestation: one binary, one module per area.

mod sas;
