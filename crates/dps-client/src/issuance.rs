//! Certificate issuance at registration (Azure DPS `2025-07-01-preview`,
//! stable `2026-04-01`): the device makes a key pair and a PKCS#10 request
//! whose subject CN is its registration id, sends the request as the
//! register body's `csr` (base64 of the DER, no PEM armour, as the
//! specification defines it), and leaves with the chain the service's CA
//! issued and the private key that never left it.
//!
//! Keys are made with ring through rcgen (ECDSA P-256); ring cannot generate
//! RSA keys, so RSA-2048 keys come from the `rsa` crate and are handed to
//! rcgen (and ring) as PKCS#8 for the request's signature.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde::Serialize;

use crate::ClientError;

/// The api-version sent when a certificate is requested and the client was
/// left at the default [`crate::API_VERSION`], which predates the `csr`
/// field: the stable document that carries it.
pub const ISSUANCE_API_VERSION: &str = "2026-04-01";

/// The kind of key a device asks a certificate for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256, signed with SHA-256 (the default: small and fast).
    #[default]
    EcdsaP256,
    /// RSA with a 2048-bit modulus, PKCS#1 v1.5 signatures with SHA-256.
    Rsa2048,
}

impl KeyType {
    /// The name credential policies use (`ecdsaP256`, `rsa2048`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsaP256",
            KeyType::Rsa2048 => "rsa2048",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device's new key pair and the certificate request made with it.
///
/// `Debug` never shows the private key.
#[derive(Clone)]
pub struct CertificateRequest {
    key_type: KeyType,
    private_key_pem: String,
    csr_der: Vec<u8>,
}

impl CertificateRequest {
    /// A fresh key pair of `key_type` and a request for `registration_id`
    /// (its subject is `CN=registration_id`, as the service requires).
    /// RSA key generation takes tens of milliseconds: call it off the async
    /// runtime's threads when that matters.
    pub fn generate(key_type: KeyType, registration_id: &str) -> Result<Self, ClientError> {
        let key = match key_type {
            KeyType::EcdsaP256 => {
                KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(key_error)?
            }
            KeyType::Rsa2048 => rsa_2048()?,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(key_error)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, registration_id);
        let csr = params.serialize_request(&key).map_err(key_error)?;
        Ok(CertificateRequest {
            key_type,
            private_key_pem: key.serialize_pem(),
            csr_der: csr.der().to_vec(),
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The request, DER.
    pub fn csr_der(&self) -> &[u8] {
        &self.csr_der
    }

    /// The register body's `csr`: base64 of the DER request.
    pub fn csr_base64(&self) -> String {
        BASE64.encode(&self.csr_der)
    }

    /// The request as PEM (`CERTIFICATE REQUEST`), for people and openssl.
    pub fn csr_pem(&self) -> String {
        pem("CERTIFICATE REQUEST", &self.csr_der)
    }

    /// The private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }
}

impl fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateRequest")
            .field("key_type", &self.key_type)
            .field("private_key_pem", &"<secret>")
            .finish_non_exhaustive()
    }
}

/// The operational certificate a registration returned.
///
/// `Debug` never shows the private key, and serializing it leaves the key
/// out (a registration printed as JSON carries the chain only).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCertificate {
    /// The chain as the service returned it: DER certificates, leaf first.
    #[serde(skip)]
    pub chain_der: Vec<Vec<u8>>,
    /// The chain as PEM, leaf first (what TLS clients load as the device's
    /// certificate file).
    pub chain_pem: String,
    /// The leaf's SHA-256 thumbprint, upper-case hex (as IoT Hub shows it).
    pub thumbprint: String,
    /// The key type the device asked for.
    pub key_type: KeyType,
    /// The private key of the leaf, PKCS#8 PEM.
    #[serde(skip)]
    pub private_key_pem: String,
}

impl IssuedCertificate {
    /// The certificate `request` asked for, from the answer's
    /// `issuedCertificateChain` (base64 DER, leaf first).
    pub(crate) fn from_chain(
        request: &CertificateRequest,
        chain: &[String],
    ) -> Result<Self, ClientError> {
        let chain_der = chain
            .iter()
            .map(|c| BASE64.decode(c.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                ClientError::protocol("issuedCertificateChain holds a value that is not base64")
            })?;
        let Some(leaf) = chain_der.first() else {
            return Err(ClientError::protocol(
                "issuedCertificateChain is empty: the service issued no certificate",
            ));
        };
        let thumbprint = hex_upper(&ring::digest::digest(&ring::digest::SHA256, leaf));
        let chain_pem = chain_der
            .iter()
            .map(|der| pem("CERTIFICATE", der))
            .collect();
        Ok(IssuedCertificate {
            chain_der,
            chain_pem,
            thumbprint,
            key_type: request.key_type,
            private_key_pem: request.private_key_pem.clone(),
        })
    }
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("thumbprint", &self.thumbprint)
            .field("certificates", &self.chain_der.len())
            .field("key_type", &self.key_type)
            .field("private_key_pem", &"<secret>")
            .finish()
    }
}

fn rsa_2048() -> Result<KeyPair, ClientError> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key =
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| ClientError::Config {
            reason: format!("generating an RSA-2048 key: {e}"),
        })?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| ClientError::Config {
        reason: format!("encoding the RSA key: {e}"),
    })?;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).map_err(key_error)
}

fn key_error(e: rcgen::Error) -> ClientError {
    ClientError::Config {
        reason: format!("making the certificate request: {e}"),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn hex_upper(digest: &ring::digest::Digest) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer as _;

    use super::*;

    fn parsed_subject_and_key(request: &CertificateRequest) -> (String, Vec<u8>) {
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(
            request.csr_der(),
        )
        .expect("a DER PKCS#10 request");
        csr.verify_signature().expect("self-signature verifies");
        let info = &csr.certification_request_info;
        let cn = info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        (cn, info.subject_pki.raw.to_vec())
    }

    #[test]
    fn p256_requests_name_the_registration_id_and_verify() {
        let request = CertificateRequest::generate(KeyType::EcdsaP256, "dev-1").unwrap();
        let (cn, spki) = parsed_subject_and_key(&request);
        assert_eq!(cn, "dev-1");
        let key = KeyPair::from_pem(request.private_key_pem()).unwrap();
        assert_eq!(spki, key.public_key_der());
        assert!(request
            .private_key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            BASE64.decode(request.csr_base64()).unwrap(),
            request.csr_der()
        );
        assert!(request.csr_pem().contains("BEGIN CERTIFICATE REQUEST"));
        assert!(!format!("{request:?}").contains("PRIVATE"));
    }

    #[test]
    fn rsa_2048_requests_carry_a_2048_bit_key() {
        let request = CertificateRequest::generate(KeyType::Rsa2048, "dev-rsa").unwrap();
        let (cn, _) = parsed_subject_and_key(&request);
        assert_eq!(cn, "dev-rsa");
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(
            request.csr_der(),
        )
        .unwrap();
        match csr.certification_request_info.subject_pki.parsed().unwrap() {
            x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
            other => panic!("not RSA: {other:?}"),
        }
    }

    #[test]
    fn chains_become_pem_with_the_leaf_thumbprint() {
        let request = CertificateRequest::generate(KeyType::EcdsaP256, "dev-2").unwrap();
        let key = KeyPair::from_pem(request.private_key_pem()).unwrap();
        let cert = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let chain = vec![BASE64.encode(cert.der()), BASE64.encode(cert.der())];
        let issued = IssuedCertificate::from_chain(&request, &chain).unwrap();
        assert_eq!(issued.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(issued.thumbprint.len(), 64);
        assert_eq!(issued.chain_der[0], cert.der().to_vec());
        let json = serde_json::to_value(&issued).unwrap();
        assert!(json.get("privateKeyPem").is_none(), "{json}");
        assert!(!format!("{issued:?}").contains("PRIVATE"));
        assert!(IssuedCertificate::from_chain(&request, &[]).is_err());
        assert!(IssuedCertificate::from_chain(&request, &["!!".to_owned()]).is_err());
    }
}
