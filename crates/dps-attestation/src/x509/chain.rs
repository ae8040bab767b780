//! Group (CA) attestation: from the leaf through the presented intermediates
//! to a trust anchor, built by rustls-webpki within [`ChainLimits`].
//!
//! webpki decides the path and checks it: signatures, validity periods of the
//! leaf and intermediates, basicConstraints (CA flag, pathLenConstraint),
//! name constraints, unknown critical extensions, at most six intermediates.
//! At every step it tries the anchors before the presented certificates, so
//! the group certificate closest to the leaf is the one reached, as DPS
//! documents ("the first certificate of the chain that is a group's …").
//!
//! What dps adds, and why:
//! * caps on presented certificates, path depth and signature checks (one
//!   budget for every anchor of every group), so that a crafted chain costs a
//!   bounded, small amount of CPU;
//! * the leaf CN is the registration id (DPS's rule);
//! * the anchor must be verified (proof of possession), valid now and a CA
//!   with keyCertSign, and its own pathLenConstraint must hold: webpki takes
//!   an anchor as a bare name and key, but DPS anchors are uploaded
//!   certificates, and an expired or unverified CA certificate admits no
//!   device (the builder before webpki checked the same);
//! * an intermediate with a keyUsage extension must allow keyCertSign (webpki
//!   ignores keyUsage; the builder before it did not);
//! * extended key usage is not checked (see `meter.rs`);
//! * errors name the certificate at fault (see `diagnose.rs`).

use std::borrow::Borrow;
use std::cell::RefCell;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, VerifiedPath};
use x509_parser::certificate::X509Certificate;

use super::anchor::TrustAnchor;
use super::certificate::{can_issue, check_validity, info_of, parse_der, subject_common_name};
use super::diagnose::Diagnosis;
use super::limits::{ChainLimits, MAX_PATH_DEPTH};
use super::meter::{Meter, PathSteps};
use super::name::format_name;
use super::signature_cache::SignatureCache;
use super::VerifiedDevice;
use crate::AttestationError;

/// Which group a chain was accepted by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMatch {
    /// Index of the group in the `groups` given to [`verify_groups`].
    pub group: usize,
    /// The device; [`VerifiedDevice::matched`] is the index of the anchor
    /// within that group.
    pub device: VerifiedDevice,
}

/// Verify a TLS client chain (DER, leaf first) against the trust anchors of
/// one group, with the default [`ChainLimits`]. See [`verify_groups`].
///
/// On success, [`VerifiedDevice::matched`] is the index of the anchor reached.
pub fn verify_group<C: AsRef<[u8]>>(
    chain: &[C],
    anchors: &[&TrustAnchor],
    registration_id: Option<&str>,
    now: u64,
) -> Result<VerifiedDevice, AttestationError> {
    verify_groups(
        chain,
        &[anchors],
        registration_id,
        now,
        &ChainLimits::default(),
    )
    .map(|found| found.device)
}

/// Verify a TLS client chain (DER, leaf first) against the trust anchors of
/// every X.509 group of a tenant at once, within `limits`.
///
/// The chain may or may not include the anchor itself, and its order beyond
/// the leaf does not matter. Every certificate on the path must be valid at
/// `now` and signed by the next; issuers must be CAs; the anchor reached must
/// be verified. When `registration_id` is given (the id the device asked for
/// in the path or MQTT user name), the leaf's CN must equal it, ignoring
/// ASCII case.
///
/// A chain longer than `limits.max_chain_certificates` is refused before
/// anything is parsed; the whole call performs at most
/// `limits.max_signature_checks` signature checks and considers at most
/// `limits.max_path_steps` certificates as path steps.
///
/// Signature checks that succeeded before, in this process, are answered
/// from a bounded cache (see [`signature_cache_stats`](super::signature_cache_stats)):
/// every other check runs again, and the budget counts them all the same.
pub fn verify_groups<C, G, T>(
    chain: &[C],
    groups: &[G],
    registration_id: Option<&str>,
    now: u64,
    limits: &ChainLimits,
) -> Result<GroupMatch, AttestationError>
where
    C: AsRef<[u8]>,
    G: AsRef<[T]>,
    T: Borrow<TrustAnchor>,
{
    verify_groups_with(
        chain,
        groups,
        registration_id,
        now,
        limits,
        SignatureCache::global(),
    )
}

/// [`verify_groups`] with the signature cache given (tests give their own).
pub(crate) fn verify_groups_with<C, G, T>(
    chain: &[C],
    groups: &[G],
    registration_id: Option<&str>,
    now: u64,
    limits: &ChainLimits,
    cache: &SignatureCache,
) -> Result<GroupMatch, AttestationError>
where
    C: AsRef<[u8]>,
    G: AsRef<[T]>,
    T: Borrow<TrustAnchor>,
{
    if chain.is_empty() {
        return Err(AttestationError::EmptyChain);
    }
    if chain.len() > limits.max_chain_certificates {
        return Err(AttestationError::ChainTooLong {
            presented: chain.len(),
            max: limits.max_chain_certificates,
        });
    }
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse_der(der.as_ref(), &format!("chain[{i}]")))
        .collect::<Result<_, _>>()?;
    let leaf = &parsed[0];
    let common_name = subject_common_name(leaf)?;
    if let Some(expected) = registration_id {
        if !common_name.eq_ignore_ascii_case(expected) {
            return Err(AttestationError::CommonNameMismatch {
                expected: expected.to_owned(),
                actual: common_name,
            });
        }
    }
    check_validity(leaf, now)?;

    let slots: Vec<Slot<'_>> = groups
        .iter()
        .enumerate()
        .flat_map(|(group, anchors)| {
            anchors
                .as_ref()
                .iter()
                .enumerate()
                .map(move |(index, anchor)| Slot {
                    group,
                    index,
                    anchor: anchor.borrow(),
                })
        })
        .collect();
    let trust: Vec<rustls_pki_types::TrustAnchor<'_>> =
        slots.iter().map(|slot| slot.anchor.webpki()).collect();
    let max_depth = limits.max_path_depth.min(MAX_PATH_DEPTH);
    let meter = Meter::new(limits.max_signature_checks, cache);
    let steps = PathSteps::new(limits.max_path_steps);
    let diagnosis = Diagnosis {
        chain,
        parsed: &parsed,
        anchors: &slots,
        meter: &meter,
        steps: &steps,
        now,
        max_depth,
    };

    let ders: Vec<CertificateDer<'_>> = chain
        .iter()
        .map(|der| CertificateDer::from(der.as_ref()))
        .collect();
    let end_entity = EndEntityCert::try_from(&ders[0]).map_err(|e| diagnosis.explain(e))?;
    let metered = meter.algorithms();
    let algorithms: Vec<&dyn SignatureVerificationAlgorithm> = metered
        .iter()
        .map(|m| m as &dyn SignatureVerificationAlgorithm)
        .collect();
    let rules = AnchorRules {
        trust: &trust,
        slots: &slots,
        chain,
        parsed: &parsed,
        now,
        max_depth,
        refusal: RefCell::new(None),
    };
    let check_path = |path: &VerifiedPath<'_>| rules.check(path);
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now));
    let verified = end_entity.verify_for_usage(
        &algorithms,
        &trust,
        &ders[1..],
        time,
        &steps,
        None,
        Some(&check_path),
    );
    match verified {
        Ok(path) => {
            let slot = rules.slot_of(path.anchor()).ok_or_else(|| {
                AttestationError::ChainDoesNotReachAnchor {
                    subject: format_name(leaf.subject()),
                    issuer: format_name(leaf.issuer()),
                }
            })?;
            Ok(GroupMatch {
                group: slot.group,
                device: VerifiedDevice {
                    registration_id: common_name,
                    matched: slot.index,
                    leaf: info_of(chain[0].as_ref(), leaf),
                },
            })
        }
        // A spent budget is the reason the search stopped, whatever webpki
        // reports last; then an anchor refused by dps's own rules (unverified,
        // expired) tells the device more than any failure below it.
        Err(_) if meter.exhausted() || steps.exhausted() => Err(diagnosis.budget_spent()),
        Err(err) => Err(match rules.refusal.into_inner() {
            Some(refusal) => refusal,
            None => diagnosis.explain(err),
        }),
    }
}

/// One anchor of one group.
pub(crate) struct Slot<'a> {
    pub(crate) group: usize,
    pub(crate) index: usize,
    pub(crate) anchor: &'a TrustAnchor,
}

/// The checks dps adds to a path webpki found (see the module comment).
struct AnchorRules<'a, C> {
    trust: &'a [rustls_pki_types::TrustAnchor<'a>],
    slots: &'a [Slot<'a>],
    chain: &'a [C],
    parsed: &'a [X509Certificate<'a>],
    now: u64,
    max_depth: usize,
    /// The most telling refusal so far.
    refusal: RefCell<Option<AttestationError>>,
}

impl<C: AsRef<[u8]>> AnchorRules<'_, C> {
    fn slot_of(&self, anchor: &rustls_pki_types::TrustAnchor<'_>) -> Option<&Slot<'_>> {
        let at = self.trust.iter().position(|t| std::ptr::eq(t, anchor))?;
        self.slots.get(at)
    }

    /// Accept the path, or record why not and let webpki look for another.
    fn check(&self, path: &VerifiedPath<'_>) -> Result<(), webpki::Error> {
        let Err(refusal) = self.refusal_of(path) else {
            return Ok(());
        };
        let mut kept = self.refusal.borrow_mut();
        if kept.as_ref().is_none_or(|k| rank(k) < rank(&refusal)) {
            *kept = Some(refusal);
        }
        Err(webpki::Error::UnknownIssuer)
    }

    fn refusal_of(&self, path: &VerifiedPath<'_>) -> Result<(), AttestationError> {
        let Some(slot) = self.slot_of(path.anchor()) else {
            return Err(AttestationError::ChainDoesNotReachAnchor {
                subject: format_name(self.parsed[0].subject()),
                issuer: format_name(self.parsed[0].issuer()),
            });
        };
        let anchor = slot.anchor;
        let mut intermediates = 0;
        for cert in path.intermediate_certificates() {
            intermediates += 1;
            let der = cert.der();
            let position = self
                .chain
                .iter()
                .position(|c| c.as_ref().as_ptr() == der.as_ref().as_ptr());
            if let Some(parsed) = position.and_then(|i| self.parsed.get(i)) {
                if !can_issue(parsed) {
                    return Err(AttestationError::NotACertificateAuthority {
                        subject: format_name(parsed.subject()),
                    });
                }
            }
        }
        if intermediates > self.max_depth {
            return Err(AttestationError::PathTooDeep {
                max: self.max_depth,
            });
        }
        if !anchor.is_verified() {
            return Err(AttestationError::CaNotVerified {
                name: anchor.name().to_owned(),
            });
        }
        anchor.check_validity(self.now)?;
        if !anchor.can_issue() {
            return Err(AttestationError::NotACertificateAuthority {
                subject: anchor.subject().to_owned(),
            });
        }
        match anchor.path_len() {
            Some(path_len) if intermediates > path_len as usize => {
                Err(AttestationError::PathLengthExceeded {
                    subject: anchor.subject().to_owned(),
                    path_len,
                    below: intermediates,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Which refusal of an anchor tells the device most: one about the CA's
/// standing (unverified, expired) beats one about the path.
fn rank(err: &AttestationError) -> u8 {
    match err {
        AttestationError::CaNotVerified { .. } => 2,
        AttestationError::CertificateExpired { .. }
        | AttestationError::CertificateNotYetValid { .. } => 1,
        _ => 0,
    }
}
