//! Attestation mechanisms as enrollments carry them (spec §4.6).

use serde::{Deserialize, Serialize};

/// `attestation.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttestationType {
    /// No mechanism (only meaningful on the wire; enrollments need one).
    None,
    /// TPM endorsement key.
    Tpm,
    /// X.509 certificates.
    X509,
    /// Symmetric keys (SAS tokens).
    SymmetricKey,
}

/// `attestation`: the type and the one matching sub-object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationMechanism {
    /// Which mechanism.
    #[serde(rename = "type")]
    pub kind: AttestationType,
    /// TPM details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmAttestation>,
    /// X.509 details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Attestation>,
    /// Symmetric-key details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyAttestation>,
}

impl AttestationMechanism {
    /// A symmetric-key mechanism with the given keys.
    pub fn symmetric_key(primary: Option<String>, secondary: Option<String>) -> Self {
        AttestationMechanism {
            kind: AttestationType::SymmetricKey,
            tpm: None,
            x509: None,
            symmetric_key: Some(SymmetricKeyAttestation {
                primary_key: primary,
                secondary_key: secondary,
            }),
        }
    }

    /// The same mechanism with secrets removed (symmetric keys), as GET and
    /// query answers return it (spec §4.8).
    pub fn without_secrets(&self) -> Self {
        let mut copy = self.clone();
        if let Some(keys) = copy.symmetric_key.as_mut() {
            keys.primary_key = None;
            keys.secondary_key = None;
        }
        copy
    }
}

/// `attestation.tpm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    /// base64 `TPM2B_PUBLIC` of the endorsement key.
    pub endorsement_key: String,
    /// base64 `TPM2B_PUBLIC` of the storage root key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

/// `attestation.symmetricKey`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    /// base64 primary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    /// base64 secondary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

/// `attestation.x509`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    /// Individual enrollments: the device's own certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<X509Certificates>,
    /// Groups: the signing (intermediate or root) certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
    /// Groups: names of verified CA certificates of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_references: Option<X509CaReferences>,
}

/// A primary and an optional secondary certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    /// Primary certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<X509CertificateWithInfo>,
    /// Secondary certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<X509CertificateWithInfo>,
}

/// A certificate as clients send it (`certificate`: PEM or base64 DER) and as
/// the service answers (`info` computed, certificate body not echoed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateWithInfo {
    /// PEM text or base64 DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Parsed details, filled by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<X509CertificateInfo>,
}

/// `caReferences`: names of verified CA certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CaReferences {
    /// Primary CA name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Secondary CA name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
}

/// `X509CertificateInfo`: what the service reports about a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    /// Subject distinguished name.
    pub subject_name: String,
    /// Upper-case hex SHA-1 of the DER.
    pub sha1_thumbprint: String,
    /// Upper-case hex SHA-256 of the DER.
    pub sha256_thumbprint: String,
    /// Issuer distinguished name.
    pub issuer_name: String,
    /// Start of validity (RFC 3339).
    pub not_before_utc: String,
    /// End of validity (RFC 3339).
    pub not_after_utc: String,
    /// Serial number, upper-case hex.
    pub serial_number: String,
    /// X.509 version (3 for v3).
    pub version: i32,
}
