//! Group attestation: chains from the leaf to a trust anchor.

use dps_attestation::x509::{certificate_info, verify_group, TrustAnchor};
use dps_attestation::AttestationError;

use crate::pki::{Alg, Chain, Spec, NOW};

fn anchor(cert: &crate::pki::Issued, name: &str, verified: bool) -> TrustAnchor {
    TrustAnchor::new(cert.pem(), name, verified).unwrap()
}

#[test]
fn valid_chains_verify_for_every_key_type() {
    let combinations = [
        (Alg::P256, Alg::P256, Alg::P256),
        (Alg::P384, Alg::P384, Alg::P384),
        (Alg::Rsa(0), Alg::Rsa(1), Alg::Rsa(2)),
        (Alg::Rsa(0), Alg::P384, Alg::P256),
        (Alg::P256, Alg::Rsa(1), Alg::P384),
    ];
    for (root, intermediate, leaf) in combinations {
        let chain = Chain::new(root, intermediate, leaf);
        let root_anchor = anchor(&chain.root, "root", true);
        let verified = verify_group(&chain.presented(), &[&root_anchor], Some("DEV1"), NOW)
            .unwrap_or_else(|e| panic!("{root:?}/{intermediate:?}/{leaf:?}: {e}"));
        assert_eq!(verified.registration_id, "dev1");
        assert_eq!(verified.matched, 0);
        assert_eq!(verified.leaf, certificate_info(&chain.leaf.der()).unwrap());
    }
}

#[test]
fn the_chain_may_include_the_anchor_in_any_order() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root_anchor = anchor(&chain.root, "root", true);
    let (leaf, inter, root) = (chain.leaf.der(), chain.intermediate.der(), chain.root.der());
    for presented in [
        vec![leaf.clone(), inter.clone(), root.clone()],
        vec![leaf.clone(), root.clone(), inter.clone()],
    ] {
        let verified = verify_group(&presented, &[&root_anchor], None, NOW).unwrap();
        assert_eq!(verified.registration_id, "dev1");
    }
}

#[test]
fn an_intermediate_can_be_the_group_anchor() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let inter_anchor = anchor(&chain.intermediate, "group-a/primary", true);
    // Only the leaf is needed then; a longer chain is fine too.
    for presented in [vec![chain.leaf.der()], chain.presented()] {
        let verified = verify_group(&presented, &[&inter_anchor], None, NOW).unwrap();
        assert_eq!(verified.matched, 0);
    }
}

#[test]
fn the_matching_anchor_is_reported() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let other = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let anchors = [
        anchor(&other.root, "other", true),
        anchor(&chain.root, "ours", true),
    ];
    let verified =
        verify_group(&chain.presented(), &[&anchors[0], &anchors[1]], None, NOW).unwrap();
    assert_eq!(verified.matched, 1);
    assert_eq!(
        anchors[1].info(),
        &certificate_info(&chain.root.der()).unwrap()
    );
    assert_eq!(anchors[1].name(), "ours");
}

#[test]
fn wrong_common_name() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root = anchor(&chain.root, "root", true);
    assert_eq!(
        verify_group(&chain.presented(), &[&root], Some("dev2"), NOW),
        Err(AttestationError::CommonNameMismatch {
            expected: "dev2".to_owned(),
            actual: "dev1".to_owned()
        })
    );
}

#[test]
fn expired_or_future_certificates_anywhere_on_the_path() {
    let root = Spec::ca("root", Alg::P256).self_signed();
    let inter = Spec::ca("inter", Alg::P256).signed_by(&root);
    let expired_inter = Spec::ca("old inter", Alg::P256)
        .years(2010, 2020)
        .signed_by(&root);
    let expired_root = Spec::ca("old root", Alg::P256)
        .years(2010, 2020)
        .self_signed();
    let anchors = [
        anchor(&root, "root", true),
        anchor(&expired_root, "old root", true),
    ];
    let anchors = [&anchors[0], &anchors[1]];

    let expired_leaf = Spec::leaf("dev1", Alg::P256)
        .years(2010, 2020)
        .signed_by(&inter);
    assert!(matches!(
        verify_group(&[expired_leaf.der(), inter.der()], &anchors, None, NOW),
        Err(AttestationError::CertificateExpired { subject, .. }) if subject == "CN=dev1"
    ));
    let future_leaf = Spec::leaf("dev1", Alg::P256)
        .years(2030, 2040)
        .signed_by(&inter);
    assert!(matches!(
        verify_group(&[future_leaf.der(), inter.der()], &anchors, None, NOW),
        Err(AttestationError::CertificateNotYetValid { subject, .. }) if subject == "CN=dev1"
    ));
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&expired_inter);
    assert_eq!(
        verify_group(&[leaf.der(), expired_inter.der()], &anchors, None, NOW),
        Err(AttestationError::CertificateExpired {
            subject: "CN=old inter, O=dps tests".to_owned(),
            not_after: "2020-01-01T00:00:00Z".to_owned(),
            now: "2026-05-28T20:26:40Z".to_owned(),
        })
    );
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&expired_root);
    assert!(matches!(
        verify_group(&[leaf.der()], &anchors, None, NOW),
        Err(AttestationError::CertificateExpired { subject, .. }) if subject == "CN=old root, O=dps tests"
    ));
}

#[test]
fn broken_signatures() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root = anchor(&chain.root, "root", true);
    // An impostor with the intermediate's name but its own key signs a leaf.
    let impostor = Spec::ca("dps test intermediate", Alg::P256).signed_by(&chain.root);
    let forged = Spec::leaf("dev1", Alg::P256).signed_by(&impostor);
    assert_eq!(
        verify_group(
            &[forged.der(), chain.intermediate.der()],
            &[&root],
            None,
            NOW
        ),
        Err(AttestationError::BadCertificateSignature {
            subject: "CN=dev1".to_owned(),
            issuer: "CN=dps test intermediate, O=dps tests".to_owned(),
        })
    );
    // The same for the anchor: an intermediate claiming the root as issuer,
    // signed by another key.
    let fake_root = Spec::ca("dps test root", Alg::P256).self_signed();
    let inter = Spec::ca("dps test intermediate", Alg::P256).signed_by(&fake_root);
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&inter);
    assert_eq!(
        verify_group(&[leaf.der(), inter.der()], &[&root], None, NOW),
        Err(AttestationError::BadCertificateSignature {
            subject: "CN=dps test intermediate, O=dps tests".to_owned(),
            issuer: "CN=dps test root, O=dps tests".to_owned(),
        })
    );
    // A flipped bit in the leaf's signature value (its last byte).
    let mut tampered = chain.leaf.der();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert!(matches!(
        verify_group(&[tampered, chain.intermediate.der()], &[&root], None, NOW),
        Err(AttestationError::BadCertificateSignature { subject, .. }) if subject == "CN=dev1"
    ));
}

#[test]
fn rsa_signature_tampering_is_detected() {
    let chain = Chain::new(Alg::Rsa(0), Alg::Rsa(1), Alg::Rsa(2));
    let root = anchor(&chain.root, "root", true);
    let mut tampered = chain.intermediate.der();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    assert!(matches!(
        verify_group(&[chain.leaf.der(), tampered], &[&root], None, NOW),
        Err(AttestationError::BadCertificateSignature { subject, .. })
            if subject == "CN=dps test intermediate, O=dps tests"
    ));
}

#[test]
fn unverified_ca() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let unrelated = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let anchors = [
        anchor(&unrelated.root, "unrelated", true),
        anchor(&chain.root, "my-ca", false),
    ];
    let result = verify_group(&chain.presented(), &[&anchors[0], &anchors[1]], None, NOW);
    assert_eq!(
        result,
        Err(AttestationError::CaNotVerified {
            name: "my-ca".to_owned()
        })
    );
    assert!(result
        .unwrap_err()
        .to_string()
        .starts_with("CA certificate not found."));
}

#[test]
fn chain_that_does_not_reach_the_anchor() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root = anchor(&chain.root, "root", true);
    // Intermediate missing.
    assert_eq!(
        verify_group(&[chain.leaf.der()], &[&root], None, NOW),
        Err(AttestationError::ChainDoesNotReachAnchor {
            subject: "CN=dev1".to_owned(),
            issuer: "CN=dps test intermediate, O=dps tests".to_owned(),
        })
    );
    // A complete chain to some other root.
    let other_root = Spec::ca("other root", Alg::P256).self_signed();
    let other_inter = Spec::ca("other inter", Alg::P256).signed_by(&other_root);
    let other_leaf = Spec::leaf("dev1", Alg::P256).signed_by(&other_inter);
    let presented = [other_leaf.der(), other_inter.der(), other_root.der()];
    assert_eq!(
        verify_group(&presented, &[&root], None, NOW),
        Err(AttestationError::ChainDoesNotReachAnchor {
            subject: "CN=other root, O=dps tests".to_owned(),
            issuer: "CN=other root, O=dps tests".to_owned(),
        })
    );
    // Another root that happens to bear the anchor's name: its intermediate's
    // signature does not verify with the anchor's key.
    let namesake = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    assert_eq!(
        verify_group(&namesake.presented(), &[&root], None, NOW),
        Err(AttestationError::BadCertificateSignature {
            subject: "CN=dps test intermediate, O=dps tests".to_owned(),
            issuer: "CN=dps test root, O=dps tests".to_owned(),
        })
    );
    // A self-signed device certificate and no anchors at all.
    let lone = Spec::leaf("dev1", Alg::P256).self_signed();
    assert!(matches!(
        verify_group(&[lone.der()], &[], None, NOW),
        Err(AttestationError::ChainDoesNotReachAnchor { .. })
    ));
}

#[test]
fn issuers_must_be_certificate_authorities() {
    let root = Spec::ca("root", Alg::P256).self_signed();
    let not_ca = Spec::ca("inter", Alg::P256).not_ca().signed_by(&root);
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&not_ca);
    let root_anchor = anchor(&root, "root", true);
    assert_eq!(
        verify_group(&[leaf.der(), not_ca.der()], &[&root_anchor], None, NOW),
        Err(AttestationError::NotACertificateAuthority {
            subject: "CN=inter, O=dps tests".to_owned()
        })
    );
    // The anchor itself must be a CA too.
    let not_ca_anchor = anchor(&not_ca, "group/primary", true);
    assert_eq!(
        verify_group(&[leaf.der()], &[&not_ca_anchor], None, NOW),
        Err(AttestationError::NotACertificateAuthority {
            subject: "CN=inter, O=dps tests".to_owned()
        })
    );
}

#[test]
fn empty_and_malformed_chains() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root = anchor(&chain.root, "root", true);
    assert_eq!(
        verify_group::<Vec<u8>>(&[], &[&root], None, NOW),
        Err(AttestationError::EmptyChain)
    );
    assert!(matches!(
        verify_group(&[chain.leaf.der(), b"junk".to_vec()], &[&root], None, NOW),
        Err(AttestationError::MalformedCertificate { which, .. }) if which == "chain[1]"
    ));
    assert!(matches!(
        TrustAnchor::new("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "bad", true),
        Err(AttestationError::MalformedCertificate { which, .. }) if which == "trust anchor \"bad\""
    ));
}

/// The service caches anchors and keys across threads.
#[test]
fn cached_values_are_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<TrustAnchor>();
    assert_send_sync::<dps_attestation::sas::SymmetricKey>();
}
