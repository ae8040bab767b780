//! Group (CA) attestation: from the leaf through the presented intermediates
//! to a trust anchor.

use x509_parser::certificate::X509Certificate;

use super::anchor::TrustAnchor;
use super::certificate::{can_issue, check_validity, info_of, parse_der, subject_common_name};
use super::name::format_name;
use super::signature::{key_kind, verify_certificate_signature, IssuerKey};
use super::VerifiedDevice;
use crate::AttestationError;

/// Verify a TLS client chain (DER, leaf first) against the trust anchors of
/// one or more enrollment groups.
///
/// Starting at the leaf, each certificate's issuer is looked for first among
/// `anchors`, then among the not yet used certificates of the chain (so the
/// chain may or may not include the anchor itself, and its order beyond the
/// leaf does not matter). Every certificate on the path must be valid at `now`
/// and correctly signed by the next, and every issuer (intermediates and the
/// anchor) must be a CA. The anchor reached must be verified.
///
/// When `registration_id` is given (the id the device asked for in the path
/// or MQTT user name), the leaf's CN must equal it, ignoring ASCII case.
///
/// On success, [`VerifiedDevice::matched`] is the index of the anchor reached.
pub fn verify_group<C: AsRef<[u8]>>(
    chain: &[C],
    anchors: &[&TrustAnchor],
    registration_id: Option<&str>,
    now: u64,
) -> Result<VerifiedDevice, AttestationError> {
    if chain.is_empty() {
        return Err(AttestationError::EmptyChain);
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

    let mut used = vec![false; parsed.len()];
    used[0] = true;
    let mut current = 0;
    loop {
        let cert = &parsed[current];
        if let Some(index) = issuing_anchor(cert, anchors)? {
            let anchor = anchors[index];
            if !anchor.is_verified() {
                return Err(AttestationError::CaNotVerified {
                    name: anchor.name().to_owned(),
                });
            }
            anchor.check_validity(now)?;
            if !anchor.can_issue() {
                return Err(AttestationError::NotACertificateAuthority {
                    subject: anchor.subject().to_owned(),
                });
            }
            return Ok(VerifiedDevice {
                registration_id: common_name,
                matched: index,
                leaf: info_of(chain[0].as_ref(), leaf),
            });
        }
        let issuer = issuing_chain_certificate(cert, &parsed, &used)?;
        let issuer_cert = &parsed[issuer];
        check_validity(issuer_cert, now)?;
        if !can_issue(issuer_cert) {
            return Err(AttestationError::NotACertificateAuthority {
                subject: format_name(issuer_cert.subject()),
            });
        }
        used[issuer] = true;
        current = issuer;
    }
}

/// The anchor whose subject is `cert`'s issuer and whose key signed it.
/// `Err` when some anchor has the right name but a signature that fails and
/// no other anchor fits.
fn issuing_anchor(
    cert: &X509Certificate<'_>,
    anchors: &[&TrustAnchor],
) -> Result<Option<usize>, AttestationError> {
    let issuer_raw = cert.issuer().as_raw();
    let mut failure = None;
    for (index, anchor) in anchors.iter().enumerate() {
        if anchor.subject_raw() != issuer_raw {
            continue;
        }
        match verify_certificate_signature(cert, anchor.key(), || anchor.subject().to_owned()) {
            Ok(()) => return Ok(Some(index)),
            Err(e) => failure = Some(e),
        }
    }
    failure.map_or(Ok(None), Err)
}

/// The unused chain certificate whose subject is `cert`'s issuer and whose key
/// signed it.
fn issuing_chain_certificate(
    cert: &X509Certificate<'_>,
    chain: &[X509Certificate<'_>],
    used: &[bool],
) -> Result<usize, AttestationError> {
    let issuer_raw = cert.issuer().as_raw();
    let mut failure = None;
    for (index, candidate) in chain.iter().enumerate() {
        if used[index] || candidate.subject().as_raw() != issuer_raw {
            continue;
        }
        let spki = candidate.public_key();
        let key = IssuerKey {
            kind: key_kind(spki),
            bytes: &spki.subject_public_key.data,
            algorithm: &spki.algorithm.algorithm,
        };
        match verify_certificate_signature(cert, key, || format_name(candidate.subject())) {
            Ok(()) => return Ok(index),
            Err(e) => failure = Some(e),
        }
    }
    Err(
        failure.unwrap_or_else(|| AttestationError::ChainDoesNotReachAnchor {
            subject: format_name(cert.subject()),
            issuer: format_name(cert.issuer()),
        }),
    )
}
