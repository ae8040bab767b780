//! The device side of certificate issuance (Azure DPS `2025-07-01-preview`,
//! stable `2026-04-01`): which api-versions know it, and the register
//! body's `csr` as the specification defines it (base64 of a DER PKCS#10
//! request, no PEM armour). The answer's `issuedCertificateChain` lives on
//! [`DeviceRegistrationResult`](crate::DeviceRegistrationResult).
//!
//! Grammar only: verifying the CSR's signature and key is the service's job.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::ModelError;

/// The first api-version whose register body may carry `csr` and whose
/// answer may carry `issuedCertificateChain`.
pub const FIRST_ISSUANCE_API_VERSION: &str = "2025-07-01-preview";

/// Largest DER CSR accepted, in bytes (an RSA-4096 request with a few
/// extensions is under 2 KiB).
pub const MAX_CSR_DER_BYTES: usize = 8 * 1024;

/// The `YYYY-MM-DD` date an api-version starts with (`2025-07-01-preview`
/// → 2025-07-01); `None` for anything else.
pub fn api_version_date(api_version: &str) -> Option<(u16, u8, u8)> {
    let date = api_version.trim().get(..10)?;
    let rest = &api_version.trim()[10..];
    if !(rest.is_empty() || rest.starts_with('-')) {
        return None;
    }
    let bytes = date.as_bytes();
    if bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u16> {
        let text = &date[range];
        text.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse().ok())
            .flatten()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month as u8, day as u8))
}

/// Whether a device using `api_version` may send `csr` and see
/// `issuedCertificateChain`: versions dated 2025-07-01 or later (the
/// `2025-07-01-preview`, `2026-04-01` and later documents). An unparsable
/// version is treated as older: it never sees the new field.
pub fn api_version_supports_issuance(api_version: &str) -> bool {
    api_version_date(api_version).is_some_and(|date| date >= (2025, 7, 1))
}

/// The DER bytes of a register body's `csr`: base64 (standard alphabet,
/// padding optional, whitespace ignored) of a DER PKCS#10 request. PEM
/// armour, other encodings, an empty value, more than
/// [`MAX_CSR_DER_BYTES`] or bytes that do not start a DER SEQUENCE are
/// refused, naming the field.
pub fn decode_csr(text: &str) -> Result<Vec<u8>, ModelError> {
    let refuse = |reason: &str| ModelError::InvalidField {
        field: "csr",
        value: shorten(text),
        reason: reason.to_owned(),
    };
    if text.contains("-----BEGIN") {
        return Err(refuse(
            "the csr is base64 of the DER request, without PEM header and footer",
        ));
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(refuse("empty"));
    }
    if compact.len() > MAX_CSR_DER_BYTES.div_ceil(3) * 4 {
        return Err(refuse(&format!(
            "longer than {MAX_CSR_DER_BYTES} bytes of DER"
        )));
    }
    let unpadded = compact.trim_end_matches('=');
    let der = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(unpadded)
        .or_else(|_| STANDARD.decode(&compact))
        .map_err(|_| refuse("not base64"))?;
    if der.len() > MAX_CSR_DER_BYTES {
        return Err(refuse(&format!(
            "longer than {MAX_CSR_DER_BYTES} bytes of DER"
        )));
    }
    if der.first() != Some(&0x30) {
        return Err(refuse("not a DER PKCS#10 request (no SEQUENCE)"));
    }
    Ok(der)
}

/// At most 64 characters of an offending value, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn issuance_starts_with_the_2025_07_01_preview() {
        for yes in [
            "2025-07-01-preview",
            "2026-04-01",
            "2026-11-02-preview",
            "2030-01-01",
        ] {
            assert!(api_version_supports_issuance(yes), "{yes}");
        }
        for no in [
            "2021-10-01",
            "2019-03-31",
            "2025-06-30",
            "2021-11-01-preview",
            "",
            "latest",
            "2025-07-01preview",
            "2025-13-01",
        ] {
            assert!(!api_version_supports_issuance(no), "{no}");
        }
    }

    #[test]
    fn csr_is_base64_der_without_armour() {
        let der = [0x30, 0x82, 0x01, 0x0a, 0x02, 0x01];
        let text = STANDARD.encode(der);
        assert_eq!(decode_csr(&text).unwrap(), der);
        assert_eq!(decode_csr(text.trim_end_matches('=')).unwrap(), der);
        assert_eq!(
            decode_csr(&format!(" {}\n{} ", &text[..4], &text[4..])).unwrap(),
            der
        );

        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{text}\n-----END CERTIFICATE REQUEST-----"
        );
        let err = decode_csr(&pem).unwrap_err();
        assert!(err.to_string().contains("PEM"), "{err}");
        for bad in ["", "   ", "!!!!", "AAAA"] {
            let err = decode_csr(bad).unwrap_err();
            assert!(
                matches!(err, ModelError::InvalidField { field: "csr", .. }),
                "{bad}: {err}"
            );
        }
        let huge = STANDARD.encode(vec![0x30; MAX_CSR_DER_BYTES + 1]);
        assert!(decode_csr(&huge)
            .unwrap_err()
            .to_string()
            .contains("longer"));
        assert!(decode_csr(&STANDARD.encode(vec![0x30; MAX_CSR_DER_BYTES])).is_ok());
    }

    #[test]
    fn the_chain_is_named_as_the_specification_names_it_and_absent_when_none() {
        let id = crate::RegistrationId::new("dev-1").unwrap();
        let mut result = crate::DeviceRegistrationResult::assigning(&id);
        let json = serde_json::to_value(&result).unwrap();
        assert!(json.get("issuedCertificateChain").is_none(), "{json}");
        result.issued_certificate_chain = Some(vec!["TUlJ".to_owned(), "TUlK".to_owned()]);
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json["issuedCertificateChain"],
            serde_json::json!(["TUlJ", "TUlK"])
        );
        let back: crate::DeviceRegistrationResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, result);
    }

    proptest! {
        #[test]
        fn any_der_sequence_round_trips(body in proptest::collection::vec(any::<u8>(), 0..MAX_CSR_DER_BYTES - 1)) {
            let mut der = vec![0x30];
            der.extend(body);
            prop_assert_eq!(decode_csr(&STANDARD.encode(&der)).unwrap(), der);
        }

        #[test]
        fn decode_never_panics_and_messages_stay_short(text in ".{0,300}") {
            if let Err(ModelError::InvalidField { value, .. }) = decode_csr(&text) {
                prop_assert!(value.chars().count() <= 65);
            }
        }

        #[test]
        fn dates_order_like_versions(y in 2017u16..2031, m in 1u8..=12, d in 1u8..=28, preview in any::<bool>()) {
            let version = format!("{y:04}-{m:02}-{d:02}{}", if preview { "-preview" } else { "" });
            prop_assert_eq!(api_version_date(&version), Some((y, m, d)));
            prop_assert_eq!(api_version_supports_issuance(&version), (y, m, d) >= (2025, 7, 1));
        }
    }
}
