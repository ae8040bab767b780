//! Bounded path building (issue #15): chain bombs cost O(cap), one signature
//! budget spans every group, and the RFC 5280 checks the builder before
//! rustls-webpki left out (path length, name constraints, unknown critical
//! extensions) refuse what they should.

use std::time::{Duration, Instant};

use dps_attestation::x509::{verify_group, verify_groups, ChainLimits, TrustAnchor};
use dps_attestation::AttestationError;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, GeneralSubtree, IsCa, NameConstraints,
    SanType,
};

use crate::pki::{same_subject_bomb, Alg, Chain, Issued, Spec, NOW};

fn anchor(cert: &Issued, name: &str) -> TrustAnchor {
    TrustAnchor::new(cert.der(), name, true).unwrap()
}

#[test]
fn a_240_certificate_same_subject_chain_is_refused_in_under_50_ms() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root = anchor(&chain.root, "root");
    let bomb = same_subject_bomb(239, "dev1");
    assert_eq!(bomb.len(), 240);
    let started = Instant::now();
    let result = verify_group(&bomb, &[&root], Some("dev1"), NOW);
    let took = started.elapsed();
    assert_eq!(
        result,
        Err(AttestationError::ChainTooLong {
            presented: 240,
            max: 8
        })
    );
    assert!(took < Duration::from_millis(50), "took {took:?}");
}

#[test]
fn a_same_subject_chain_within_the_cap_is_refused_in_under_50_ms() {
    // Seven CAs named alike: unbounded, webpki's search would walk their
    // ~8,700 orderings (60 ms of CPU in a release build).
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root = anchor(&chain.root, "root");
    let bomb = same_subject_bomb(7, "dev1");
    assert_eq!(bomb.len(), 8);
    let limits = ChainLimits::default();
    let started = Instant::now();
    let result = verify_groups(&bomb, &[[&root]], Some("dev1"), NOW, &limits);
    let took = started.elapsed();
    assert_eq!(
        result,
        Err(AttestationError::VerificationBudgetExhausted {
            signature_checks: 0,
            path_steps: limits.max_path_steps,
        })
    );
    assert!(took < Duration::from_millis(50), "took {took:?}");
}

/// Twenty groups whose CAs bear the name the chain claims, none holding the
/// key: one budget of signature checks covers them all.
#[test]
fn one_signature_budget_spans_every_group() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let namesakes: Vec<Vec<TrustAnchor>> = (0..20)
        .map(|i| {
            let ca = Spec::ca("dps test root", Alg::P256).self_signed();
            vec![anchor(&ca, &format!("namesake-{i}"))]
        })
        .collect();
    let limits = ChainLimits::default();
    let result = verify_groups(&chain.presented(), &namesakes, Some("dev1"), NOW, &limits);
    assert!(
        matches!(
            result,
            Err(AttestationError::VerificationBudgetExhausted { signature_checks, .. })
                if signature_checks == limits.max_signature_checks
        ),
        "{result:?}"
    );
    // The real CA among the first ones is still found, and reported by group.
    let mut groups = namesakes;
    groups.insert(2, vec![anchor(&chain.root, "real")]);
    let found = verify_groups(&chain.presented(), &groups, Some("dev1"), NOW, &limits).unwrap();
    assert_eq!((found.group, found.device.matched), (2, 0));
}

#[test]
fn the_group_certificate_closest_to_the_leaf_selects_the_group() {
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let groups = vec![
        vec![anchor(&chain.root, "root-group")],
        vec![anchor(&chain.intermediate, "intermediate-group")],
    ];
    let found = verify_groups(
        &chain.presented(),
        &groups,
        None,
        NOW,
        &ChainLimits::default(),
    )
    .unwrap();
    assert_eq!(found.group, 1);
}

fn constrained(path_len: u8) -> impl Fn(&mut CertificateParams) {
    move |p: &mut CertificateParams| p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len))
}

#[test]
fn path_length_constraints_are_enforced() {
    let root = Spec::ca("root", Alg::P256).self_signed();
    let zero = constrained(0);
    let one = constrained(1);
    for (limit, expected_ok) in [(&zero, false), (&one, true)] {
        let upper = Spec::ca("upper", Alg::P256).tweaked(limit).signed_by(&root);
        let lower = Spec::ca("lower", Alg::P256).signed_by(&upper);
        let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&lower);
        let result = verify_group(
            &[leaf.der(), lower.der(), upper.der()],
            &[&anchor(&root, "root")],
            Some("dev1"),
            NOW,
        );
        if expected_ok {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert_eq!(
                result,
                Err(AttestationError::PathLengthExceeded {
                    subject: "CN=upper, O=dps tests".to_owned(),
                    path_len: 0,
                    below: 1,
                })
            );
        }
    }
    // The anchor's own constraint holds too.
    let strict_root = Spec::ca("strict root", Alg::P256)
        .tweaked(&zero)
        .self_signed();
    let inter = Spec::ca("inter", Alg::P256).signed_by(&strict_root);
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&inter);
    assert_eq!(
        verify_group(
            &[leaf.der(), inter.der()],
            &[&anchor(&strict_root, "strict")],
            None,
            NOW
        ),
        Err(AttestationError::PathLengthExceeded {
            subject: "CN=strict root, O=dps tests".to_owned(),
            path_len: 0,
            below: 1,
        })
    );
}

#[test]
fn name_constraints_are_enforced() {
    let root = Spec::ca("root", Alg::P256).self_signed();
    let permit = |p: &mut CertificateParams| {
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName("devices.example".to_owned())],
            excluded_subtrees: vec![],
        });
    };
    let inter = Spec::ca("inter", Alg::P256)
        .tweaked(&permit)
        .signed_by(&root);
    let root_anchor = anchor(&root, "root");
    let with_name = |dns: &'static str| {
        move |p: &mut CertificateParams| {
            p.subject_alt_names = vec![SanType::DnsName(dns.try_into().unwrap())];
        }
    };
    let inside = with_name("dev1.devices.example");
    let leaf = Spec::leaf("dev1", Alg::P256)
        .tweaked(&inside)
        .signed_by(&inter);
    assert!(verify_group(&[leaf.der(), inter.der()], &[&root_anchor], None, NOW).is_ok());
    let outside = with_name("dev1.elsewhere.example");
    let leaf = Spec::leaf("dev1", Alg::P256)
        .tweaked(&outside)
        .signed_by(&inter);
    assert_eq!(
        verify_group(&[leaf.der(), inter.der()], &[&root_anchor], None, NOW),
        Err(AttestationError::NameConstraintViolation {
            constrained_by: "CN=inter, O=dps tests".to_owned()
        })
    );
}

#[test]
fn unknown_critical_extensions_are_refused() {
    let extension = |critical: bool| {
        move |p: &mut CertificateParams| {
            // 1.3.6.1.4.1.55555.1, an OCTET STRING nobody processes.
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![4, 0]);
            ext.set_criticality(critical);
            p.custom_extensions.push(ext);
        }
    };
    let (critical, harmless) = (extension(true), extension(false));
    let chain = Chain::new(Alg::P256, Alg::P256, Alg::P256);
    let root = anchor(&chain.root, "root");

    let leaf = Spec::leaf("dev1", Alg::P256)
        .tweaked(&harmless)
        .signed_by(&chain.intermediate);
    assert!(verify_group(&[leaf.der(), chain.intermediate.der()], &[&root], None, NOW).is_ok());

    let leaf = Spec::leaf("dev1", Alg::P256)
        .tweaked(&critical)
        .signed_by(&chain.intermediate);
    assert_eq!(
        verify_group(&[leaf.der(), chain.intermediate.der()], &[&root], None, NOW),
        Err(AttestationError::UnsupportedCriticalExtension {
            subject: "CN=dev1".to_owned(),
            oid: "1.3.6.1.4.1.55555.1".to_owned(),
        })
    );

    let inter = Spec::ca("inter", Alg::P256)
        .tweaked(&critical)
        .signed_by(&chain.root);
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(&inter);
    assert_eq!(
        verify_group(&[leaf.der(), inter.der()], &[&root], None, NOW),
        Err(AttestationError::UnsupportedCriticalExtension {
            subject: "CN=inter, O=dps tests".to_owned(),
            oid: "1.3.6.1.4.1.55555.1".to_owned(),
        })
    );
}

#[test]
fn path_depth_is_capped() {
    let root = Spec::ca("root", Alg::P256).self_signed();
    let mut issuers = vec![root];
    for i in 0..6 {
        let next = Spec::ca(&format!("level {i}"), Alg::P256).signed_by(issuers.last().unwrap());
        issuers.push(next);
    }
    let leaf = Spec::leaf("dev1", Alg::P256).signed_by(issuers.last().unwrap());
    let mut presented = vec![leaf.der()];
    presented.extend(issuers[1..].iter().rev().map(Issued::der));
    let groups = [vec![anchor(&issuers[0], "root")]];
    let deep = ChainLimits {
        max_path_depth: 6,
        ..ChainLimits::default()
    };
    assert!(verify_groups(&presented, &groups, None, NOW, &deep).is_ok());
    assert_eq!(
        verify_groups(&presented, &groups, None, NOW, &ChainLimits::default()),
        Err(AttestationError::PathTooDeep { max: 5 })
    );
    let short = ChainLimits {
        max_chain_certificates: 6,
        ..deep
    };
    assert_eq!(
        verify_groups(&presented, &groups, None, NOW, &short),
        Err(AttestationError::ChainTooLong {
            presented: 7,
            max: 6
        })
    );
}
