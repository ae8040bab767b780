//! Integration tests of dps-attestation: one binary, one module per area.

mod pki;
mod process;
mod sas;
mod tpm;
mod x509;
