//! Verified CA certificates: verification codes and proof of possession.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::x509::{
    generate_verification_code, verify_proof_of_possession, VERIFICATION_CODE_LEN,
};
use dps_attestation::AttestationError;

use crate::pki::{Alg, Spec, NOW};

#[test]
fn verification_codes_are_random_upper_case_hex() {
    let codes: HashSet<String> = (0..100).map(|_| generate_verification_code()).collect();
    assert_eq!(codes.len(), 100);
    for code in &codes {
        assert_eq!(code.len(), VERIFICATION_CODE_LEN);
        assert!(
            code.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F')),
            "{code}"
        );
    }
}

#[test]
fn proof_signed_by_the_ca_key_is_accepted() {
    for alg in [Alg::P256, Alg::P384, Alg::Rsa(0)] {
        let ca = Spec::ca("my root", alg).self_signed();
        let code = generate_verification_code();
        let proof = Spec::leaf(&code, Alg::P256).signed_by(&ca);
        // PEM CA with a base64 proof, and DER both.
        verify_proof_of_possession(
            ca.pem().as_bytes(),
            BASE64.encode(proof.der()).as_bytes(),
            &code,
            NOW,
        )
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        verify_proof_of_possession(&ca.der(), &proof.der(), &code.to_lowercase(), NOW).unwrap();
    }
}

#[test]
fn proof_with_another_code_is_refused() {
    let ca = Spec::ca("my root", Alg::P256).self_signed();
    let code = generate_verification_code();
    let other = generate_verification_code();
    let proof = Spec::leaf(&other, Alg::P256).signed_by(&ca);
    assert_eq!(
        verify_proof_of_possession(&ca.der(), &proof.der(), &code, NOW),
        Err(AttestationError::VerificationCodeMismatch {
            expected: code.clone(),
            actual: other
        })
    );
    // An empty expected code never matches.
    let empty_cn = Spec::leaf("", Alg::P256).signed_by(&ca);
    assert!(matches!(
        verify_proof_of_possession(&ca.der(), &empty_cn.der(), "", NOW),
        Err(AttestationError::VerificationCodeMismatch { .. })
    ));
}

#[test]
fn proof_signed_by_another_key_is_refused() {
    let ca = Spec::ca("my root", Alg::P256).self_signed();
    let impostor = Spec::ca("my root", Alg::P256).self_signed();
    let code = generate_verification_code();
    let proof = Spec::leaf(&code, Alg::P256).signed_by(&impostor);
    assert_eq!(
        verify_proof_of_possession(&ca.der(), &proof.der(), &code, NOW),
        Err(AttestationError::BadCertificateSignature {
            subject: format!("CN={code}"),
            issuer: "CN=my root, O=dps tests".to_owned()
        })
    );
    // A self-signed proof (the administrator does not hold the CA key).
    let self_signed = Spec::leaf(&code, Alg::P256).self_signed();
    assert!(matches!(
        verify_proof_of_possession(&ca.der(), &self_signed.der(), &code, NOW),
        Err(AttestationError::BadCertificateSignature { .. })
    ));
}

#[test]
fn expired_proof_is_refused() {
    let ca = Spec::ca("my root", Alg::P256).self_signed();
    let code = generate_verification_code();
    let proof = Spec::leaf(&code, Alg::P256)
        .years(2010, 2011)
        .signed_by(&ca);
    assert!(matches!(
        verify_proof_of_possession(&ca.der(), &proof.der(), &code, NOW),
        Err(AttestationError::CertificateExpired { .. })
    ));
}
