//! Certificate decoding and `X509CertificateInfo`.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::x509::{certificate_info, decode_certificate, leaf_common_name};
use dps_attestation::AttestationError;

use crate::pki::{Alg, Spec};
use crate::process::{installed, run_ok};

#[test]
fn pem_base64_and_der_decode_to_the_same_certificate() {
    let cert = Spec::leaf("dev1", Alg::P256).self_signed();
    let der = cert.der();
    let pem = cert.pem();
    let b64 = BASE64.encode(&der);
    // Line-wrapped base64, CRLF PEM and JSON-style escaped newlines all occur.
    let wrapped: String = b64
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let crlf = pem.replace('\n', "\r\n");
    let escaped = pem.replace('\n', "\\n");
    let with_text_around = format!("subject=CN = dev1\n{pem}\ntrailing text");
    for input in [
        pem.as_bytes(),
        b64.as_bytes(),
        wrapped.as_bytes(),
        crlf.as_bytes(),
        escaped.as_bytes(),
        with_text_around.as_bytes(),
        &der,
    ] {
        assert_eq!(decode_certificate(input).unwrap(), der);
    }
}

#[test]
fn der_ending_in_a_whitespace_byte_is_kept_whole() {
    // About 2% of ECDSA certificates end in a byte that is ASCII whitespace.
    let der = std::iter::repeat_with(|| Spec::leaf("dev1", Alg::P256).self_signed().der())
        .take(5000)
        .find(|der| der.last().is_some_and(u8::is_ascii_whitespace))
        .expect("some certificate ends in a whitespace byte");
    assert_eq!(decode_certificate(&der).unwrap(), der);
    assert_eq!(leaf_common_name(&[&der]).unwrap(), "dev1");
}

#[test]
fn info_describes_the_certificate() {
    let spec = Spec {
        organization: Some("Contoso, Ltd"),
        serial: Some(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]),
        ..Spec::leaf("dev1", Alg::P256).years(2021, 2031)
    };
    let cert = spec.self_signed();
    let info = certificate_info(cert.pem().as_bytes()).unwrap();
    assert_eq!(info.subject_name, "CN=dev1, O=Contoso\\, Ltd");
    assert_eq!(info.issuer_name, info.subject_name);
    assert_eq!(info.not_before_utc, "2021-01-01T00:00:00Z");
    assert_eq!(info.not_after_utc, "2031-01-01T00:00:00Z");
    assert_eq!(info.serial_number, "0123456789ABCDEF");
    assert_eq!(info.version, 3);
    assert_eq!(info.sha256_thumbprint.len(), 64);
    assert_eq!(info.sha1_thumbprint.len(), 40);
    assert!(info
        .sha256_thumbprint
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
}

/// Thumbprints, serial and subject as openssl computes them.
#[test]
fn info_agrees_with_openssl() -> anyhow::Result<()> {
    anyhow::ensure!(installed("openssl"), "openssl is required (CI installs it)");
    let spec = Spec {
        organization: Some("dps tests"),
        serial: Some(&[0x7A, 0x00, 0x01]),
        ..Spec::ca("dps test CA", Alg::Rsa(0))
    };
    let cert = spec.self_signed();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, cert.pem())?;
    let limit = Duration::from_secs(30);
    let field = |args: &[&str]| -> anyhow::Result<String> {
        let out = run_ok(
            std::process::Command::new("openssl")
                .args(["x509", "-noout", "-in"])
                .arg(&path)
                .args(args),
            limit,
        )?;
        let line = out.stdout.trim().to_owned();
        Ok(line
            .split_once('=')
            .map_or(line.clone(), |(_, v)| v.to_owned()))
    };
    let info = certificate_info(cert.pem().as_bytes())?;
    assert_eq!(
        field(&["-fingerprint", "-sha256"])?.replace(':', ""),
        info.sha256_thumbprint
    );
    assert_eq!(
        field(&["-fingerprint", "-sha1"])?.replace(':', ""),
        info.sha1_thumbprint
    );
    assert_eq!(field(&["-serial"])?, info.serial_number);
    let subject = run_ok(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&path),
        limit,
    )?;
    // openssl's RFC 2253 form joins with "," where we (like .NET) use ", ".
    assert_eq!(
        subject
            .stdout
            .trim()
            .trim_start_matches("subject=")
            .replace(',', ", "),
        info.subject_name
    );
    Ok(())
}

#[test]
fn leaf_common_name_reads_the_first_certificate() {
    let chain = crate::pki::Chain::new(Alg::P256, Alg::P256, Alg::P256);
    assert_eq!(leaf_common_name(&chain.presented()).unwrap(), "dev1");
    assert_eq!(
        leaf_common_name::<Vec<u8>>(&[]),
        Err(AttestationError::EmptyChain)
    );
    let no_cn = rcgen::CertificateParams::new(Vec::<String>::new())
        .map(|mut p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, "only an O");
            p
        })
        .unwrap()
        .self_signed(&crate::pki::key(Alg::P256))
        .unwrap();
    assert_eq!(
        leaf_common_name(&[no_cn.der().to_vec()]),
        Err(AttestationError::MissingCommonName {
            subject: "O=only an O".to_owned()
        })
    );
}

#[test]
fn garbage_is_malformed() {
    for input in [&b"not a certificate"[..], b"\x30\x82\x01\x00", b""] {
        assert!(
            matches!(
                certificate_info(input),
                Err(AttestationError::MalformedCertificate { .. })
            ),
            "{input:?}"
        );
    }
    // A valid certificate with one byte cut off.
    let der = Spec::leaf("dev1", Alg::P256).self_signed().der();
    assert!(matches!(
        leaf_common_name(&[&der[..der.len() - 1]]),
        Err(AttestationError::MalformedCertificate { which, .. }) if which == "chain[0]"
    ));
}
