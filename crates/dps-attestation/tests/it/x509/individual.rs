//! Individual enrollments: the leaf must be the enrolled certificate.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::x509::{certificate_info, verify_individual};
use dps_attestation::AttestationError;
use dps_model::{X509CertificateInfo, X509CertificateWithInfo, X509Certificates};

use crate::pki::{Alg, Issued, Spec, NOW};

fn enrolled_certificate(text: String) -> Option<X509CertificateWithInfo> {
    Some(X509CertificateWithInfo {
        certificate: Some(text),
        info: None,
    })
}

fn enrolled_info(info: X509CertificateInfo) -> Option<X509CertificateWithInfo> {
    Some(X509CertificateWithInfo {
        certificate: None,
        info: Some(info),
    })
}

fn device(alg: Alg) -> Issued {
    Spec::leaf("dev1", alg).self_signed()
}

#[test]
fn primary_pem_and_secondary_base64_match() {
    for alg in [Alg::P256, Alg::P384, Alg::Rsa(0)] {
        let (primary, secondary) = (device(alg), device(Alg::P256));
        let enrollment = X509Certificates {
            primary: enrolled_certificate(primary.pem()),
            secondary: enrolled_certificate(BASE64.encode(secondary.der())),
        };
        let verified = verify_individual(&[primary.der()], &enrollment, "dev1", NOW).unwrap();
        assert_eq!(verified.registration_id, "dev1");
        assert_eq!(verified.matched, 0);
        assert_eq!(
            verified.leaf,
            certificate_info(&primary.der()).unwrap(),
            "{alg:?}"
        );
        let verified = verify_individual(&[secondary.der()], &enrollment, "dev1", NOW).unwrap();
        assert_eq!(verified.matched, 1);
    }
}

#[test]
fn thumbprint_only_enrollments_match_by_sha256_or_sha1() {
    let cert = device(Alg::P256);
    let info = certificate_info(&cert.der()).unwrap();
    let sha256_only = X509CertificateInfo {
        sha1_thumbprint: String::new(),
        sha256_thumbprint: info.sha256_thumbprint.to_lowercase(),
        ..info.clone()
    };
    let sha1_only = X509CertificateInfo {
        sha256_thumbprint: String::new(),
        ..info.clone()
    };
    for stored in [sha256_only, sha1_only] {
        let enrollment = X509Certificates {
            primary: None,
            secondary: enrolled_info(stored),
        };
        let verified = verify_individual(&[cert.der()], &enrollment, "dev1", NOW).unwrap();
        assert_eq!(verified.matched, 1);
    }
}

#[test]
fn registration_id_comparison_ignores_case() {
    let cert = Spec::leaf("Dev-ABC", Alg::P256).self_signed();
    let enrollment = X509Certificates {
        primary: enrolled_certificate(cert.pem()),
        secondary: None,
    };
    let verified = verify_individual(&[cert.der()], &enrollment, "dev-abc", NOW).unwrap();
    // The id is reported as the certificate writes it.
    assert_eq!(verified.registration_id, "Dev-ABC");
}

#[test]
fn another_certificate_is_not_enrolled() {
    let (enrolled, presented) = (device(Alg::P256), device(Alg::P256));
    let enrollment = X509Certificates {
        primary: enrolled_certificate(enrolled.pem()),
        secondary: enrolled_certificate("garbage".to_owned()),
    };
    let presented_sha256 = certificate_info(&presented.der())
        .unwrap()
        .sha256_thumbprint;
    assert_eq!(
        verify_individual(&[presented.der()], &enrollment, "dev1", NOW),
        Err(AttestationError::CertificateNotEnrolled {
            sha256_thumbprint: presented_sha256.clone()
        })
    );
    assert_eq!(
        verify_individual(
            &[presented.der()],
            &X509Certificates::default(),
            "dev1",
            NOW
        ),
        Err(AttestationError::CertificateNotEnrolled {
            sha256_thumbprint: presented_sha256
        })
    );
}

#[test]
fn expired_and_future_certificates_are_refused() {
    let expired = Spec::leaf("dev1", Alg::P256)
        .years(2010, 2020)
        .self_signed();
    let future = Spec::leaf("dev1", Alg::P256)
        .years(2030, 2040)
        .self_signed();
    for (cert, expect_expired) in [(expired, true), (future, false)] {
        let enrollment = X509Certificates {
            primary: enrolled_certificate(cert.pem()),
            secondary: None,
        };
        let result = verify_individual(&[cert.der()], &enrollment, "dev1", NOW);
        match result {
            Err(AttestationError::CertificateExpired {
                subject, not_after, ..
            }) if expect_expired => {
                assert_eq!(subject, "CN=dev1");
                assert_eq!(not_after, "2020-01-01T00:00:00Z");
            }
            Err(AttestationError::CertificateNotYetValid {
                subject,
                not_before,
                now,
            }) if !expect_expired => {
                assert_eq!(subject, "CN=dev1");
                assert_eq!(not_before, "2030-01-01T00:00:00Z");
                assert_eq!(now, "2026-05-28T20:26:40Z");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn common_name_must_be_the_registration_id() {
    let cert = device(Alg::P256);
    let enrollment = X509Certificates {
        primary: enrolled_certificate(cert.pem()),
        secondary: None,
    };
    assert_eq!(
        verify_individual(&[cert.der()], &enrollment, "dev2", NOW),
        Err(AttestationError::CommonNameMismatch {
            expected: "dev2".to_owned(),
            actual: "dev1".to_owned()
        })
    );
}

#[test]
fn empty_and_malformed_chains_are_refused() {
    let enrollment = X509Certificates::default();
    assert_eq!(
        verify_individual::<Vec<u8>>(&[], &enrollment, "dev1", NOW),
        Err(AttestationError::EmptyChain)
    );
    assert!(matches!(
        verify_individual(&[b"\x30\x00".to_vec()], &enrollment, "dev1", NOW),
        Err(AttestationError::MalformedCertificate { which, .. }) if which == "chain[0]"
    ));
}
