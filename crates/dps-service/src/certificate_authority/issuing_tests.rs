//! Tests of issuing: a leaf carries the CSR's key and the fixed profile and
//! verifies under the CA (with openssl too); refusals; the CRL.

use std::process::Command;

use chrono::Utc;
use dps_model::{CredentialPolicy, KeyType, RegistrationId};
use proptest::prelude::*;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::issuing::{verify_csr, IssuanceError, Issuer};
use super::CaMaterial;

fn csr(cn: Option<&str>, key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut name = DistinguishedName::new();
    if let Some(cn) = cn {
        name.push(DnType::CommonName, cn);
    }
    params.distinguished_name = name;
    params.serialize_request(key).unwrap().der().to_vec()
}

fn id(text: &str) -> RegistrationId {
    RegistrationId::new(text).unwrap()
}

fn policy(keys: &[KeyType]) -> CredentialPolicy {
    let mut policy = CredentialPolicy::new("devices", "fleet");
    policy.accepted_key_types = keys.to_vec();
    policy.validity_period_in_days = 7;
    policy
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs")
}

#[test]
fn a_leaf_has_the_csr_key_the_device_name_client_auth_and_chains_to_the_ca() {
    let material = CaMaterial::generate("Fleet CA").unwrap();
    let issuer = Issuer::new("fleet", &material).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let policy = policy(&[KeyType::EcdsaP256]);
    let verified = verify_csr(&csr(Some("dev-1"), &key), &id("dev-1"), &policy).unwrap();
    assert_eq!(verified.key_type(), KeyType::EcdsaP256);
    let now = Utc::now();
    let leaf = issuer
        .issue(&verified, &id("dev-1"), "device-one", &policy, now)
        .unwrap();
    assert_eq!(leaf.chain.len(), 2, "leaf then the CA");
    let der =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &leaf.chain[0]).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    let cn: Vec<_> = cert.subject().iter_common_name().collect();
    assert_eq!(cn[0].as_str().unwrap(), "device-one");
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(!cert.is_ca());
    assert_eq!(
        cert.raw_serial_as_string().replace(':', "").to_uppercase(),
        leaf.record.serial_number
    );
    let days = (cert.validity().not_after.timestamp() - now.timestamp()) / 86_400;
    assert_eq!(days, 7);
    assert_eq!(leaf.record.sha256_thumbprint.len(), 64);
    assert_eq!(leaf.record.sha1_thumbprint.len(), 40);
    assert!(cert.iter_extensions().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::AuthorityKeyIdentifier(_)
    )));

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let leaf_path = dir.path().join("leaf.der");
    std::fs::write(&ca_path, material.certificate_chain()).unwrap();
    std::fs::write(&leaf_path, &der).unwrap();
    let pem_path = dir.path().join("leaf.pem");
    let converted = openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        leaf_path.to_str().unwrap(),
        "-out",
        pem_path.to_str().unwrap(),
    ]);
    assert!(converted.status.success());
    let verify = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        ca_path.to_str().unwrap(),
        pem_path.to_str().unwrap(),
    ]);
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn an_rsa_csr_made_by_openssl_is_issued_and_its_size_checked() {
    let dir = tempfile::tempdir().unwrap();
    let der_path = dir.path().join("req.der");
    let key_path = dir.path().join("key.pem");
    let made = openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=dev-2",
        "-keyout",
        key_path.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der_path.to_str().unwrap(),
    ]);
    assert!(made.status.success());
    let der = std::fs::read(&der_path).unwrap();
    let only_ec = policy(&[KeyType::EcdsaP256]);
    let refused = verify_csr(&der, &id("dev-2"), &only_ec).unwrap_err();
    assert!(
        matches!(refused, IssuanceError::KeyRefused { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("rsa2048"), "{refused}");
    let rsa = policy(&[KeyType::Rsa2048]);
    let verified = verify_csr(&der, &id("dev-2"), &rsa).unwrap();
    assert_eq!(verified.key_type(), KeyType::Rsa2048);
    let issuer = Issuer::new("fleet", &CaMaterial::generate("Fleet CA").unwrap()).unwrap();
    let leaf = issuer
        .issue(&verified, &id("dev-2"), "dev-2", &rsa, Utc::now())
        .unwrap();
    assert_eq!(leaf.chain.len(), 2);
}

#[test]
fn bad_csrs_are_refused_as_the_devices_fault() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let p256 = policy(&[KeyType::EcdsaP256]);
    let good = csr(Some("dev-1"), &key);

    let other = verify_csr(&csr(Some("dev-9"), &key), &id("dev-1"), &p256).unwrap_err();
    assert!(
        matches!(other, IssuanceError::SubjectMismatch { .. }),
        "{other}"
    );
    // No CN at all is fine: the leaf's CN is dps's choice anyway.
    verify_csr(&csr(None, &key), &id("dev-1"), &p256).unwrap();
    verify_csr(&good, &id("DEV-1"), &p256).unwrap();

    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let err = verify_csr(&tampered, &id("dev-1"), &p256).unwrap_err();
    assert!(err.is_request_error());
    assert!(err.to_string().contains("signature"), "{err}");

    for bytes in [&b""[..], b"\x30\x00", &good[..good.len() / 2]] {
        let err = verify_csr(bytes, &id("dev-1"), &p256).unwrap_err();
        assert!(matches!(err, IssuanceError::BadCsr(_)), "{err}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(verify_csr(&trailing, &id("dev-1"), &p256).is_err());

    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let refused = verify_csr(&csr(Some("dev-1"), &p384), &id("dev-1"), &p256).unwrap_err();
    assert!(matches!(refused, IssuanceError::KeyRefused { .. }));
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let refused = verify_csr(&csr(Some("dev-1"), &ed), &id("dev-1"), &p256).unwrap_err();
    assert!(matches!(refused, IssuanceError::BadCsr(_)), "{refused}");
}

#[test]
fn the_crl_lists_revoked_serials_and_verifies_under_the_ca() {
    let material = CaMaterial::generate("Fleet CA").unwrap();
    let issuer = Issuer::new("fleet", &material).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let p256 = policy(&[KeyType::EcdsaP256]);
    let verified = verify_csr(&csr(Some("dev-1"), &key), &id("dev-1"), &p256).unwrap();
    let now = Utc::now();
    let mut revoked = issuer
        .issue(&verified, &id("dev-1"), "dev-1", &p256, now)
        .unwrap()
        .record;
    revoked.revoke(now);
    let der = issuer.crl(std::slice::from_ref(&revoked), now).unwrap();
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    let serials: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', "").to_uppercase())
        .collect();
    assert_eq!(serials, vec![revoked.serial_number.clone()]);
    let (_, ca_pem) =
        x509_parser::pem::parse_x509_pem(material.certificate_chain().as_bytes()).unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    assert_eq!(crl.issuer().as_raw(), ca.subject().as_raw());
    crl.verify_signature(ca.public_key()).unwrap();

    let empty = issuer.crl(&[], now).unwrap();
    let (_, empty) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&empty).unwrap();
    assert_eq!(empty.iter_revoked_certificates().count(), 0);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut der = bytes;
        if let Some(first) = der.first_mut() {
            *first = 0x30;
        }
        let result = verify_csr(&der, &id("dev-1"), &policy(&KeyType::ALL));
        prop_assert!(result.is_err());
    }
}
