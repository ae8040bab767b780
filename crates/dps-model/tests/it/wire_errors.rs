use dps_model::*;

fn path_of(err: ModelError) -> String {
    match err {
        ModelError::Json { path, .. } => path,
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

#[test]
fn missing_required_field_is_named() {
    let err = IndividualEnrollment::from_json(br#"{"registrationId":"d"}"#).unwrap_err();
    assert!(err.to_string().contains("attestation"), "{err}");
    let err =
        EnrollmentGroup::from_json(br#"{"attestation":{"type":"x509","x509":{}}}"#).unwrap_err();
    assert!(err.to_string().contains("enrollmentGroupId"), "{err}");
}

#[test]
fn wrong_enum_spelling_names_the_path() {
    let err = IndividualEnrollment::from_json(
        br#"{"registrationId":"d","attestation":{"type":"SymmetricKeys"}}"#,
    )
    .unwrap_err();
    assert_eq!(path_of(err.clone()), "attestation.type");
    assert!(err.to_string().contains("SymmetricKeys"));
    let err = IndividualEnrollment::from_json(
        br#"{"registrationId":"d","attestation":{"type":"tpm","tpm":{"endorsementKey":"a"}},"allocationPolicy":"Hashed"}"#,
    )
    .unwrap_err();
    assert_eq!(path_of(err), "allocationPolicy");
}

#[test]
fn invalid_ids_name_field_and_value() {
    let err = IndividualEnrollment::from_json(
        br#"{"registrationId":"bad id!","attestation":{"type":"symmetricKey"}}"#,
    )
    .unwrap_err();
    assert_eq!(path_of(err.clone()), "registrationId");
    assert!(err.to_string().contains("bad id!"), "{err}");
    let err = IndividualEnrollment::from_json(
        br#"{"registrationId":"ok","deviceId":"a#b","attestation":{"type":"symmetricKey"}}"#,
    )
    .unwrap_err();
    assert_eq!(path_of(err), "deviceId");
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    for body in [
        &b"{"[..],
        b"null",
        b"[]",
        b"{\"registrationId\":",
        b"\xff\xfe",
        b"42",
    ] {
        assert!(IndividualEnrollment::from_json(body).is_err());
        assert!(DeviceRegistrationRequest::from_json(body).is_err() || body == b"null");
    }
}

#[test]
fn domain_rules_name_the_field() {
    let err = EnrollmentGroup::from_json(
        br#"{"enrollmentGroupId":"g","attestation":{"type":"tpm","tpm":{"endorsementKey":"a"}}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::InvalidField {
                field: "attestation.type",
                ..
            }
        ),
        "{err:?}"
    );
    let err = IndividualEnrollment::from_json(
        br#"{"registrationId":"d","attestation":{"type":"symmetricKey"},"allocationPolicy":"custom"}"#,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        ModelError::InvalidField {
            field: "customAllocationDefinition",
            ..
        }
    ));
}

#[test]
fn operation_kinds_have_stable_names() {
    for kind in OperationKind::ALL {
        assert_eq!(OperationKind::parse(kind.as_str()), Some(kind));
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
}
