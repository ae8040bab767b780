//! Symmetric keys of enrollments: group-derived device keys, generation and validation.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::RngCore as _;

use crate::sas::SymmetricKey;
use crate::AttestationError;

/// Length of keys the service generates, in bytes (as the cloud service does).
pub const GENERATED_KEY_LEN: usize = 64;
/// Shortest key an administrator may supply, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key an administrator may supply, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// The per-device key of a symmetric-key enrollment group:
/// base64(HMAC-SHA256(group key, registration id)), over the registration id
/// exactly as the device presents it.
pub fn derive_device_key(group_key: &SymmetricKey, registration_id: &str) -> SymmetricKey {
    SymmetricKey::from_bytes(group_key.hmac_sha256(registration_id.as_bytes()).to_vec())
}

/// A fresh random key of [`GENERATED_KEY_LEN`] bytes, base64-encoded.
pub fn generate_key() -> String {
    let mut bytes = [0u8; GENERATED_KEY_LEN];
    rand::thread_rng().fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// Accept a supplied key only if it is base64 of 16..=64 bytes.
pub fn validate_key(encoded: &str) -> Result<SymmetricKey, AttestationError> {
    let key = SymmetricKey::from_base64(encoded)?;
    let len = key.as_bytes().len();
    if (MIN_KEY_LEN..=MAX_KEY_LEN).contains(&len) {
        Ok(key)
    } else {
        Err(AttestationError::InvalidKey {
            reason: format!("decodes to {len} bytes; {MIN_KEY_LEN} to {MAX_KEY_LEN} are allowed"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_derived_key_vector() {
        let group = SymmetricKey::from_base64(
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
        )
        .unwrap();
        assert_eq!(
            derive_device_key(&group, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").to_base64(),
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
        );
    }

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert_eq!(validate_key(&a).unwrap().as_bytes().len(), 64);
    }

    #[test]
    fn key_length_limits() {
        assert!(validate_key(&BASE64.encode([0u8; 15])).is_err());
        assert!(validate_key(&BASE64.encode([0u8; 16])).is_ok());
        assert!(validate_key(&BASE64.encode([0u8; 65])).is_err());
        assert!(validate_key("not base64!").is_err());
    }
}
