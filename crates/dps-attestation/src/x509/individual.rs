//! Individual X.509 enrollments: the device's own certificate is enrolled.

use dps_model::{X509CertificateWithInfo, X509Certificates};

use super::certificate::{
    check_validity, info_of, parse_der, sha1_thumbprint, sha256_thumbprint, subject_common_name,
    thumbprints_equal, to_der,
};
use super::VerifiedDevice;
use crate::AttestationError;

/// Verify a TLS client chain (DER, leaf first) against an individual
/// enrollment's `attestation.x509.clientCertificates`.
///
/// The leaf must be the primary or the secondary certificate: compared by
/// SHA-256 of the DER when the enrollment stores the certificate, or by the
/// stored `info` thumbprint (SHA-256 or SHA-1) when it stores only that. It
/// must be valid at `now`, and its subject CN must equal the enrollment's
/// `registration_id`, ignoring ASCII case. Certificates after the leaf are not
/// looked at: the enrolled certificate itself is what is trusted.
///
/// On success, [`VerifiedDevice::matched`] is 0 for primary, 1 for secondary.
pub fn verify_individual<C: AsRef<[u8]>>(
    chain: &[C],
    client_certificates: &X509Certificates,
    registration_id: &str,
    now: u64,
) -> Result<VerifiedDevice, AttestationError> {
    let leaf_der = chain.first().ok_or(AttestationError::EmptyChain)?.as_ref();
    let leaf = parse_der(leaf_der, "chain[0]")?;
    let sha256 = sha256_thumbprint(leaf_der);
    let slots = [&client_certificates.primary, &client_certificates.secondary];
    let matched = slots
        .iter()
        .position(|slot| {
            slot.as_ref()
                .is_some_and(|enrolled| is_enrolled(enrolled, leaf_der, &sha256))
        })
        .ok_or_else(|| AttestationError::CertificateNotEnrolled {
            sha256_thumbprint: sha256.clone(),
        })?;
    check_validity(&leaf, now)?;
    let common_name = subject_common_name(&leaf)?;
    if !common_name.eq_ignore_ascii_case(registration_id) {
        return Err(AttestationError::CommonNameMismatch {
            expected: registration_id.to_owned(),
            actual: common_name,
        });
    }
    Ok(VerifiedDevice {
        registration_id: common_name,
        matched,
        leaf: info_of(leaf_der, &leaf),
    })
}

/// Does the enrolled certificate (or its stored info) designate this leaf?
/// A stored certificate that does not decode designates nothing.
fn is_enrolled(enrolled: &X509CertificateWithInfo, leaf_der: &[u8], leaf_sha256: &str) -> bool {
    if let Some(text) = &enrolled.certificate {
        return to_der(text.as_bytes(), "enrolled certificate")
            .is_ok_and(|der| sha256_thumbprint(&der) == leaf_sha256);
    }
    let Some(info) = &enrolled.info else {
        return false;
    };
    if !info.sha256_thumbprint.is_empty() {
        thumbprints_equal(&info.sha256_thumbprint, leaf_sha256)
    } else if !info.sha1_thumbprint.is_empty() {
        thumbprints_equal(&info.sha1_thumbprint, &sha1_thumbprint(leaf_der))
    } else {
        false
    }
}
