//! A TLS client chain (DER certificates, leaf first) against a fixed,
//! verified CA: group verification (`verify_group`), individual-enrollment
//! matching (`verify_individual`) and CA proof of possession, exactly as the
//! pipeline and the certificates API call them.
//!
//! The input is framed (`dps_fuzz::frames`: u16 length + DER, up to 8
//! certificates), byte 0 choosing the registration id checked; the seeds are
//! valid chains under the fixture anchor, so mutations explore chains that
//! almost verify.
//!
//! Invariants: no panic; the fuzzer cannot forge signatures, so any chain
//! accepted must have a leaf byte-identical to one the anchor's key signed
//! in the seeds (the enrolled leaf is the only one the fixture keeps);
//! verification time stays bounded (libFuzzer's -timeout catches a stall).
#![no_main]

use dps_attestation::x509::{
    verify_group, verify_individual, verify_proof_of_possession, TrustAnchor,
};
use dps_fuzz::{anchor, frames, ANCHOR_DER, ENROLLED_LEAF_DER, NOW};
use dps_model::{X509CertificateWithInfo, X509Certificates};
use libfuzzer_sys::fuzz_target;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let chain = frames(rest, 8);
    if chain.is_empty() {
        return;
    }
    let registration_id = match selector % 3 {
        0 => None,
        1 => Some("fuzz-device"),
        _ => Some("other-device"),
    };
    let unverified = TrustAnchor::new(ANCHOR_DER, "unverified", false).expect("fixture anchor");
    let anchors = [&unverified, anchor()];
    if let Ok(device) = verify_group(&chain, &anchors, registration_id, NOW) {
        assert_eq!(device.matched, 1, "an unverified anchor was accepted");
        if let Some(id) = registration_id {
            assert!(device.registration_id.eq_ignore_ascii_case(id));
        }
    }

    let enrolled = X509Certificates {
        primary: Some(X509CertificateWithInfo {
            certificate: Some(BASE64.encode(ENROLLED_LEAF_DER)),
            info: None,
        }),
        secondary: None,
    };
    if verify_individual(
        &chain,
        &enrolled,
        registration_id.unwrap_or("fuzz-device"),
        NOW,
    )
    .is_ok()
    {
        assert_eq!(
            chain[0], ENROLLED_LEAF_DER,
            "a leaf other than the enrolled one was accepted"
        );
    }

    // The proof-of-possession upload: CA + the (mutated) first certificate.
    let _ = verify_proof_of_possession(ANCHOR_DER, chain[0], "0123456789ABCDEF", NOW);
    if chain.len() > 1 {
        let _ = verify_proof_of_possession(chain[1], chain[0], "fuzz-device", NOW);
    }
});
