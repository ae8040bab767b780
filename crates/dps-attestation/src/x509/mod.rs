//! X.509 attestation: certificate decoding and info, individual-enrollment
//! matching, group (CA) chain verification and CA proof of possession.
//!
//! Inputs come in two shapes. Certificates stored by administrators (enrollment
//! `clientCertificates`/`signingCertificates`, uploaded CA certificates, proof
//! certificates) are text as the SDKs send them — PEM with armour or bare base64
//! DER — and every function taking such a certificate also accepts raw DER.
//! The TLS client chain is DER, leaf first, exactly as the TLS layer hands it over.
//!
//! Every check takes `now` (Unix seconds) so that callers and tests decide the
//! clock; [`crate::sas::unix_now`] reads the system clock.
//!
//! * [`decode_certificate`], [`certificate_info`], [`leaf_common_name`]: parsing.
//! * [`verify_individual`]: the leaf must be the enrollment's primary or
//!   secondary certificate, valid at `now`, with CN = registration id.
//! * [`TrustAnchor`] + [`verify_groups`] (one tenant's groups at once) or
//!   [`verify_group`]: a chain from the leaf through the presented
//!   intermediates to a verified group signing / CA certificate, built by
//!   rustls-webpki within [`ChainLimits`] (certificates presented, path depth,
//!   signature checks): signatures, validity periods, CA flags, path-length
//!   and name constraints, unknown critical extensions. Signature checks
//!   that succeeded before are remembered process-wide, within
//!   [`SIGNATURE_CACHE_ENTRIES`]: a group's intermediate is verified once,
//!   not once per device ([`signature_cache_stats`]).
//! * [`generate_verification_code`], [`verify_proof_of_possession`]: CA verification.
//!
//! Not done here: revocation (CRL/OCSP) and extended key usage — DPS does not
//! check them either as far as is known.

mod anchor;
#[cfg(test)]
mod cache_tests;
mod certificate;
mod chain;
mod der;
mod diagnose;
mod individual;
mod limits;
mod meter;
mod name;
mod proof;
mod signature;
mod signature_cache;

pub use anchor::TrustAnchor;
pub use certificate::{certificate_info, decode_certificate, leaf_common_name};
pub use chain::{verify_group, verify_groups, GroupMatch};
pub use individual::verify_individual;
pub use limits::{ChainLimits, MAX_PATH_DEPTH};
pub use proof::{generate_verification_code, verify_proof_of_possession, VERIFICATION_CODE_LEN};
pub use signature_cache::{
    clear_signature_cache, signature_cache_stats, SignatureCacheStats, SIGNATURE_CACHE_ENTRIES,
};

/// What a successful X.509 verification established about the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDevice {
    /// The leaf certificate's subject CN, as written in the certificate: the
    /// device's registration id.
    pub registration_id: String,
    /// Which certificate the leaf was accepted by: for [`verify_individual`]
    /// 0 = primary, 1 = secondary; for [`verify_group`] the index of the
    /// matching anchor (for [`verify_groups`], within its group).
    pub matched: usize,
    /// Details of the leaf, for `registrationState.x509.certificateInfo`.
    pub leaf: dps_model::X509CertificateInfo,
}
