//! Certificate authorities (with their sealed private keys) and credential
//! policies as stored, and the write rules every backend shares for them.
//!
//! Storage never sees a CA private key in clear: dps-service seals it and
//! hands over an opaque blob plus the id of the key that sealed it.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use dps_model::{CertificateAuthority, CredentialPolicy, ETag};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A tenant CA as stored: what the API shows, plus the sealed private key.
///
/// `Debug` shows the blob's length only.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCertificateAuthority {
    /// The CA as the service API shows it.
    #[serde(flatten)]
    pub authority: CertificateAuthority,
    /// The private key sealed by dps-service (nonce, ciphertext and tag;
    /// opaque here), stored as base64 inside the record.
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub sealed_private_key: Vec<u8>,
    /// Which key-encryption key sealed it, so that a rotated key is detected.
    pub key_id: String,
}

impl fmt::Debug for StoredCertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCertificateAuthority")
            .field("authority", &self.authority)
            .field(
                "sealed_private_key",
                &format_args!("<{} bytes>", self.sealed_private_key.len()),
            )
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl StoredCertificateAuthority {
    /// The CA's name (its key within the tenant; case-sensitive).
    pub fn name(&self) -> &str {
        &self.authority.name
    }
}

fn to_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

/// A new CA as stored: a fresh etag (its creation time is kept as given).
pub(crate) fn stamp_authority(ca: &mut StoredCertificateAuthority) {
    ca.authority.etag = ETag::generate();
}

/// A policy as stored by a put: a fresh etag, the creation time of the
/// record it replaces (or now), and now as the last change.
pub(crate) fn stamp_policy(
    policy: &mut CredentialPolicy,
    replaced: Option<&CredentialPolicy>,
    now: DateTime<Utc>,
) {
    policy.etag = Some(ETag::generate());
    policy.created_date_time_utc = Some(
        replaced
            .and_then(|old| old.created_date_time_utc)
            .unwrap_or(now),
    );
    policy.last_updated_date_time_utc = Some(now);
}

/// A credential policy delete refused because an enrollment (`kind` 0) or
/// an enrollment group (any other `kind`) with id `user_id` names it: the
/// SQL backends' `POLICY_USER` row.
pub(crate) fn policy_in_use(name: &str, kind: i64, user_id: String) -> crate::StoreError {
    crate::StoreError::InUse {
        entity: crate::Entity::CredentialPolicy,
        id: name.to_owned(),
        user_entity: if kind == 0 {
            crate::Entity::Enrollment
        } else {
            crate::Entity::EnrollmentGroup
        },
        user_id,
    }
}
