//! Enrollment bodies in and out: read-only fields ignored on the way in,
//! attestation mechanisms completed and checked (generated or validated keys,
//! certificate info, endorsement keys), secrets and certificate bodies left
//! out on the way out (spec §4.6, §4.8).

use dps_attestation::keys::{generate_key, validate_key};
use dps_attestation::tpm::same_endorsement_key;
use dps_attestation::x509::certificate_info;
use dps_model::{
    AttestationMechanism, AttestationType, ModelError, Tenant, X509Attestation,
    X509CertificateWithInfo, X509Certificates,
};
use serde_json::Value;

use super::wire::invalid;
use crate::respond::ApiError;

/// Parse a body with `parse`; if that fails, try once more without the
/// read-only fields clients echo back (dates, `registrationState`, `etag`,
/// certificate `info`), which must be ignored rather than refused.
pub(crate) fn parse_lenient<T>(
    body: &[u8],
    parse: fn(&[u8]) -> Result<T, ModelError>,
) -> Result<T, ApiError> {
    let first = match parse(body) {
        Ok(record) => return Ok(record),
        Err(err) => err,
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Err(first.into());
    };
    if !strip_read_only(&mut value) {
        return Err(first.into());
    }
    let cleaned = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    parse(&cleaned).map_err(ApiError::from)
}

/// Remove read-only fields from an enrollment or group object; whether any was there.
pub(crate) fn strip_read_only(value: &mut Value) -> bool {
    let Some(object) = value.as_object_mut() else {
        return false;
    };
    let mut removed = false;
    for key in [
        "registrationState",
        "createdDateTimeUtc",
        "lastUpdatedDateTimeUtc",
        "etag",
    ] {
        removed |= object.remove(key).is_some();
    }
    let x509 = object
        .get_mut("attestation")
        .and_then(|a| a.get_mut("x509"))
        .and_then(Value::as_object_mut);
    for set in x509
        .into_iter()
        .flat_map(|x| x.values_mut())
        .filter_map(Value::as_object_mut)
    {
        for slot in set.values_mut().filter_map(Value::as_object_mut) {
            removed |= slot.remove("info").is_some();
        }
    }
    removed
}

/// Complete and check an incoming attestation mechanism. `stored` is the
/// mechanism of the record being replaced, if any: symmetric keys and
/// certificates the body leaves out are kept from it (a GET–edit–PUT round
/// trip, where GET hid them, changes nothing), else keys are generated.
pub(crate) fn prepare_attestation(
    attestation: &mut AttestationMechanism,
    stored: Option<&AttestationMechanism>,
    individual: bool,
) -> Result<(), ApiError> {
    let stored = stored.filter(|s| s.kind == attestation.kind);
    match attestation.kind {
        AttestationType::SymmetricKey => {
            attestation.tpm = None;
            attestation.x509 = None;
            let stored_keys = stored.and_then(|s| s.symmetric_key.as_ref());
            let keys = attestation
                .symmetric_key
                .get_or_insert_with(Default::default);
            keys.primary_key = complete_key(
                keys.primary_key.take(),
                stored_keys.and_then(|k| k.primary_key.clone()),
                "attestation.symmetricKey.primaryKey",
            )?;
            keys.secondary_key = complete_key(
                keys.secondary_key.take(),
                stored_keys.and_then(|k| k.secondary_key.clone()),
                "attestation.symmetricKey.secondaryKey",
            )?;
        }
        AttestationType::Tpm => {
            attestation.x509 = None;
            attestation.symmetric_key = None;
            let ek = attestation
                .tpm
                .as_ref()
                .map(|t| t.endorsement_key.as_str())
                .unwrap_or_default();
            if let Err(err) = same_endorsement_key(ek, ek) {
                return Err(ApiError::invalid_endorsement_key(format!(
                    "invalid value for `attestation.tpm.endorsementKey`: {err}"
                )));
            }
        }
        AttestationType::X509 => {
            attestation.tpm = None;
            attestation.symmetric_key = None;
            let stored_x509 = stored.and_then(|s| s.x509.as_ref());
            let x509 = attestation.x509.get_or_insert_with(Default::default);
            prepare_x509(x509, stored_x509, individual)?;
        }
        // The model refuses `none` for enrollments before we get here.
        AttestationType::None => {}
    }
    Ok(())
}

fn complete_key(
    given: Option<String>,
    stored: Option<String>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    match given.filter(|k| !k.trim().is_empty()) {
        Some(key) => match validate_key(&key) {
            Ok(_) => Ok(Some(key.trim().to_owned())),
            // Keys are secrets: the error names the field, not the value.
            Err(err) => Err(invalid(field, "(not shown)", err.to_string())),
        },
        None => Ok(Some(stored.unwrap_or_else(generate_key))),
    }
}

const CLIENT_FIELDS: [&str; 2] = [
    "attestation.x509.clientCertificates.primary.certificate",
    "attestation.x509.clientCertificates.secondary.certificate",
];
const SIGNING_FIELDS: [&str; 2] = [
    "attestation.x509.signingCertificates.primary.certificate",
    "attestation.x509.signingCertificates.secondary.certificate",
];

fn prepare_x509(
    x509: &mut X509Attestation,
    stored: Option<&X509Attestation>,
    individual: bool,
) -> Result<(), ApiError> {
    prepare_set(
        x509.client_certificates.as_mut(),
        stored.and_then(|s| s.client_certificates.as_ref()),
        CLIENT_FIELDS,
    )?;
    prepare_set(
        x509.signing_certificates.as_mut(),
        stored.and_then(|s| s.signing_certificates.as_ref()),
        SIGNING_FIELDS,
    )?;
    let has = |set: &Option<X509Certificates>| {
        set.as_ref()
            .is_some_and(|s| s.primary.is_some() || s.secondary.is_some())
    };
    if individual {
        if !has(&x509.client_certificates) {
            return Err(invalid(
                "attestation.x509.clientCertificates",
                "",
                "an individual X.509 enrollment needs a primary or secondary client certificate",
            ));
        }
    } else {
        let references = x509
            .ca_references
            .as_ref()
            .is_some_and(|r| r.primary.is_some() || r.secondary.is_some());
        if !has(&x509.signing_certificates) && !references {
            return Err(invalid(
                "attestation.x509.signingCertificates",
                "",
                "an X.509 enrollment group needs signing certificates or caReferences",
            ));
        }
    }
    Ok(())
}

fn prepare_set(
    set: Option<&mut X509Certificates>,
    stored: Option<&X509Certificates>,
    fields: [&'static str; 2],
) -> Result<(), ApiError> {
    let Some(set) = set else {
        return Ok(());
    };
    let stored_slots = [
        stored.and_then(|s| s.primary.as_ref()),
        stored.and_then(|s| s.secondary.as_ref()),
    ];
    for ((slot, stored), field) in [&mut set.primary, &mut set.secondary]
        .into_iter()
        .zip(stored_slots)
        .zip(fields)
    {
        let Some(certificate) = slot.as_mut() else {
            continue;
        };
        match certificate
            .certificate
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        {
            Some(text) => {
                let info = certificate_info(text.as_bytes())
                    .map_err(|e| invalid(field, abbreviate(text), e.to_string()))?;
                certificate.info = Some(info);
            }
            None => match stored.filter(|s| s.certificate.is_some()) {
                Some(stored) => *certificate = stored.clone(),
                None => {
                    return Err(invalid(
                        field,
                        "",
                        "a certificate (PEM or base64 DER) is required",
                    ))
                }
            },
        }
    }
    Ok(())
}

fn abbreviate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The mechanism as GET and query answers show it: no symmetric keys, no
/// certificate bodies (their `info` only).
pub(crate) fn public_attestation(attestation: &AttestationMechanism) -> AttestationMechanism {
    without_certificate_bodies(attestation.without_secrets())
}

/// The mechanism as a PUT answer shows it: keys included (the caller just
/// set or received them), certificate bodies left out.
pub(crate) fn written_attestation(attestation: &AttestationMechanism) -> AttestationMechanism {
    without_certificate_bodies(attestation.clone())
}

fn without_certificate_bodies(mut attestation: AttestationMechanism) -> AttestationMechanism {
    if let Some(x509) = attestation.x509.as_mut() {
        for set in [
            &mut x509.client_certificates,
            &mut x509.signing_certificates,
        ]
        .into_iter()
        .flatten()
        {
            for slot in [&mut set.primary, &mut set.secondary].into_iter().flatten() {
                let X509CertificateWithInfo { certificate, .. } = slot;
                *certificate = None;
            }
        }
    }
    attestation
}

/// Every hub an enrollment names must be linked to the tenant.
pub(crate) fn check_hubs(iot_hubs: Option<&[String]>, tenant: &Tenant) -> Result<(), ApiError> {
    for hub in iot_hubs.unwrap_or_default() {
        if tenant.linked_hub(hub).is_none() {
            return Err(invalid(
                "iotHubs",
                hub.clone(),
                "not a linked IoT hub of this provisioning service",
            ));
        }
    }
    Ok(())
}

/// The CA certificates a group's `caReferences` name must exist.
pub(crate) fn check_ca_references(
    attestation: &AttestationMechanism,
    tenant: &Tenant,
) -> Result<(), ApiError> {
    let Some(references) = attestation
        .x509
        .as_ref()
        .and_then(|x| x.ca_references.as_ref())
    else {
        return Ok(());
    };
    for (field, name) in [
        ("attestation.x509.caReferences.primary", &references.primary),
        (
            "attestation.x509.caReferences.secondary",
            &references.secondary,
        ),
    ] {
        if let Some(name) = name {
            if tenant.ca_certificate(name).is_none() {
                return Err(invalid(
                    field,
                    name.clone(),
                    "no CA certificate of this name was uploaded",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_model::IndividualEnrollment;

    #[test]
    fn echoed_read_only_fields_are_ignored() {
        let body =
            br#"{"registrationId":"d1","attestation":{"type":"x509","x509":{"clientCertificates":
            {"primary":{"info":{"subjectName":"CN=d1"}}}}},"registrationState":{"bogus":1},
            "createdDateTimeUtc":12,"etag":{"x":1}}"#;
        let parsed = parse_lenient(body, IndividualEnrollment::from_json).unwrap();
        assert_eq!(parsed.registration_id.as_str(), "d1");
        assert!(parsed.registration_state.is_none());
        let slot = parsed
            .attestation
            .x509
            .unwrap()
            .client_certificates
            .unwrap();
        assert!(slot.primary.unwrap().info.is_none());
    }

    #[test]
    fn real_errors_still_name_the_field() {
        let err = parse_lenient(
            br#"{"registrationId":"d 1","attestation":{"type":"tpm"}}"#,
            IndividualEnrollment::from_json,
        )
        .unwrap_err();
        assert!(err.message.contains("registrationId"), "{err:?}");
    }

    #[test]
    fn symmetric_keys_are_generated_kept_or_validated() {
        let mut fresh = AttestationMechanism::symmetric_key(None, None);
        prepare_attestation(&mut fresh, None, true).unwrap();
        let keys = fresh.symmetric_key.clone().unwrap();
        assert_eq!(keys.primary_key.as_ref().unwrap().len(), 88);
        assert_ne!(keys.primary_key, keys.secondary_key);

        let mut echoed = fresh.without_secrets();
        prepare_attestation(&mut echoed, Some(&fresh), true).unwrap();
        assert_eq!(echoed, fresh, "a GET–PUT round trip keeps the keys");

        let mut short = AttestationMechanism::symmetric_key(Some("AAAA".into()), None);
        let err = prepare_attestation(&mut short, None, true).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert!(
            err.message.contains("attestation.symmetricKey.primaryKey"),
            "{err:?}"
        );
        assert!(!err.message.contains("AAAA"), "keys are not echoed");
    }

    #[test]
    fn bad_endorsement_key_is_400201() {
        let mut tpm: AttestationMechanism =
            serde_json::from_str(r#"{"type":"tpm","tpm":{"endorsementKey":"AQID"}}"#).unwrap();
        let err = prepare_attestation(&mut tpm, None, true).unwrap_err();
        assert_eq!(err.code, dps_model::ErrorCode::INVALID_ENDORSEMENT_KEY);
        assert!(err.message.contains("endorsementKey"));
    }
}
