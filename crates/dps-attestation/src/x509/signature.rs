//! Certificate signature checks with ring, against an issuer public key that
//! can be parsed once and kept (trust anchors) or borrowed from a parsed chain.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid::Oid;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::name::format_name;
use crate::AttestationError;

/// The kind of an issuer's public key, as far as signature checks care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    Other,
}

/// An issuer public key: its kind and the bytes ring takes (the RSAPublicKey
/// DER for RSA, the encoded point for EC, the raw key for Ed25519).
#[derive(Clone, Copy, Debug)]
pub(crate) struct IssuerKey<'a> {
    pub(crate) kind: KeyKind,
    pub(crate) bytes: &'a [u8],
    /// The key algorithm, for error messages.
    pub(crate) algorithm: &'a Oid<'a>,
}

/// Classify a subject public key info.
pub(crate) fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        KeyKind::Rsa
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => KeyKind::EcP256,
            Some(c) if c == OID_NIST_EC_P384 => KeyKind::EcP384,
            _ => KeyKind::Other,
        }
    } else if *algorithm == OID_SIG_ED25519 {
        KeyKind::Ed25519
    } else {
        KeyKind::Other
    }
}

/// Check `cert`'s signature with `issuer`'s key. `issuer_subject` only names
/// the issuer in errors and is computed lazily.
pub(crate) fn verify_certificate_signature(
    cert: &X509Certificate<'_>,
    issuer: IssuerKey<'_>,
    issuer_subject: impl FnOnce() -> String,
) -> Result<(), AttestationError> {
    let signature_oid = &cert.signature_algorithm.algorithm;
    let algorithm: Option<&'static dyn VerificationAlgorithm> = match issuer.kind {
        KeyKind::Rsa if *signature_oid == OID_PKCS1_SHA256WITHRSA => {
            Some(&signature::RSA_PKCS1_2048_8192_SHA256)
        }
        KeyKind::Rsa if *signature_oid == OID_PKCS1_SHA384WITHRSA => {
            Some(&signature::RSA_PKCS1_2048_8192_SHA384)
        }
        KeyKind::Rsa if *signature_oid == OID_PKCS1_SHA512WITHRSA => {
            Some(&signature::RSA_PKCS1_2048_8192_SHA512)
        }
        KeyKind::EcP256 if *signature_oid == OID_SIG_ECDSA_WITH_SHA256 => {
            Some(&signature::ECDSA_P256_SHA256_ASN1)
        }
        KeyKind::EcP256 if *signature_oid == OID_SIG_ECDSA_WITH_SHA384 => {
            Some(&signature::ECDSA_P256_SHA384_ASN1)
        }
        KeyKind::EcP384 if *signature_oid == OID_SIG_ECDSA_WITH_SHA256 => {
            Some(&signature::ECDSA_P384_SHA256_ASN1)
        }
        KeyKind::EcP384 if *signature_oid == OID_SIG_ECDSA_WITH_SHA384 => {
            Some(&signature::ECDSA_P384_SHA384_ASN1)
        }
        KeyKind::Ed25519 if *signature_oid == OID_SIG_ED25519 => Some(&signature::ED25519),
        _ => None,
    };
    let Some(algorithm) = algorithm else {
        return Err(AttestationError::UnsupportedSignatureAlgorithm {
            subject: format_name(cert.subject()),
            algorithm: format!(
                "{} with a {} key",
                signature_oid.to_id_string(),
                issuer.algorithm.to_id_string()
            ),
        });
    };
    UnparsedPublicKey::new(algorithm, issuer.bytes)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .map_err(|_| AttestationError::BadCertificateSignature {
            subject: format_name(cert.subject()),
            issuer: issuer_subject(),
        })
}
