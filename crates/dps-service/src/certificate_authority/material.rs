//! A CA's certificate chain and private key: generated here (rcgen) or
//! imported (certificate chain + key, checked to belong together).

use std::fmt;

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyIdMethod,
    KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
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
        let params = ca_params(common_name)?;
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

impl CaMaterial {
    /// A new intermediate CA (ECDSA P-256, `CN=<common_name>`, path length
    /// 0, keyCertSign + cRLSign) signed by the operator's CA: `root_chain`
    /// (PEM, the signing CA first) and `root_private_key` (PKCS#8 PEM) are
    /// checked like an import, used for this one signature and not kept.
    /// The chain is the new intermediate followed by `root_chain`. The
    /// intermediate's issuer name is checked to equal the root's subject
    /// byte for byte, and its signature to verify under the root's key.
    pub fn generate_intermediate(
        common_name: &str,
        root_chain: &str,
        root_private_key: &str,
    ) -> Result<Self, CertificateAuthorityError> {
        let root = CaMaterial::import(root_chain, root_private_key)?;
        let failed = |e: rcgen::Error| CertificateAuthorityError::Generation {
            reason: e.to_string(),
        };
        let invalid = |reason: &str| CertificateAuthorityError::InvalidCertificate {
            reason: reason.to_owned(),
        };
        let (_, root_pem) = x509_parser::pem::parse_x509_pem(root.certificate_chain.as_bytes())
            .map_err(|_| invalid("unreadable root certificate"))?;
        let root_cert = root_pem
            .parse_x509()
            .map_err(|_| invalid("unreadable root certificate"))?;
        let root_key = KeyPair::from_pem(root.private_key_pem()).map_err(failed)?;

        // rcgen signs with an issuer it built itself: rebuild the root's
        // name and key identifier so the new certificate points at it.
        let mut issuer = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        issuer.distinguished_name = distinguished_name(root_cert.subject())?;
        issuer.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root_key_id = subject_key_identifier(&root_cert);
        if let Some(id) = &root_key_id {
            issuer.key_identifier_method = KeyIdMethod::PreSpecified(id.clone());
        }
        let issuer = issuer.self_signed(&root_key).map_err(failed)?;

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = ca_params(common_name)?;
        params.use_authority_key_identifier_extension = root_key_id.is_some();
        let root_not_after = root_cert.validity().not_after.timestamp();
        if root_not_after < params.not_after.unix_timestamp() {
            // Ends no later than the root (a day early: rcgen takes dates).
            let end = chrono::DateTime::from_timestamp(root_not_after, 0)
                .ok_or_else(|| invalid("the root's expiry is out of range"))?
                - chrono::Duration::days(1);
            params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        }
        let certificate = params.signed_by(&key, &issuer, &root_key).map_err(failed)?;

        let (_, pem) = x509_parser::pem::parse_x509_pem(certificate.pem().as_bytes())
            .map_err(|_| invalid("the new intermediate does not parse"))?;
        let issued = pem
            .parse_x509()
            .map_err(|_| invalid("the new intermediate does not parse"))?;
        if issued.issuer().as_raw() != root_cert.subject().as_raw() {
            return Err(invalid(
                "the root's subject name cannot be reproduced exactly; \
                 import an intermediate signed by it instead",
            ));
        }
        issued
            .verify_signature(Some(root_cert.public_key()))
            .map_err(|_| invalid("the new intermediate does not verify under the root"))?;
        Ok(CaMaterial {
            certificate_chain: format!("{}{}", certificate.pem(), root.certificate_chain),
            private_key_pem: key.serialize_pem(),
        })
    }
}

/// The parameters of a CA dps creates: `CN=<common_name>`, path length 0,
/// keyCertSign + cRLSign, valid from yesterday for [`GENERATED_CA_YEARS`]
/// years, positive random 63-bit serial.
fn ca_params(common_name: &str) -> Result<CertificateParams, CertificateAuthorityError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| {
        CertificateAuthorityError::Generation {
            reason: e.to_string(),
        }
    })?;
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
    let serial = (rand::random::<u64>() >> 1).max(1);
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    Ok(params)
}

/// The root's subject as rcgen writes names: one attribute per RDN, each
/// type once, PrintableString, UTF8String or IA5String values.
pub(super) fn distinguished_name(
    name: &x509_parser::x509::X509Name<'_>,
) -> Result<DistinguishedName, CertificateAuthorityError> {
    let unsupported = |what: &str| CertificateAuthorityError::InvalidCertificate {
        reason: format!(
            "the root's subject name has {what}, which dps cannot reproduce; \
             import an intermediate signed by it instead"
        ),
    };
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for rdn in name.iter() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err(unsupported("a multi-valued RDN"));
        };
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("an attribute type too large to read"))?
            .collect();
        if seen.contains(&oid) {
            return Err(unsupported("a repeated attribute type"));
        }
        let text = std::str::from_utf8(attribute.attr_value().data)
            .map_err(|_| unsupported("a value that is not text"))?
            .to_owned();
        let value = match attribute.attr_value().tag() {
            Tag::PrintableString => DnValue::PrintableString(
                text.try_into()
                    .map_err(|_| unsupported("an invalid PrintableString"))?,
            ),
            Tag::Utf8String => DnValue::Utf8String(text),
            Tag::Ia5String => DnValue::Ia5String(
                text.try_into()
                    .map_err(|_| unsupported("an invalid IA5String"))?,
            ),
            _ => return Err(unsupported("a value of an unusual string type")),
        };
        dn.push(DnType::from_oid(&oid), value);
        seen.push(oid);
    }
    Ok(dn)
}

/// The root certificate's subject key identifier, if it has one.
pub(super) fn subject_key_identifier(certificate: &X509Certificate<'_>) -> Option<Vec<u8>> {
    certificate
        .iter_extensions()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
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
    fn an_intermediate_under_an_operator_root_verifies_with_openssl() {
        // A root with a multi-attribute subject and a subject key id, as
        // operators' roots have.
        let root_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(
            DnType::CountryName,
            DnValue::PrintableString("DE".try_into().unwrap()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Contoso GmbH");
        params
            .distinguished_name
            .push(DnType::CommonName, "Contoso offline root");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = params.self_signed(&root_key).unwrap();

        let made = CaMaterial::generate_intermediate(
            "Fleet issuing CA",
            &root.pem(),
            &root_key.serialize_pem(),
        )
        .unwrap();
        assert!(made.certificate_chain().ends_with(&root.pem()));
        assert!(!made.certificate_chain().contains("PRIVATE KEY"));
        // The chain imports back (signatures checked) with its own key.
        CaMaterial::import(made.certificate_chain(), made.private_key_pem()).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (root_file, leaf_file) = (
            dir.path().join("root.pem"),
            dir.path().join("intermediate.pem"),
        );
        std::fs::write(&root_file, root.pem()).unwrap();
        let intermediate_end = made
            .certificate_chain()
            .find("-----END CERTIFICATE-----")
            .unwrap()
            + 25;
        std::fs::write(&leaf_file, &made.certificate_chain()[..intermediate_end]).unwrap();
        let verify = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&root_file)
            .arg(&leaf_file)
            .output()
            .expect("openssl runs");
        assert!(
            verify.status.success(),
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );

        // A root key that is not the root's is refused before anything is signed.
        let stranger = KeyPair::generate().unwrap();
        let err = CaMaterial::generate_intermediate("x", &root.pem(), &stranger.serialize_pem())
            .unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
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
