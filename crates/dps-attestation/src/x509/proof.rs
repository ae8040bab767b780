//! Proof of possession for uploaded CA certificates: the administrator signs
//! a certificate whose CN is a code the service issued, with the CA's key.

use rand::RngCore as _;

use super::certificate::{check_validity, parse_der, subject_common_name, to_der};
use super::name::format_name;
use super::signature::{key_kind, verify_certificate_signature, IssuerKey};
use crate::AttestationError;

/// Length of the codes [`generate_verification_code`] makes, in characters.
pub const VERIFICATION_CODE_LEN: usize = 48;

/// A fresh verification code: 24 random bytes as 48 upper-case hex characters.
pub fn generate_verification_code() -> String {
    let mut bytes = [0u8; VERIFICATION_CODE_LEN / 2];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode_upper(bytes)
}

/// Check a proof-of-possession certificate: its subject CN must be
/// `expected_code` (ignoring ASCII case), it must be signed by the CA
/// certificate's key, and it must be valid at `now`. Both certificates may be
/// PEM, base64 DER or DER.
pub fn verify_proof_of_possession(
    ca_certificate: &[u8],
    proof_certificate: &[u8],
    expected_code: &str,
    now: u64,
) -> Result<(), AttestationError> {
    let ca_der = to_der(ca_certificate, "CA certificate")?;
    let ca = parse_der(&ca_der, "CA certificate")?;
    let proof_der = to_der(proof_certificate, "proof-of-possession certificate")?;
    let proof = parse_der(&proof_der, "proof-of-possession certificate")?;

    let common_name = subject_common_name(&proof)?;
    if expected_code.is_empty() || !common_name.eq_ignore_ascii_case(expected_code) {
        return Err(AttestationError::VerificationCodeMismatch {
            expected: expected_code.to_owned(),
            actual: common_name,
        });
    }
    let spki = ca.public_key();
    let key = IssuerKey {
        kind: key_kind(spki),
        bytes: &spki.subject_public_key.data,
        algorithm: &spki.algorithm.algorithm,
    };
    verify_certificate_signature(&proof, key, || format_name(ca.subject()))?;
    check_validity(&proof, now)
}
