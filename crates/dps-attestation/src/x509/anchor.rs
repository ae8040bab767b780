//! Trust anchors: group signing certificates and verified CA certificates,
//! parsed once so that the service can cache them between registrations.

use dps_model::X509CertificateInfo;
use x509_parser::der_parser::oid::Oid;

use super::certificate::{can_issue, check_period, info_of, parse_der, to_der};
use super::name::format_name;
use super::signature::{key_kind, IssuerKey, KeyKind};
use crate::AttestationError;

/// A certificate that ends a group chain: an enrollment group's signing
/// certificate or a CA certificate named by `caReferences`.
///
/// Build it once per stored certificate ([`TrustAnchor::new`]) and reuse it;
/// it keeps only what verification needs. `verified` says whether the
/// certificate may be trusted: CA certificates are verified by proof of
/// possession (or uploaded as verified); the service decides what applies to
/// certificates uploaded directly into a group.
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    name: String,
    verified: bool,
    der: Vec<u8>,
    subject: String,
    subject_raw: Vec<u8>,
    key_kind: KeyKind,
    key_bytes: Vec<u8>,
    key_algorithm: Oid<'static>,
    not_before: i64,
    not_after: i64,
    can_issue: bool,
    info: X509CertificateInfo,
}

impl TrustAnchor {
    /// Parse an anchor from PEM, base64 DER or DER. `name` identifies it in
    /// errors (e.g. the CA certificate's name, or `group-id/primary`).
    pub fn new(
        certificate: impl AsRef<[u8]>,
        name: impl Into<String>,
        verified: bool,
    ) -> Result<Self, AttestationError> {
        let name = name.into();
        let which = format!("trust anchor {name:?}");
        let der = to_der(certificate.as_ref(), &which)?.into_owned();
        let cert = parse_der(&der, &which)?;
        let spki = cert.public_key();
        let anchor = TrustAnchor {
            verified,
            subject: format_name(cert.subject()),
            subject_raw: cert.subject().as_raw().to_vec(),
            key_kind: key_kind(spki),
            key_bytes: spki.subject_public_key.data.to_vec(),
            key_algorithm: spki.algorithm.algorithm.to_owned(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            can_issue: can_issue(&cert),
            info: info_of(&der, &cert),
            name,
            der: Vec::new(),
        };
        Ok(TrustAnchor { der, ..anchor })
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the anchor may be trusted.
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// Details for `registrationState.x509.signingCertificateInfo`.
    pub fn info(&self) -> &X509CertificateInfo {
        &self.info
    }

    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    pub(crate) fn subject_raw(&self) -> &[u8] {
        &self.subject_raw
    }

    pub(crate) fn key(&self) -> IssuerKey<'_> {
        IssuerKey {
            kind: self.key_kind,
            bytes: &self.key_bytes,
            algorithm: &self.key_algorithm,
        }
    }

    pub(crate) fn can_issue(&self) -> bool {
        self.can_issue
    }

    pub(crate) fn check_validity(&self, now: u64) -> Result<(), AttestationError> {
        check_period(self.not_before, self.not_after, now, || {
            self.subject.clone()
        })
    }
}
