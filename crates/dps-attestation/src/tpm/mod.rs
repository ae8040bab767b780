//! TPM 2.0 attestation, server side (spec §3.5): parse the device's
//! endorsement key (EK) and storage root key (SRK), and seal a fresh HMAC key
//! to that TPM in the activation blob the SDKs import.
//!
//! The blob combines TPM2_MakeCredential to the EK (which releases a 16-byte
//! inner wrapper key only to the TPM holding the EK, for the SRK's Name) with
//! the duplication of a keyed-hash object under the SRK, inner-wrapped with
//! that key. The device activates the credential, imports and loads the key,
//! and signs its registration SAS token with TPM2_HMAC; the service verifies
//! the token in software with the same key.
//!
//! [`ChallengeKeys`] makes that key fresh per challenge (bound to its issue
//! second, expiring after [`CHALLENGE_LIFETIME_SECS`]) yet verifiable by any
//! replica without shared state; `freshness.rs` explains why.
//!
//! ```no_run
//! # fn main() -> Result<(), dps_attestation::AttestationError> {
//! # let (ek, srk) = ("", "");
//! use dps_attestation::tpm::TpmChallenge;
//! let challenge = TpmChallenge::create(ek, srk)?;
//! // 401 body: {"authenticationKey": challenge.authentication_key, "keyName": "registration"}
//! // then verify the device's SAS token with `challenge.key`.
//! # Ok(()) }
//! ```

mod challenge;
mod crypto;
mod freshness;
mod marshal;
mod public;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

pub use challenge::{TpmChallenge, ID_KEY_ATTRIBUTES};
pub use freshness::{
    ChallengeKeys, CHALLENGE_CLOCK_TOLERANCE_SECS, CHALLENGE_LIFETIME_SECS, MAX_ISSUE_AHEAD_SECS,
};
use public::RsaPublicArea;

use crate::AttestationError;

/// Do two base64 endorsement keys hold the same public key? Compares modulus
/// and exponent, so encodings that differ (TPM2B vs bare TPMT, attributes,
/// exponent 0 vs 65537, whitespace) still match.
pub fn same_endorsement_key(a: &str, b: &str) -> Result<bool, AttestationError> {
    let a = RsaPublicArea::from_base64(a, "endorsementKey")?;
    let b = RsaPublicArea::from_base64(b, "endorsementKey")?;
    Ok(a.modulus == b.modulus && a.exponent == b.exponent)
}

/// The registration id the SDKs derive from an endorsement key by default:
/// lower-case RFC 4648 base32, without padding, of SHA-256 over the EK bytes
/// (the decoded `TPM2B_PUBLIC`).
pub fn registration_id_from_endorsement_key(
    endorsement_key: &str,
) -> Result<String, AttestationError> {
    let bytes =
        BASE64
            .decode(endorsement_key.trim())
            .map_err(|_| AttestationError::MalformedTpmKey {
                key: "endorsementKey".to_owned(),
                reason: "not valid base64".to_owned(),
            })?;
    RsaPublicArea::parse(&bytes, "endorsementKey")?;
    Ok(data_encoding::BASE32_NOPAD
        .encode(&Sha256::digest(&bytes))
        .to_ascii_lowercase())
}
