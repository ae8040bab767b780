//! Decoding certificates from the forms clients send, and what the service
//! reports about them.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use chrono::DateTime;
use dps_model::X509CertificateInfo;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::der::{check_unsigned_framing, content_of};
use super::name::{common_name, format_name};
use crate::AttestationError;

/// Standard alphabet; padding optional, since hand-pasted base64 often lacks it.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The DER of a certificate given as PEM text (the first `-----BEGIN …
/// CERTIFICATE-----` block), as bare base64 DER (line breaks allowed), or as
/// raw DER. The result is checked to parse as one X.509 certificate.
pub fn decode_certificate(input: &[u8]) -> Result<Vec<u8>, AttestationError> {
    let der = to_der(input, "certificate")?;
    parse_der(&der, "certificate")?;
    Ok(der.into_owned())
}

/// Like [`decode_certificate`] without the parse check, borrowing raw DER.
/// `which` names the certificate in errors.
pub(crate) fn to_der<'a>(input: &'a [u8], which: &str) -> Result<Cow<'a, [u8]>, AttestationError> {
    let malformed = |reason: &str| AttestationError::MalformedCertificate {
        which: which.to_owned(),
        reason: reason.to_owned(),
    };
    // DER of a certificate starts with a SEQUENCE tag; text never does. DER
    // is taken as is: its last bytes may well look like whitespace.
    if input.first() == Some(&0x30) {
        return Ok(Cow::Borrowed(input));
    }
    let trimmed = input.trim_ascii();
    let text = std::str::from_utf8(trimmed).map_err(|_| malformed("neither DER nor text"))?;
    let block = text
        .find("-----BEGIN CERTIFICATE-----")
        .or_else(|| text.find("-----BEGIN"));
    let body = match block {
        Some(start) => {
            pem_body(&text[start..]).ok_or_else(|| malformed("unterminated PEM block"))?
        }
        None => text,
    };
    let compact: String = body
        .replace("\\r", "")
        .replace("\\n", "")
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(malformed("empty"));
    }
    LENIENT_BASE64
        .decode(compact.as_bytes())
        .map(Cow::Owned)
        .map_err(|_| malformed("not PEM and not valid base64"))
}

/// The base64 body of the PEM block that `text` starts with.
fn pem_body(text: &str) -> Option<&str> {
    let after_begin = text.get("-----BEGIN".len()..)?;
    let body = &after_begin[after_begin.find("-----")? + "-----".len()..];
    Some(&body[..body.find("-----END")?])
}

/// The subject, issuer and public key each frame exactly one DER element,
/// as building a trust anchor from the certificate requires: x509-parser lets
/// a name whose inner value overruns its SEQUENCE through, so without this a
/// CA could be stored that never anchors a chain (found by the `x509_der`
/// fuzz target). One strictness for every certificate, leaf or CA.
fn check_name_and_key_framing(cert: &X509Certificate<'_>) -> Result<(), &'static str> {
    let framed = [
        cert.subject().as_raw(),
        cert.issuer().as_raw(),
        cert.public_key().raw,
    ]
    .into_iter()
    .all(|raw| content_of(raw).is_some());
    if framed {
        Ok(())
    } else {
        Err("subject, issuer or public key is not DER")
    }
}

/// Parse one DER certificate with nothing after it.
pub(crate) fn parse_der<'a>(
    der: &'a [u8],
    which: &str,
) -> Result<X509Certificate<'a>, AttestationError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => match check_unsigned_framing(der, cert.tbs_certificate.as_ref())
            .and_then(|()| check_name_and_key_framing(&cert))
        {
            Ok(()) => Ok(cert),
            Err(reason) => Err(AttestationError::MalformedCertificate {
                which: which.to_owned(),
                reason: reason.to_owned(),
            }),
        },
        Ok(_) => Err(AttestationError::MalformedCertificate {
            which: which.to_owned(),
            reason: "trailing bytes after the certificate".to_owned(),
        }),
        Err(e) => Err(AttestationError::MalformedCertificate {
            which: which.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// The service's description of a certificate (PEM, base64 DER or DER).
pub fn certificate_info(input: &[u8]) -> Result<X509CertificateInfo, AttestationError> {
    let der = to_der(input, "certificate")?;
    let cert = parse_der(&der, "certificate")?;
    Ok(info_of(&der, &cert))
}

/// The subject CN of the first (leaf) certificate of a DER chain: the
/// registration id of an X.509 device.
pub fn leaf_common_name<C: AsRef<[u8]>>(chain: &[C]) -> Result<String, AttestationError> {
    let leaf = chain.first().ok_or(AttestationError::EmptyChain)?;
    let cert = parse_der(leaf.as_ref(), "chain[0]")?;
    subject_common_name(&cert)
}

pub(crate) fn subject_common_name(cert: &X509Certificate<'_>) -> Result<String, AttestationError> {
    common_name(cert.subject()).ok_or_else(|| AttestationError::MissingCommonName {
        subject: format_name(cert.subject()),
    })
}

pub(crate) fn info_of(der: &[u8], cert: &X509Certificate<'_>) -> X509CertificateInfo {
    let validity = cert.validity();
    X509CertificateInfo {
        subject_name: format_name(cert.subject()),
        sha1_thumbprint: sha1_thumbprint(der),
        sha256_thumbprint: sha256_thumbprint(der),
        issuer_name: format_name(cert.issuer()),
        not_before_utc: rfc3339(validity.not_before.timestamp()),
        not_after_utc: rfc3339(validity.not_after.timestamp()),
        serial_number: hex::encode_upper(cert.raw_serial()),
        version: i32::try_from(cert.version().0).map_or(i32::MAX, |v| v.saturating_add(1)),
    }
}

pub(crate) fn sha256_thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(der))
}

pub(crate) fn sha1_thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

/// `now` must fall within the certificate's validity period (both ends inclusive).
pub(crate) fn check_validity(cert: &X509Certificate<'_>, now: u64) -> Result<(), AttestationError> {
    let validity = cert.validity();
    check_period(
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
        now,
        || format_name(cert.subject()),
    )
}

/// [`check_validity`] over already extracted bounds (Unix seconds).
pub(crate) fn check_period(
    not_before: i64,
    not_after: i64,
    now: u64,
    subject: impl FnOnce() -> String,
) -> Result<(), AttestationError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    if now < not_before {
        Err(AttestationError::CertificateNotYetValid {
            subject: subject(),
            not_before: rfc3339(not_before),
            now: rfc3339(now),
        })
    } else if now > not_after {
        Err(AttestationError::CertificateExpired {
            subject: subject(),
            not_after: rfc3339(not_after),
            now: rfc3339(now),
        })
    } else {
        Ok(())
    }
}

/// May this certificate issue others? basicConstraints CA=true, and if it
/// restricts key usage, keyCertSign among them.
pub(crate) fn can_issue(cert: &X509Certificate<'_>) -> bool {
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let may_sign_certificates = match cert.key_usage() {
        Ok(Some(usage)) => usage.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    is_ca && may_sign_certificates
}

/// basicConstraints pathLenConstraint of a CA: how many intermediates may
/// follow it towards the leaf.
pub(crate) fn path_len_constraint(cert: &X509Certificate<'_>) -> Option<u32> {
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => bc.value.path_len_constraint,
        _ => None,
    }
}

/// `2024-05-01T12:00:00Z`.
pub(crate) fn rfc3339(unix: i64) -> String {
    match DateTime::from_timestamp(unix, 0) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => format!("@{unix}"),
    }
}

/// Thumbprints as administrators paste them: any case, maybe with `:` or spaces.
pub(crate) fn thumbprints_equal(stored: &str, computed: &str) -> bool {
    let mut stored = stored.bytes().filter(|b| b.is_ascii_hexdigit());
    let mut computed = computed.bytes();
    loop {
        match (stored.next(), computed.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1591921306), "2020-06-12T00:21:46Z");
    }

    #[test]
    fn thumbprint_comparison_tolerates_case_and_separators() {
        assert!(thumbprints_equal("ab:CD:01", "ABCD01"));
        assert!(!thumbprints_equal("ABCD", "ABCD01"));
        assert!(!thumbprints_equal("", "AB"));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [
            &b""[..],
            b"   ",
            b"-----BEGIN CERTIFICATE-----",
            b"!!!!",
            b"\x30\x03abc",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    decode_certificate(input),
                    Err(AttestationError::MalformedCertificate { .. })
                ),
                "{input:?}"
            );
        }
    }
}
