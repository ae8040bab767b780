//! Naming the certificate at fault when webpki refuses a chain.
//!
//! webpki's errors say what failed, not where. The device (and the operator
//! reading the log) needs the subject, so the failure is placed by a cheap
//! walk over names: from the leaf, each issuer is looked for among the anchors
//! and then the not yet used presented certificates (no signatures; the chain
//! has at most `max_chain_certificates` entries). Signature failures are
//! placed exactly, from the meter's record of the failing check.

use webpki::Error as Wp;
use x509_parser::certificate::X509Certificate;

use super::certificate::{check_validity, path_len_constraint};
use super::chain::Slot;
use super::meter::{within, Meter, PathSteps};
use super::name::format_name;
use crate::AttestationError;

/// Critical extensions webpki processes (id-ce 15, 17, 19, 30, 31, 37); any
/// other critical extension makes it refuse the certificate.
const UNDERSTOOD: [&str; 6] = [
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.19",
    "2.5.29.30",
    "2.5.29.31",
    "2.5.29.37",
];

/// Signature algorithms accepted (see `meter.rs`), dotted.
const SIGNATURE_ALGORITHMS: [&str; 6] = [
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
    "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3",
    "1.3.101.112",
];

/// One step of the name walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Presented(usize),
    Anchor(usize),
}

pub(crate) struct Diagnosis<'a, C> {
    pub(crate) chain: &'a [C],
    pub(crate) parsed: &'a [X509Certificate<'a>],
    pub(crate) anchors: &'a [Slot<'a>],
    pub(crate) meter: &'a Meter<'a>,
    pub(crate) steps: &'a PathSteps,
    pub(crate) now: u64,
    pub(crate) max_depth: usize,
}

impl<C: AsRef<[u8]>> Diagnosis<'_, C> {
    /// The error to report for webpki's `err`.
    pub(crate) fn explain(&self, err: Wp) -> AttestationError {
        let walk = self.walk();
        let on_path = || {
            walk.iter()
                .filter_map(|s| match s {
                    Step::Presented(i) => Some(*i),
                    Step::Anchor(_) => None,
                })
                .chain(0..self.parsed.len())
        };
        let subject = |i: usize| format_name(self.parsed[i].subject());
        #[allow(deprecated)] // the deprecated variants are still what older paths return
        match err {
            Wp::CertExpired { .. } | Wp::CertNotValidYet { .. } => on_path()
                .find_map(|i| check_validity(&self.parsed[i], self.now).err())
                .unwrap_or_else(|| self.rejected(0, &err)),
            Wp::InvalidSignatureForPublicKey => self
                .bad_signature()
                .unwrap_or_else(|| self.rejected(0, &err)),
            Wp::EndEntityUsedAsCa => on_path()
                .filter(|&i| i > 0)
                .find(|&i| !is_ca(&self.parsed[i]))
                .map_or_else(
                    || self.rejected(0, &err),
                    |i| AttestationError::NotACertificateAuthority {
                        subject: subject(i),
                    },
                ),
            Wp::CaUsedAsEndEntity => AttestationError::CertificateRejected {
                subject: subject(0),
                reason:
                    "a CA certificate (basicConstraints CA=true) cannot be a device certificate"
                        .to_owned(),
            },
            Wp::PathLenConstraintViolated => {
                self.path_length().unwrap_or_else(|| self.rejected(0, &err))
            }
            Wp::NameConstraintViolation => AttestationError::NameConstraintViolation {
                constrained_by: self.constraining_ca(&walk),
            },
            Wp::UnsupportedCriticalExtension => (0..self.parsed.len())
                .find_map(|i| {
                    unknown_critical_extension(&self.parsed[i]).map(|oid| {
                        AttestationError::UnsupportedCriticalExtension {
                            subject: subject(i),
                            oid,
                        }
                    })
                })
                .unwrap_or_else(|| self.rejected(0, &err)),
            Wp::UnsupportedSignatureAlgorithm
            | Wp::UnsupportedSignatureAlgorithmContext(_)
            | Wp::UnsupportedSignatureAlgorithmForPublicKey
            | Wp::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
                let at = on_path()
                    .find(|&i| {
                        let oid = self.parsed[i].signature_algorithm.algorithm.to_id_string();
                        !SIGNATURE_ALGORITHMS.contains(&oid.as_str())
                    })
                    .unwrap_or(0);
                AttestationError::UnsupportedSignatureAlgorithm {
                    subject: subject(at),
                    algorithm: self.parsed[at].signature_algorithm.algorithm.to_id_string(),
                }
            }
            Wp::MaximumPathDepthExceeded => AttestationError::PathTooDeep {
                max: self.max_depth,
            },
            Wp::MaximumSignatureChecksExceeded
            | Wp::MaximumPathBuildCallsExceeded
            | Wp::MaximumNameConstraintComparisonsExceeded => self.budget_spent(),
            Wp::UnknownIssuer => {
                let last = walk
                    .iter()
                    .rev()
                    .find_map(|s| match s {
                        Step::Presented(i) => Some(*i),
                        Step::Anchor(_) => None,
                    })
                    .unwrap_or(0);
                AttestationError::ChainDoesNotReachAnchor {
                    subject: subject(last),
                    issuer: format_name(self.parsed[last].issuer()),
                }
            }
            other => {
                // A certificate webpki cannot take at all: name the first one
                // it refuses on its own.
                let at = (0..self.chain.len())
                    .find(|&i| {
                        let der = rustls_pki_types::CertificateDer::from(self.chain[i].as_ref());
                        webpki::EndEntityCert::try_from(&der).is_err()
                    })
                    .unwrap_or(0);
                self.rejected(at, &other)
            }
        }
    }

    /// The refusal of a search stopped for want of budget.
    pub(crate) fn budget_spent(&self) -> AttestationError {
        AttestationError::VerificationBudgetExhausted {
            signature_checks: self.meter.performed(),
            path_steps: self.steps.taken(),
        }
    }

    fn rejected(&self, at: usize, err: &Wp) -> AttestationError {
        let reason = match err {
            Wp::UnsupportedCertVersion => {
                "only version 3 certificates are accepted in a group chain".to_owned()
            }
            Wp::SignatureAlgorithmMismatch => {
                "the signature algorithm differs from the one the certificate names".to_owned()
            }
            Wp::InvalidSignatureForPublicKey => "a signature does not verify".to_owned(),
            other => format!("{other:?}"),
        };
        AttestationError::CertificateRejected {
            subject: format_name(self.parsed[at].subject()),
            reason,
        }
    }

    /// From the leaf, follow issuer names: anchors first, then unused
    /// presented certificates (first match).
    fn walk(&self) -> Vec<Step> {
        let mut used = vec![false; self.parsed.len()];
        used[0] = true;
        let mut steps = vec![Step::Presented(0)];
        let mut current = 0;
        loop {
            let issuer = self.parsed[current].issuer().as_raw();
            if let Some(k) = self
                .anchors
                .iter()
                .position(|slot| slot.anchor.subject_raw() == issuer)
            {
                steps.push(Step::Anchor(k));
                return steps;
            }
            let next = (0..self.parsed.len())
                .find(|&i| !used[i] && self.parsed[i].subject().as_raw() == issuer);
            match next {
                Some(i) => {
                    used[i] = true;
                    steps.push(Step::Presented(i));
                    current = i;
                }
                None => return steps,
            }
        }
    }

    /// The failing check the meter recorded, as (certificate, issuer).
    fn bad_signature(&self) -> Option<AttestationError> {
        let check = self.meter.last_failure()?;
        let subject = (0..self.chain.len())
            .find(|&i| within(check.message, self.chain[i].as_ref()))
            .map(|i| format_name(self.parsed[i].subject()))?;
        let issuer = (0..self.chain.len())
            .find(|&i| within(check.key, self.chain[i].as_ref()))
            .map(|i| format_name(self.parsed[i].subject()))
            .or_else(|| {
                self.anchors
                    .iter()
                    .find(|slot| within(check.key, slot.anchor.webpki_key_bytes()))
                    .map(|slot| slot.anchor.subject().to_owned())
            })?;
        Some(AttestationError::BadCertificateSignature { subject, issuer })
    }

    /// The CA on the walk whose pathLenConstraint the certificates below it exceed.
    fn path_length(&self) -> Option<AttestationError> {
        self.walk()
            .iter()
            .enumerate()
            .skip(1)
            .find_map(|(position, step)| {
                let Step::Presented(i) = *step else {
                    return None;
                };
                let path_len = path_len_constraint(&self.parsed[i])?;
                let below = position - 1;
                (below > path_len as usize).then(|| AttestationError::PathLengthExceeded {
                    subject: format_name(self.parsed[i].subject()),
                    path_len,
                    below,
                })
            })
    }

    /// The CA whose name constraints apply: the first on the walk carrying
    /// some, else an anchor carrying some.
    fn constraining_ca(&self, walk: &[Step]) -> String {
        walk.iter()
            .skip(1)
            .find_map(|step| match *step {
                Step::Presented(i) => matches!(self.parsed[i].name_constraints(), Ok(Some(_)))
                    .then(|| format_name(self.parsed[i].subject())),
                Step::Anchor(k) => self.anchors[k]
                    .anchor
                    .has_name_constraints()
                    .then(|| self.anchors[k].anchor.subject().to_owned()),
            })
            .or_else(|| {
                self.anchors
                    .iter()
                    .find(|slot| slot.anchor.has_name_constraints())
                    .map(|slot| slot.anchor.subject().to_owned())
            })
            .unwrap_or_else(|| "a CA of the chain".to_owned())
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// The OID of the first critical extension webpki does not process.
fn unknown_critical_extension(cert: &X509Certificate<'_>) -> Option<String> {
    cert.extensions()
        .iter()
        .filter(|ext| ext.critical)
        .map(|ext| ext.oid.to_id_string())
        .find(|oid| !UNDERSTOOD.contains(&oid.as_str()))
}
