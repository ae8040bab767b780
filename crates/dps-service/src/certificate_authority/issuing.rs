//! Issuing device certificates from a CSR (issue #17) and the CA's CRL.
//!
//! A CSR is checked here, before anything is written: it must parse as a
//! DER PKCS#10 request, its self-signature must verify under the key it
//! carries, its subject CN (when it has one) must be the registration id,
//! and its key must be one of the policy's accepted types. The leaf dps
//! issues takes only the CSR's public key: its subject is `CN=<device id>`,
//! it is not a CA, its key usage is digitalSignature (plus keyEncipherment
//! for RSA keys) and its extended key usage clientAuth — whatever else the
//! CSR asked for is ignored, as a CA issuing under a fixed profile does.

use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, IssuedCertificate, IssuedCertificateStatus, KeyType, RegistrationId,
};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PublicKeyData, RevokedCertParams, SerialNumber, SignatureAlgorithm,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

use super::material::{distinguished_name, subject_key_identifier};
use super::{CaMaterial, CertificateAuthorityError};

/// rcgen's time type from Unix seconds (non-negative). rcgen does not
/// re-export the `time` crate, so the value is built from the epoch it can
/// name, and a macro lets the type stay unnamed.
macro_rules! at {
    ($unix_seconds:expr $(,)?) => {
        rcgen::date_time_ymd(1970, 1, 1)
            + std::time::Duration::from_secs(u64::try_from($unix_seconds).unwrap_or(0))
    };
}

/// How far back a leaf's validity starts, for devices whose clock is a
/// little behind.
const BACKDATE_SECONDS: i64 = 5 * 60;

/// How long a CRL is announced as current (its `nextUpdate`); dps builds a
/// fresh one on every request, so this only bounds how long a copy is trusted.
pub const CRL_VALIDITY_HOURS: i64 = 24;

/// Why a CSR was refused (a 400 for the device) or a certificate could not
/// be made (a fault of the CA).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuanceError {
    /// The CSR does not parse or its signature does not verify.
    #[error("the csr is not a valid PKCS#10 request: {0}")]
    BadCsr(String),
    /// The CSR's subject names another device.
    #[error("the csr's subject CN {found:?} is not the registration id {expected:?}")]
    SubjectMismatch {
        /// The CN in the CSR.
        found: String,
        /// The registration id.
        expected: String,
    },
    /// The CSR's key is of a type the credential policy does not accept.
    #[error("the csr's key ({found}) is not accepted by credential policy {policy:?} (accepted: {accepted})")]
    KeyRefused {
        /// The key found.
        found: String,
        /// The policy.
        policy: String,
        /// What it accepts, comma separated.
        accepted: String,
    },
    /// The CA could not be used.
    #[error(transparent)]
    Authority(#[from] CertificateAuthorityError),
}

impl IssuanceError {
    /// Whether the device's request is at fault (a 400), not the CA.
    pub fn is_request_error(&self) -> bool {
        !matches!(self, IssuanceError::Authority(_))
    }
}

/// The public key of a verified CSR, in the form rcgen writes into a
/// certificate.
#[derive(Clone, Debug)]
pub struct CsrKey {
    key_type: KeyType,
    bits: Vec<u8>,
}

impl CsrKey {
    /// Its type and size.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
}

impl PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    // rcgen writes the SubjectPublicKeyInfo's algorithm identifier from
    // this: id-ecPublicKey with the curve, or rsaEncryption with NULL.
    fn algorithm(&self) -> &SignatureAlgorithm {
        match self.key_type {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// Parse and verify a DER CSR for `registration_id` under `policy`: its
/// signature, its subject CN (if any) and its key type.
pub fn verify_csr(
    der: &[u8],
    registration_id: &RegistrationId,
    policy: &CredentialPolicy,
) -> Result<CsrKey, IssuanceError> {
    let bad = |reason: &str| IssuanceError::BadCsr(reason.to_owned());
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|_| bad("it does not parse as DER"))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the request"));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let found = key_type(spki)?;
    if let Some(cn) = info.subject.iter_common_name().next() {
        let cn = cn.as_str().map_err(|_| bad("its subject CN is not text"))?;
        if !cn.eq_ignore_ascii_case(registration_id.as_str()) {
            return Err(IssuanceError::SubjectMismatch {
                found: cn.chars().take(128).collect(),
                expected: registration_id.as_str().to_owned(),
            });
        }
    }
    csr.verify_signature()
        .map_err(|_| bad("its signature does not verify under its own public key"))?;
    if !policy.accepts(found) {
        return Err(IssuanceError::KeyRefused {
            found: found.as_str().to_owned(),
            policy: policy.name.clone(),
            accepted: policy
                .accepted_key_types
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(CsrKey {
        key_type: found,
        bits: spki.subject_public_key.data.to_vec(),
    })
}

/// The key type and size of a SubjectPublicKeyInfo; other kinds are refused.
fn key_type(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyType, IssuanceError> {
    let unsupported = |what: String| {
        IssuanceError::BadCsr(format!(
            "its key ({what}) is none of ECDSA P-256/P-384 or RSA 2048/3072/4096"
        ))
    };
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| unsupported("EC without a named curve".to_owned()))?;
        return if curve == OID_EC_P256 {
            Ok(KeyType::EcdsaP256)
        } else if curve == OID_NIST_EC_P384 {
            Ok(KeyType::EcdsaP384)
        } else {
            Err(unsupported(format!("EC curve {curve}")))
        };
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(unsupported("malformed RSA".to_owned()));
        };
        return match modulus_bits(rsa.modulus) {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            bits => Err(unsupported(format!("RSA {bits}"))),
        };
    }
    Err(unsupported(format!("algorithm {algorithm}")))
}

/// The size in bits of a big-endian modulus (leading zero bytes ignored).
fn modulus_bits(modulus: &[u8]) -> usize {
    let digits: &[u8] = match modulus.iter().position(|&b| b != 0) {
        Some(first) => &modulus[first..],
        None => return 0,
    };
    (digits.len() - 1) * 8 + (8 - digits[0].leading_zeros() as usize)
}

/// A CA ready to sign: rcgen's view of it (its name and key identifier,
/// rebuilt from the CA certificate so issued certificates point at it), its
/// key, and its chain in DER for the answer.
pub struct Issuer {
    name: String,
    certificate: Certificate,
    key: KeyPair,
    chain: Vec<Vec<u8>>,
    not_after: i64,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A leaf just signed.
#[derive(Clone, Debug)]
pub struct IssuedLeaf {
    /// The chain for the answer, base64 DER, leaf first.
    pub chain: Vec<String>,
    /// The record to store with the registration.
    pub record: IssuedCertificate,
}

impl Issuer {
    /// The issuer of CA `name` (its key already unsealed).
    pub fn new(name: &str, material: &CaMaterial) -> Result<Self, CertificateAuthorityError> {
        let invalid = |reason: &str| CertificateAuthorityError::InvalidCertificate {
            reason: reason.to_owned(),
        };
        let failed = |e: rcgen::Error| CertificateAuthorityError::Generation {
            reason: e.to_string(),
        };
        let chain: Vec<Vec<u8>> = Pem::iter_from_buffer(material.certificate_chain().as_bytes())
            .map(|pem| pem.map(|p| p.contents))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid("unreadable CA chain"))?;
        let first = chain.first().ok_or_else(|| invalid("empty CA chain"))?;
        let (_, ca) = x509_parser::parse_x509_certificate(first)
            .map_err(|_| invalid("unreadable CA certificate"))?;
        let key = KeyPair::from_pem(material.private_key_pem()).map_err(failed)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.distinguished_name = distinguished_name(ca.subject())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if let Some(id) = subject_key_identifier(&ca) {
            params.key_identifier_method = KeyIdMethod::PreSpecified(id);
        }
        let not_after = ca.validity().not_after.timestamp();
        let certificate = params.self_signed(&key).map_err(failed)?;
        Ok(Issuer {
            name: name.to_owned(),
            certificate,
            key,
            chain,
            not_after,
        })
    }

    /// Sign a leaf for `device_id` with `key`, valid from a few minutes ago
    /// for the policy's days (never past the CA's own expiry), with a
    /// random positive 128-bit serial.
    pub fn issue(
        &self,
        key: &CsrKey,
        registration_id: &RegistrationId,
        device_id: &str,
        policy: &CredentialPolicy,
        now: DateTime<Utc>,
    ) -> Result<IssuedLeaf, CertificateAuthorityError> {
        let failed = |e: rcgen::Error| CertificateAuthorityError::Generation {
            reason: e.to_string(),
        };
        let not_before = now.timestamp() - BACKDATE_SECONDS;
        let not_after = (now.timestamp() + i64::from(policy.validity_period_in_days) * 86_400)
            .min(self.not_after);
        let mut serial = rand::random::<[u8; 16]>();
        // Positive and exactly 16 bytes: the hex in the record is the
        // certificate's serial as any tool prints it.
        serial[0] = (serial[0] & 0x7f).max(1);
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, device_id);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = match key.key_type {
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = at!(not_before);
        params.not_after = at!(not_after);
        let leaf = params
            .signed_by(key, &self.certificate, &self.key)
            .map_err(failed)?;
        let der = leaf.der().to_vec();
        let chain = std::iter::once(der.as_slice())
            .chain(self.chain.iter().map(Vec::as_slice))
            .map(|c| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, c))
            .collect();
        let timestamp = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or(now);
        Ok(IssuedLeaf {
            chain,
            record: IssuedCertificate {
                serial_number: upper_hex(&serial),
                registration_id: registration_id.clone(),
                device_id: device_id.to_owned(),
                certificate_authority_name: self.name.clone(),
                credential_policy_name: policy.name.clone(),
                sha256_thumbprint: upper_hex(
                    ring::digest::digest(&ring::digest::SHA256, &der).as_ref(),
                ),
                sha1_thumbprint: upper_hex(
                    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref(),
                ),
                not_before: timestamp(not_before),
                not_after: timestamp(not_after),
                issued_date_time_utc: now,
                status: IssuedCertificateStatus::Active,
                superseded_date_time_utc: None,
                revoked_date_time_utc: None,
                certificate: base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    &der,
                ),
            },
        })
    }

    /// The CA's CRL (DER): `revoked` (their serials and revocation times),
    /// this update now, next update [`CRL_VALIDITY_HOURS`] later, CRL
    /// number the current time in seconds (increasing between builds).
    pub fn crl(
        &self,
        revoked: &[IssuedCertificate],
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, CertificateAuthorityError> {
        let failed = |e: rcgen::Error| CertificateAuthorityError::Generation {
            reason: e.to_string(),
        };
        let revoked_certs = revoked
            .iter()
            .filter_map(|cert| {
                let serial = from_hex(&cert.serial_number)?;
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial),
                    revocation_time: at!(cert.revoked_date_time_utc.unwrap_or(now).timestamp(),),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect();
        let number = now.timestamp().max(1).to_be_bytes();
        let params = CertificateRevocationListParams {
            this_update: at!(now.timestamp()),
            next_update: at!(now.timestamp() + CRL_VALIDITY_HOURS * 3600),
            crl_number: SerialNumber::from_slice(&number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.certificate.params().key_identifier_method.clone(),
        };
        let crl = params
            .signed_by(&self.certificate, &self.key)
            .map_err(failed)?;
        Ok(crl.der().to_vec())
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
