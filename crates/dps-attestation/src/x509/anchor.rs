//! Trust anchors: group signing certificates and verified CA certificates,
//! parsed once so that the service can cache them between registrations.

use dps_model::X509CertificateInfo;
use rustls_pki_types::{CertificateDer, Der};
use x509_parser::certificate::X509Certificate;

use super::certificate::{
    can_issue, check_period, info_of, parse_der, path_len_constraint, to_der,
};
use super::der::content_of;
use super::name::format_name;
use crate::AttestationError;

/// A certificate that ends a group chain: an enrollment group's signing
/// certificate or a CA certificate named by `caReferences`.
///
/// Build it once per stored certificate ([`TrustAnchor::new`]) and reuse it;
/// it keeps only what verification needs. `verified` says whether the
/// certificate may be trusted: CA certificates are verified by proof of
/// possession; the service decides what applies to certificates uploaded
/// directly into a group.
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    name: String,
    verified: bool,
    der: Vec<u8>,
    subject: String,
    subject_raw: Vec<u8>,
    not_before: i64,
    not_after: i64,
    can_issue: bool,
    path_len: Option<u32>,
    info: X509CertificateInfo,
    /// Subject, key and name constraints as rustls-webpki takes them.
    webpki: rustls_pki_types::TrustAnchor<'static>,
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
        let anchor = TrustAnchor {
            verified,
            subject: format_name(cert.subject()),
            subject_raw: cert.subject().as_raw().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            can_issue: can_issue(&cert),
            path_len: path_len_constraint(&cert),
            info: info_of(&der, &cert),
            webpki: webpki_anchor(&der, &cert, &which)?,
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

    pub(crate) fn can_issue(&self) -> bool {
        self.can_issue
    }

    /// basicConstraints pathLenConstraint: most intermediates allowed below.
    pub(crate) fn path_len(&self) -> Option<u32> {
        self.path_len
    }

    /// The anchor as rustls-webpki takes it, borrowing from `self`.
    pub(crate) fn webpki(&self) -> rustls_pki_types::TrustAnchor<'_> {
        rustls_pki_types::TrustAnchor {
            subject: Der::from(self.webpki.subject.as_ref()),
            subject_public_key_info: Der::from(self.webpki.subject_public_key_info.as_ref()),
            name_constraints: self
                .webpki
                .name_constraints
                .as_ref()
                .map(|nc| Der::from(nc.as_ref())),
        }
    }

    /// Whether the anchor certificate carries name constraints.
    pub(crate) fn has_name_constraints(&self) -> bool {
        self.webpki.name_constraints.is_some()
    }

    /// The bytes webpki reads this anchor's public key from.
    pub(crate) fn webpki_key_bytes(&self) -> &[u8] {
        self.webpki.subject_public_key_info.as_ref()
    }

    pub(crate) fn check_validity(&self, now: u64) -> Result<(), AttestationError> {
        check_period(self.not_before, self.not_after, now, || {
            self.subject.clone()
        })
    }
}

/// webpki's view of an anchor certificate: its subject, key and name
/// constraints. webpki reads them from the certificate itself; should it
/// refuse one that x509-parser took (an administrator's CA is trusted as
/// uploaded, whatever else it carries), the subject and key alone do.
fn webpki_anchor(
    der: &[u8],
    cert: &X509Certificate<'_>,
    which: &str,
) -> Result<rustls_pki_types::TrustAnchor<'static>, AttestationError> {
    let certificate = CertificateDer::from(der);
    if let Ok(anchor) = webpki::anchor_from_trusted_cert(&certificate) {
        return Ok(anchor.to_owned());
    }
    let malformed = || AttestationError::MalformedCertificate {
        which: which.to_owned(),
        reason: "subject or public key is not DER".to_owned(),
    };
    let subject = content_of(cert.subject().as_raw()).ok_or_else(malformed)?;
    let spki = content_of(cert.public_key().raw).ok_or_else(malformed)?;
    Ok(rustls_pki_types::TrustAnchor {
        subject: Der::from(subject.to_vec()),
        subject_public_key_info: Der::from(spki.to_vec()),
        name_constraints: None,
    })
}
