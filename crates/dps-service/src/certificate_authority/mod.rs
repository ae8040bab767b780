//! Tenant certificate authorities: their key material (generated or
//! imported, [`material`]) and how their private keys are kept at rest
//! ([`sealing`]: AES-256-GCM under a key-encryption key kept in
//! `{data_dir}/certificate-kek.key`).
//!
//! A CA private key exists in clear only in memory, between its generation
//! or import and its sealing (and, later, while signing); it is never logged
//! (every type holding it redacts it from `Debug`) and never returned by an
//! API.

pub mod issuing;
pub mod material;
pub mod sealing;

use dps_model::{CertificateAuthority, ETag, IdScope};
use dps_storage::StoredCertificateAuthority;

pub use self::material::CaMaterial;
pub use self::sealing::KeyEncryptionKey;

/// Why a CA could not be created, imported or unsealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateAuthorityError {
    /// The key-encryption key is missing, unreadable or malformed.
    #[error("certificate key-encryption key: {reason}")]
    KeyEncryptionKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A cryptographic operation failed (randomness, sealing, opening).
    #[error("certificate authority key: {0}")]
    Crypto(&'static str),
    /// A blob was sealed with another key-encryption key than the one loaded.
    #[error("CA key sealed with key-encryption key {sealed_with}, but the loaded key is {have}")]
    WrongKey {
        /// The id stored with the blob.
        sealed_with: String,
        /// The id of the loaded key.
        have: String,
    },
    /// An imported certificate chain is unusable.
    #[error("invalid CA certificate chain: {reason}")]
    InvalidCertificate {
        /// Why.
        reason: String,
    },
    /// An imported private key is unusable or not the CA's.
    #[error("invalid CA private key: {reason}")]
    InvalidKey {
        /// Why (never quoting the key).
        reason: String,
    },
    /// Generating a CA failed.
    #[error("generating a CA failed: {reason}")]
    Generation {
        /// Why.
        reason: String,
    },
}

/// A CA ready to store: its public part and its private key sealed for
/// `(id_scope, name)` by `kek`.
pub fn seal_authority(
    kek: &KeyEncryptionKey,
    id_scope: &IdScope,
    name: &str,
    material: &CaMaterial,
) -> Result<StoredCertificateAuthority, CertificateAuthorityError> {
    let sealed_private_key = kek.seal(id_scope, name, material.private_key_pem().as_bytes())?;
    Ok(StoredCertificateAuthority {
        authority: CertificateAuthority {
            name: name.to_owned(),
            certificate_chain: material.certificate_chain().to_owned(),
            // The store generates the etag.
            etag: ETag::new(""),
            created_date_time_utc: chrono::Utc::now(),
        },
        sealed_private_key,
        key_id: kek.id().to_owned(),
    })
}

/// The key material of a stored CA, its private key unsealed.
pub fn unseal_authority(
    kek: &KeyEncryptionKey,
    id_scope: &IdScope,
    stored: &StoredCertificateAuthority,
) -> Result<CaMaterial, CertificateAuthorityError> {
    let key = kek.open(
        id_scope,
        stored.name(),
        &stored.key_id,
        &stored.sealed_private_key,
    )?;
    let key = String::from_utf8(key)
        .map_err(|_| CertificateAuthorityError::Crypto("sealed key is not PEM"))?;
    CaMaterial::import(&stored.authority.certificate_chain, &key)
}

#[cfg(test)]
mod issuing_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_authority_unseals_only_under_its_own_name() {
        let (kek, _) = KeyEncryptionKey::generate().unwrap();
        let scope = IdScope::new("0ne000000A1").unwrap();
        let material = CaMaterial::generate("fleet").unwrap();
        let stored = seal_authority(&kek, &scope, "fleet", &material).unwrap();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "sealed, not PEM");
        assert!(!format!("{stored:?}").contains("PRIVATE KEY"));
        let back = unseal_authority(&kek, &scope, &stored).unwrap();
        assert_eq!(back.private_key_pem(), material.private_key_pem());

        let mut moved = stored.clone();
        moved.authority.name = "other".to_owned();
        assert!(unseal_authority(&kek, &scope, &moved).is_err());
    }
}
