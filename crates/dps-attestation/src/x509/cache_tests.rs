//! The signature cache seen from a whole verification: what is skipped on a
//! warm cache, and what never is. Each test has a cache of its own, so the
//! counters are exact whatever other tests run beside it.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::SignatureVerificationAlgorithm;

use super::chain::verify_groups_with;
use super::limits::ChainLimits;
use super::meter::Meter;
use super::signature_cache::{SignatureCache, SignatureCacheStats};
use super::{GroupMatch, TrustAnchor};
use crate::AttestationError;

/// Inside rcgen's default validity (1975–4096).
const NOW: u64 = 1_780_000_000;

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn params(common_name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    }
    params
}

/// A group: root (the anchor) → intermediate, and devices under it.
struct Group {
    anchor: TrustAnchor,
    intermediate: rcgen::Certificate,
    intermediate_key: KeyPair,
}

impl Group {
    fn new() -> Self {
        let root_key = p256();
        let root = params("root", true).self_signed(&root_key).unwrap();
        let intermediate_key = p256();
        let intermediate = params("intermediate", true)
            .signed_by(&intermediate_key, &root, &root_key)
            .unwrap();
        Group {
            anchor: TrustAnchor::new(root.der(), "root", true).unwrap(),
            intermediate,
            intermediate_key,
        }
    }

    /// A device's chain as presented: its leaf, then the intermediate.
    fn device(&self, id: &str) -> Vec<Vec<u8>> {
        let leaf = params(id, false)
            .signed_by(&p256(), &self.intermediate, &self.intermediate_key)
            .unwrap();
        vec![leaf.der().to_vec(), self.intermediate.der().to_vec()]
    }

    fn verify(
        &self,
        chain: &[Vec<u8>],
        cache: &SignatureCache,
    ) -> Result<GroupMatch, AttestationError> {
        verify_groups_with(
            chain,
            &[[&self.anchor]],
            None,
            NOW,
            &ChainLimits::default(),
            cache,
        )
    }
}

fn counts(cache: &SignatureCache) -> (u64, u64) {
    let SignatureCacheStats { hits, misses, .. } = cache.stats();
    (hits, misses)
}

#[test]
fn a_second_device_of_the_group_computes_only_its_own_link() {
    let cache = SignatureCache::new(64);
    let group = Group::new();
    let first = group.device("dev1");
    group.verify(&first, &cache).unwrap();
    // Cold: leaf-by-intermediate and intermediate-by-root, both computed.
    assert_eq!(counts(&cache), (0, 2));
    assert_eq!(cache.stats().entries, 2);

    let second = group.device("dev2");
    let found = group.verify(&second, &cache).unwrap();
    assert_eq!(found.device.registration_id, "dev2");
    // The intermediate's link came from the cache; only the new leaf's was computed.
    assert_eq!(counts(&cache), (1, 3));

    // The same chain again: nothing computed at all.
    group.verify(&second, &cache).unwrap();
    assert_eq!(counts(&cache), (3, 3));
}

#[test]
fn a_tampered_leaf_is_refused_after_the_genuine_one_was_cached() {
    let cache = SignatureCache::new(64);
    let group = Group::new();
    let genuine = group.device("dev1");
    group.verify(&genuine, &cache).unwrap();

    // The last byte of the DER is the last byte of the ECDSA signature's s.
    let mut bad_signature = genuine.clone();
    *bad_signature[0].last_mut().unwrap() ^= 0x01;
    // A byte of the subject CN: same length, another message, same signature.
    let mut bad_message = genuine.clone();
    let at = bad_message[0]
        .windows(4)
        .position(|w| w == b"dev1")
        .unwrap();
    bad_message[0][at + 3] = b'2';

    for tampered in [&bad_signature, &bad_message] {
        for _ in 0..2 {
            let (_, misses) = counts(&cache);
            let refused = group.verify(tampered, &cache);
            assert!(
                matches!(
                    refused,
                    Err(AttestationError::BadCertificateSignature { .. })
                ),
                "{refused:?}"
            );
            // The leaf's link was computed again, every time (failures are never kept).
            assert_eq!(counts(&cache).1, misses + 1);
        }
    }
    // The genuine chain is still accepted, from the cache.
    group.verify(&genuine, &cache).unwrap();
    assert_eq!(cache.stats().entries, 2);
}

/// The meter over raw triples: a cached success for one (key, message,
/// signature) admits no other signature or message under the same key.
#[test]
fn only_the_exact_verified_triple_is_answered_from_the_cache() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = key.public_key().as_ref();
    let message = b"tbsCertificate".as_slice();
    let signature = key.sign(&rng, message).unwrap();
    let signature = signature.as_ref();
    let other_signature = key.sign(&rng, b"another message").unwrap();

    let cache = SignatureCache::new(64);
    let p256_sha256 = webpki::ring::ECDSA_P256_SHA256.signature_alg_id();
    // Each check on its own meter, as each verification call has one.
    let check = |message: &[u8], signature: &[u8]| {
        let meter = Meter::new(4, &cache);
        let algorithms = meter.algorithms();
        let algorithm = algorithms
            .iter()
            .find(|m| m.signature_alg_id() == p256_sha256)
            .unwrap();
        let ok = algorithm
            .verify_signature(public, message, signature)
            .is_ok();
        assert_eq!(meter.performed(), 1);
        ok
    };
    assert!(check(message, signature));
    assert!(check(message, signature));
    assert_eq!(counts(&cache), (1, 1));
    for _ in 0..2 {
        assert!(!check(b"tbsCertificatf", signature));
        assert!(!check(message, other_signature.as_ref()));
    }
    assert_eq!(counts(&cache), (1, 5));
    assert_eq!(cache.stats().entries, 1);
}

/// A hit is charged like a computed check: the budget refuses the same
/// chains with a warm cache as with a cold one.
#[test]
fn a_warm_cache_does_not_stretch_the_signature_budget() {
    let cache = SignatureCache::new(64);
    let group = Group::new();
    let chain = group.device("dev1");
    group.verify(&chain, &cache).unwrap();
    let one_check = ChainLimits {
        max_signature_checks: 1,
        ..ChainLimits::default()
    };
    let refused = verify_groups_with(&chain, &[[&group.anchor]], None, NOW, &one_check, &cache);
    assert!(
        matches!(
            refused,
            Err(AttestationError::VerificationBudgetExhausted {
                signature_checks: 1,
                ..
            })
        ),
        "{refused:?}"
    );
}
