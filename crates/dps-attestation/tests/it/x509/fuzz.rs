//! Property tests: arbitrary and mutated input never panics the X.509 code,
//! and no single-byte change to a valid leaf survives chain verification.

use std::sync::OnceLock;

use dps_attestation::x509::{certificate_info, verify_group, TrustAnchor};
use proptest::prelude::*;

use crate::pki::{Alg, Chain, NOW};

struct Fixture {
    chain: Chain,
    anchor: TrustAnchor,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
        let anchor = TrustAnchor::new(chain.root.der(), "root", true).unwrap();
        Fixture { chain, anchor }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = certificate_info(&bytes);
        let _ = TrustAnchor::new(&bytes, "fuzz", true);
        let f = fixture();
        prop_assert!(verify_group(&[bytes], &[&f.anchor], None, NOW).is_err());
    }

    #[test]
    fn any_single_byte_change_to_the_leaf_is_refused(
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let f = fixture();
        let mut leaf = f.chain.leaf.der();
        let at = position.index(leaf.len());
        leaf[at] ^= flip;
        let _ = certificate_info(&leaf);
        let presented = [leaf, f.chain.intermediate.der()];
        prop_assert!(verify_group(&presented, &[&f.anchor], None, NOW).is_err());
    }

    #[test]
    fn any_single_byte_change_to_the_intermediate_is_refused(
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let f = fixture();
        let mut intermediate = f.chain.intermediate.der();
        let at = position.index(intermediate.len());
        intermediate[at] ^= flip;
        let presented = [f.chain.leaf.der(), intermediate];
        prop_assert!(verify_group(&presented, &[&f.anchor], None, NOW).is_err());
    }
}

/// Found by the `x509_der` fuzz target: the subject's second RDN holds a value
/// whose length runs past its SEQUENCE. It used to decode (and so could be
/// uploaded as a CA) while it could never be a trust anchor.
#[test]
fn a_certificate_with_an_overrunning_name_is_refused_everywhere() {
    use base64::Engine as _;
    use dps_attestation::x509::decode_certificate;
    use dps_attestation::AttestationError;
    let der = base64::engine::general_purpose::STANDARD
        .decode(concat!(
            "MIIBkzCCATmgAwIBAgIULbIfdkieddTK7rbb/zTZ4Ub10vgwCgYIKoZIzj0EAwIwJzERMA8GA1UECgwI",
            "ZHBzIGZ1enoxEjAQBgNVBAMMCWZ1enotcm9vdDAeFw0yMDAxMDEwMDAwMDBaFw00MDAxMDEwMDAwMDBa",
            "MCcxETAPBgNVBAoMCGRwcyBmdXp6MRIwEAYDQAQlDVDmdXp6LXJvb3QwWTATBgcqhkjOPQIBBggqhkjO",
            "PQMBBwNCAATBJTZK/LW4DCgwIZHBzIGZ1evN7h85ii5JT7uFfFepwsyCl7Dl8fHNkjgjtwjTUs5itjfz",
            "ZP25ks6syY0jTNtHo0MwQTAPBgNVHQ8BAf8EBQMDB4QAMB0GA1UdDoQWBBSY642cKvwKMncEZd6qNk61",
            "iFwrmTAPBgNVHRMBAf7EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQAMxDx/DYlD/hDRaRiCPYfHLS8v",
            "J7wk/LrPH7XFJ8PFtwIgCRvcYNN3PXN/Miqwz3EI6ROwkm1VYS+PmlpMqP3QqZU="
        ))
        .unwrap();
    for refused in [
        decode_certificate(&der).map(drop),
        certificate_info(&der).map(drop),
        TrustAnchor::new(&der, "root", true).map(drop),
    ] {
        assert!(
            matches!(refused, Err(AttestationError::MalformedCertificate { .. })),
            "{refused:?}"
        );
    }
}
