//! Proofs of identity for dps: how a device, an administrator or a hub client
//! shows who it is.
//!
//! * [`sas`]: shared access signature tokens — create, parse, verify (audience,
//!   expiry with clock skew, constant-time signature check over the raw `sr`).
//! * [`keys`]: symmetric keys — group-derived device keys, generation, validation.
//! * [`x509`]: certificates — decoding (PEM, base64 DER, DER) and
//!   `X509CertificateInfo`, individual-enrollment matching, group chains to
//!   cached [`x509::TrustAnchor`]s (signatures, validity, CA flags, verified
//!   CAs), CA proof of possession.
//! * [`tpm`]: TPM 2.0 — endorsement/storage-root key parsing and comparison,
//!   the SDKs' default registration id, and the activation blob that seals a
//!   fresh SAS key to one device's TPM.
//!
//! This crate is pure computation: it performs no I/O, spawns nothing and has
//! no async code. Callers look records up and hand this crate what it needs.
//!
//! ```
//! use dps_attestation::sas::{create_token, Audience, ExpiryPolicy, SasToken, SymmetricKey};
//! let key = SymmetricKey::from_bytes(vec![42u8; 32]);
//! let token = create_token("0ne00000A0A/registrations/dev1", &key, 2_000_000_000, Some("registration"));
//! let parsed = SasToken::parse(&token).unwrap();
//! parsed
//!     .verify(&Audience("0ne00000a0a/registrations/dev1"), &[&key], &ExpiryPolicy::at(1_900_000_000))
//!     .unwrap();
//! ```

mod error;
pub mod keys;
pub mod sas;
pub mod tpm;
pub mod x509;

pub use error::AttestationError;
