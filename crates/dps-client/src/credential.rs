//! How a device proves who it is.

use std::fmt;
use std::sync::Arc;

use dps_attestation::keys::derive_device_key;
use dps_attestation::sas::SymmetricKey;

use crate::tpm::TpmDevice;
use crate::ClientError;

/// A device credential.
#[derive(Clone)]
pub enum Credential {
    /// A symmetric key: an individual enrollment's key, or a key already
    /// derived from a group key.
    SymmetricKey(SymmetricKey),
    /// An X.509 certificate chain (leaf first) and its private key, both PEM,
    /// presented as the TLS client certificate.
    X509 {
        /// PEM certificates, leaf first.
        chain_pem: String,
        /// PEM private key (PKCS#8, SEC1 or PKCS#1).
        key_pem: String,
    },
    /// A TPM: the endorsement-key challenge, then tokens signed inside the TPM.
    Tpm(Arc<dyn TpmDevice>),
}

impl Credential {
    /// An individual enrollment's base64 key.
    pub fn symmetric_key(base64_key: &str) -> Result<Self, ClientError> {
        SymmetricKey::from_base64(base64_key)
            .map(Credential::SymmetricKey)
            .map_err(|e| ClientError::Config {
                reason: e.to_string(),
            })
    }

    /// A group's base64 key: the device key is derived from it and the registration id.
    pub fn group_key(base64_group_key: &str, registration_id: &str) -> Result<Self, ClientError> {
        let group =
            SymmetricKey::from_base64(base64_group_key).map_err(|e| ClientError::Config {
                reason: e.to_string(),
            })?;
        Ok(Credential::SymmetricKey(derive_device_key(
            &group,
            registration_id,
        )))
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::SymmetricKey(_) => f.write_str("Credential::SymmetricKey(<secret>)"),
            Credential::X509 { .. } => f.write_str("Credential::X509 { .. }"),
            Credential::Tpm(_) => f.write_str("Credential::Tpm(..)"),
        }
    }
}
