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
