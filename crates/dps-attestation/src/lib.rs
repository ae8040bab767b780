//! Proofs of identity for dps: how a device, an administrator or a hub client
//! shows who it is.
//!
//! * [`sas`]: shared access signature tokens — create, parse, verify (audience,
//!   expiry with clock skew, constant-time signature check over the raw `sr`).
//! * [`keys`]: symmetric keys — group-derived device keys, generation, validation.
//! * [`x509`]: certificates — decoding (PEM, base64 DER, DER) and
//!   `X509CertificateInfo`, individual-enrollment matching, group chains to
//!   cached [`x509::TrustAnchor`]s (path building by rustls-webpki: signatures,
//!   validity, CA flags, path-length and name constraints, critical
//!   extensions; dps's rules for verified CAs; bounded by
//!   [`x509::ChainLimits`]), CA proof of possession.
//! * [`tpm`]: TPM 2.0 — endorsement/storage-root key parsing and comparison,
//!   the SDKs' default registration id, and the activation blob that seals a
//!   fresh SAS key to one device's TPM.
//!
//! This crate is pure computation: it performs no I/O, spawns nothing and has
//! no async code, and it keeps no state. Callers look records up (enrollments,
//! CA certificates), take the clock (`now` parameters, [`sas::unix_now`]) and
//! hand this crate what it needs; keys ([`sas::SymmetricKey`]) and anchors
//! ([`x509::TrustAnchor`]) are plain values the caller may cache.
//!
//! A device's SAS token, for an individual enrollment and for a group:
//!
//! ```
//! use dps_attestation::keys::derive_device_key;
//! use dps_attestation::sas::{create_token, Audience, ExpiryPolicy, SasToken, SymmetricKey};
//! let key = SymmetricKey::from_bytes(vec![42u8; 32]);
//! let token = create_token("0ne00000A0A/registrations/dev1", &key, 2_000_000_000, Some("registration"));
//! let parsed = SasToken::parse(&token).unwrap();
//! parsed
//!     .verify(&Audience("0ne00000a0a/registrations/dev1"), &[&key], &ExpiryPolicy::at(1_999_999_000))
//!     .unwrap();
//!
//! let group_key = SymmetricKey::from_bytes(vec![7u8; 64]);
//! let device_key = derive_device_key(&group_key, "dev2");
//! let token = create_token("0ne00000A0A/registrations/dev2", &device_key, 2_000_000_000, None);
//! let candidates = [derive_device_key(&group_key, "dev2")];
//! SasToken::parse(&token)
//!     .unwrap()
//!     .verify(&Audience("0ne00000A0A/registrations/dev2"), &[&candidates[0]], &ExpiryPolicy::at(1_999_999_000))
//!     .unwrap();
//! ```
//!
//! An X.509 device of a group: `verify_group(&tls_chain, &[&anchor], Some(id), now)`
//! with `anchor = TrustAnchor::new(ca_pem, "my-ca", is_verified)`. A TPM
//! device: `TpmChallenge::create(ek, srk)`, answer with `authentication_key`,
//! then verify the next token with `key`.
//!
//! Deliberately not here: looking enrollments up, choosing between individual
//! and group enrollments, certificate revocation, and anything on the wire.

#![deny(missing_docs)]

mod error;
pub mod keys;
pub mod sas;
pub mod tpm;
pub mod x509;

pub use error::AttestationError;
