use dps_model::*;
use serde_json::{json, Value};

/// Parse with the model, serialise again, and compare with the input (minus
/// fields the model deliberately does not echo).
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(sample: &Value) -> Value {
    let parsed: T = from_json(sample.to_string().as_bytes()).expect("sample parses");
    serde_json::to_value(&parsed).unwrap()
}

#[test]
fn symmetric_key_enrollment_as_node_sends_it() {
    let sample = json!({
        "registrationId": "dev-e1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "cHJpbWFyeWtleXByaW1hcnlrZXk=", "secondaryKey": "c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5"}},
        "deviceId": "dev-dev1",
        "provisioningStatus": "enabled",
        "allocationPolicy": "hashed",
        "capabilities": {"iotEdge": false},
        "reprovisionPolicy": {"updateHubAssignment": true, "migrateDeviceData": false},
        "initialTwin": {"tags": {"site": "x"}, "properties": {"desired": {"interval": 30, "nested": {"a": "b"}}}}
    });
    assert_eq!(round_trip::<IndividualEnrollment>(&sample), sample);
    let e = IndividualEnrollment::from_json(sample.to_string().as_bytes()).unwrap();
    assert_eq!(e.effective_device_id().as_str(), "dev-dev1");
    assert_eq!(e.initial_twin.unwrap().desired_or_empty()["interval"], 30);
}

#[test]
fn tpm_enrollment() {
    let sample = json!({
        "registrationId": "tpm-dev",
        "attestation": {"type": "tpm", "tpm": {"endorsementKey": "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEA", "storageRootKey": "ARoAAQALAAMAcgAAAAYAgABDABAIAAAAAAABAA=="}},
        "provisioningStatus": "disabled",
        "etag": "\"13003fea-0000-0300-0000-62d1d5e50000\"",
        "createdDateTimeUtc": "2022-07-15T21:01:25.4127917Z",
        "lastUpdatedDateTimeUtc": "2022-07-15T21:01:25.4127917Z"
    });
    assert_eq!(round_trip::<IndividualEnrollment>(&sample), sample);
}

#[test]
fn x509_individual_and_group_with_ca_reference() {
    let info = json!({
        "subjectName": "CN=dev-x", "sha1Thumbprint": "AB", "sha256Thumbprint": "CD",
        "issuerName": "CN=dev-x", "notBeforeUtc": "2024-01-01T00:00:00Z",
        "notAfterUtc": "2034-01-01T00:00:00Z", "serialNumber": "01", "version": 3
    });
    let individual = json!({
        "registrationId": "dev-x",
        "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"info": info}}}},
        "provisioningStatus": "enabled",
        "iotHubs": ["hub-a.example", "hub-b.example"],
        "allocationPolicy": "static"
    });
    assert_eq!(round_trip::<IndividualEnrollment>(&individual), individual);
    let group = json!({
        "enrollmentGroupId": "group-1",
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "my-root"}}},
        "provisioningStatus": "enabled",
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": "https://127.0.0.1:9000/alloc?code=abc", "apiVersion": "2021-10-01"}
    });
    assert_eq!(round_trip::<EnrollmentGroup>(&group), group);
}

#[test]
fn registration_state_and_operation_status() {
    let state = json!({
        "registrationId": "dev-1",
        "createdDateTimeUtc": "2020-04-10T05:24:22.4718526Z",
        "assignedHub": "MyHub.azure-devices.net",
        "deviceId": "dev-1",
        "status": "assigned",
        "substatus": "initialAssignment",
        "lastUpdatedDateTimeUtc": "2020-04-10T05:24:22.6630000Z",
        "etag": "IjY5MDAzNTUyLTAwMDAtMDMwMC0wMDAwLTYzMGZkYThhMDAwMCI="
    });
    assert_eq!(round_trip::<DeviceRegistrationState>(&state), state);
    let op = json!({
        "operationId": "5.316aac5bdc130deb.b1e02da8-1b35-4f45-9c9b-2e8d1c8b2f44",
        "status": "assigned",
        "registrationState": {
            "registrationId": "dev-1", "assignedHub": "MyHub.azure-devices.net", "deviceId": "dev-1",
            "status": "assigned", "substatus": "deviceDataMigrated", "payload": {"a": [1, 2]},
            "symmetricKey": {"enrollmentGroupId": "g1"}
        }
    });
    assert_eq!(round_trip::<RegistrationOperationStatus>(&op), op);
    let failed = json!({"operationId": "x", "status": "failed",
        "registrationState": {"registrationId": "d", "status": "failed", "errorCode": 400207,
        "errorMessage": "Custom allocation failed with status code: 400"}});
    assert_eq!(round_trip::<RegistrationOperationStatus>(&failed), failed);
}

#[test]
fn bulk_result_and_error_body() {
    let bulk = json!({"isSuccessful": false, "errors": [
        {"registrationId": "dev1", "errorCode": 409201, "errorStatus": "Enrollment already exists"}]});
    assert_eq!(round_trip::<BulkEnrollmentOperationResult>(&bulk), bulk);
    let request = json!({"mode": "updateIfMatchETag", "enrollmentGroups": [
        {"enrollmentGroupId": "g", "attestation": {"type": "symmetricKey"}, "provisioningStatus": "enabled"}]});
    assert_eq!(
        round_trip::<BulkEnrollmentGroupOperation>(&request),
        request
    );
    let error = json!({"errorCode": 401002, "trackingId": "8ad0463c-6427-4479-9dfa-3e8bb7003e9b",
        "message": "Invalid certificate.", "timestampUtc": "2020-04-10T05:24:22.4718526Z", "info": {"k": "v"}});
    assert_eq!(round_trip::<ErrorBody>(&error), error);
    assert_eq!(ErrorCode(401002).http_status(), 401);
}

#[test]
fn device_request_forms() {
    let python = br#"{"payload": null, "registrationId": "dev-1"}"#;
    let r = DeviceRegistrationRequest::from_json(python).unwrap();
    assert_eq!(r.registration_id.as_deref(), Some("dev-1"));
    assert_eq!(r.payload, None);
    let node = br#"{"registrationId":"dev-1","payload":{"site":{"nested":[1,2,3]}}}"#;
    let r = DeviceRegistrationRequest::from_json(node).unwrap();
    assert_eq!(r.payload.unwrap()["site"]["nested"][2], 3);
    assert_eq!(
        DeviceRegistrationRequest::from_json(b"").unwrap(),
        DeviceRegistrationRequest::default()
    );
    assert_eq!(
        DeviceRegistrationRequest::from_json(b"{}").unwrap(),
        DeviceRegistrationRequest::default()
    );
}

#[test]
fn legacy_initial_twin_state_is_folded_in() {
    let body = br#"{"registrationId":"d","attestation":{"type":"symmetricKey"},
        "initialTwinState":{"desiredProperties":{"x":1}}}"#;
    let e = IndividualEnrollment::from_json(body).unwrap();
    assert_eq!(e.initial_twin.unwrap().desired_or_empty()["x"], 1);
}

#[test]
fn secrets_are_removed_for_reads() {
    let m = AttestationMechanism::symmetric_key(Some("a2V5".into()), Some("a2V5".into()));
    let shown = serde_json::to_value(m.without_secrets()).unwrap();
    assert_eq!(shown, json!({"type": "symmetricKey", "symmetricKey": {}}));
}
