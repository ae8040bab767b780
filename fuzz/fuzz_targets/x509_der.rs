//! One certificate in every form the service accepts it — raw DER from a
//! TLS handshake, PEM or base64 DER from an enrollment or a CA upload — through
//! the public decoding functions.
//!
//! Invariants: no panic; whatever `decode_certificate` accepts is DER that
//! decodes to itself, gives the same info as the text it came from, and
//! builds a trust anchor; a certificate anchoring itself checks its own
//! signature without panicking.
#![no_main]

use dps_attestation::x509::{
    certificate_info, decode_certificate, leaf_common_name, verify_group, TrustAnchor,
};
use dps_fuzz::NOW;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let info = certificate_info(data);
    let _ = leaf_common_name(&[data]);
    let anchor = TrustAnchor::new(data, "fuzz", true);
    let Ok(der) = decode_certificate(data) else {
        assert!(info.is_err(), "info of a certificate that does not decode");
        assert!(
            anchor.is_err(),
            "an anchor from a certificate that does not decode"
        );
        return;
    };
    assert_eq!(decode_certificate(&der).expect("DER decodes again"), der);
    let info = info.expect("a decoded certificate has info");
    assert_eq!(certificate_info(&der).expect("info of its DER"), info);
    // Found here once (a name overrunning its SEQUENCE decoded but was no
    // anchor); parse_der now refuses it, so every decoded certificate must
    // make an anchor.
    let anchor = match anchor {
        Ok(anchor) => anchor,
        Err(err) => panic!("a decoded certificate is not an anchor: {err:?}"),
    };
    assert_eq!(anchor.der(), der.as_slice());
    let _ = leaf_common_name(&[&der]);
    let _ = verify_group(&[&der], &[&anchor], None, NOW);
});
