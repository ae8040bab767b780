//! A CA's certificate chain and private key: generated here (rcgen) or
//! imported (certificate chain + key, checked to belong together).

use std::fmt;

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::X509Certificate;

use super::CertificateAuthorityError;

/// How long a generated CA certificate is valid, in years.
pub const GENERATED_CA_YEARS: i32 = 10;

/// Longest PEM text accepted for an import (chain or key).
pub const MAX_IMPORT_PEM_BYTES: usize = 64 * 1024;

/// A CA's certificate chain (PEM, CA first) and private key (PKCS#8 PEM).
/// `Debug` leaves the key out.
pub struct CaMaterial {
    certificate_chain: String,
    private_key_pem: String,
}

impl fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaMaterial")
            .field("certificate_chain", &self.certificate_chain)
            .finish_non_exhaustive()
    }
}

impl CaMaterial {
    /// The certificate chain, PEM, the CA certificate first.
    pub fn certificate_chain(&self) -> &str {
        &self.certificate_chain
    }

    /// The private key, PKCS#8 PEM: only for sealing (and, later, signing).
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// A new self-signed root CA: ECDSA P-256, `CN=<common_name>`, basic
    /// constraints CA with path length 0 (it signs device certificates
    /// only), key usage keyCertSign + cRLSign, valid from yesterday for
    /// [`GENERATED_CA_YEARS`] years, random serial.
    pub fn generate(common_name: &str) -> Result<Self, CertificateAuthorityError> {
        let failed = |e: rcgen::Error| CertificateAuthorityError::Generation {
            reason: e.to_string(),
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let yesterday = Utc::now() - chrono::Duration::days(1);
        params.not_before = rcgen::date_time_ymd(
            yesterday.year(),
            yesterday.month() as u8,
            yesterday.day() as u8,
        );
        params.not_after = rcgen::date_time_ymd(
            yesterday.year() + GENERATED_CA_YEARS,
            yesterday.month() as u8,
            yesterday.day().min(28) as u8,
        );
        // Positive 63-bit serial: random, never zero, never negative in DER.
        let serial = (rand::random::<u64>() >> 1).max(1);
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        let certificate = params.self_signed(&key).map_err(failed)?;
        Ok(CaMaterial {
            certificate_chain: certificate.pem(),
            private_key_pem: key.serialize_pem(),
        })
    }

    /// An existing CA: `certificate_chain` is PEM with the CA certificate
    /// first, then its issuers in order; `private_key_pem` is the CA's
    /// PKCS#8 key. Checked: every certificate parses, the first is a CA
    /// allowed to sign certificates and not expired, each is signed by the
    /// next, and the key is the first certificate's.
    pub fn import(
        certificate_chain: &str,
        private_key_pem: &str,
    ) -> Result<Self, CertificateAuthorityError> {
        let invalid = |reason: String| CertificateAuthorityError::InvalidCertificate { reason };
        if certificate_chain.len() > MAX_IMPORT_PEM_BYTES
            || private_key_pem.len() > MAX_IMPORT_PEM_BYTES
        {
            return Err(invalid(format!(
                "certificate chain and key are limited to {MAX_IMPORT_PEM_BYTES} bytes each"
            )));
        }
        dps_model::certificate_authority::validate_certificate_chain(certificate_chain)
            .map_err(|e| invalid(e.to_string()))?;
        let blocks: Vec<Pem> = Pem::iter_from_buffer(certificate_chain.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("unreadable PEM: {e}")))?;
        let certificates: Vec<X509Certificate<'_>> = blocks
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                pem.parse_x509()
                    .map_err(|e| invalid(format!("certificate {} does not parse: {e}", i + 1)))
            })
            .collect::<Result<_, _>>()?;
        let ca = certificates
            .first()
            .ok_or_else(|| invalid("no certificate".to_owned()))?;
        if !ca.is_ca() {
            return Err(invalid(
                "the first certificate is not a CA (basic constraints CA:TRUE)".to_owned(),
            ));
        }
        if let Ok(Some(usage)) = ca.key_usage() {
            if !usage.value.key_cert_sign() {
                return Err(invalid(
                    "the CA certificate's key usage lacks keyCertSign".to_owned(),
                ));
            }
        }
        if ca.validity().not_after.timestamp() <= Utc::now().timestamp() {
            return Err(invalid("the CA certificate has expired".to_owned()));
        }
        for (i, pair) in certificates.windows(2).enumerate() {
            pair[0]
                .verify_signature(Some(pair[1].public_key()))
                .map_err(|_| {
                    invalid(format!(
                        "certificate {} is not signed by certificate {}",
                        i + 1,
                        i + 2
                    ))
                })?;
        }
        // The key's own error text is not repeated: it could quote the key.
        let key = KeyPair::from_pem(private_key_pem).map_err(|_| {
            CertificateAuthorityError::InvalidKey {
                reason: "not a PKCS#8 PEM private key of a supported type \
                         (ECDSA P-256/P-384, RSA, Ed25519)"
                    .to_owned(),
            }
        })?;
        if key.public_key_raw() != ca.public_key().subject_public_key.data.as_ref() {
            return Err(CertificateAuthorityError::InvalidKey {
                reason: "the private key does not belong to the CA certificate".to_owned(),
            });
        }
        Ok(CaMaterial {
            certificate_chain: certificate_chain.to_owned(),
            private_key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_can_sign_and_imports_back() {
        let ca = CaMaterial::generate("Contoso devices CA").unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(ca.certificate_chain().as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert!(cert.is_ca());
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert_eq!(bc.path_len_constraint, Some(0));
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign() && usage.crl_sign());
        assert!(cert.subject().to_string().contains("Contoso devices CA"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));

        let again = CaMaterial::import(ca.certificate_chain(), ca.private_key_pem()).unwrap();
        assert_eq!(again.certificate_chain(), ca.certificate_chain());
    }

    #[test]
    fn import_refuses_a_key_of_another_ca() {
        let a = CaMaterial::generate("a").unwrap();
        let b = CaMaterial::generate("b").unwrap();
        let err = CaMaterial::import(a.certificate_chain(), b.private_key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let err = CaMaterial::import(a.certificate_chain(), "garbage").unwrap_err();
        assert!(
            matches!(err, CertificateAuthorityError::InvalidKey { .. }),
            "{err}"
        );
    }

    #[test]
    fn import_refuses_a_leaf_a_broken_chain_and_a_key_in_the_chain() {
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["device".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let err = CaMaterial::import(&leaf.pem(), &key.serialize_pem()).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");

        let a = CaMaterial::generate("a").unwrap();
        let b = CaMaterial::generate("b").unwrap();
        let chain = format!("{}{}", a.certificate_chain(), b.certificate_chain());
        let err = CaMaterial::import(&chain, a.private_key_pem()).unwrap_err();
        assert!(err.to_string().contains("not signed by"), "{err}");

        let with_key = format!("{}{}", a.certificate_chain(), a.private_key_pem());
        let err = CaMaterial::import(&with_key, a.private_key_pem()).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        assert!(!err.to_string().contains("BEGIN PRIVATE KEY"), "{err}");
    }
}
