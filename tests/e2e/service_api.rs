//! The service operations endpoint through a plain HTTPS client: enrollment
//! and group lifecycles, etags, secrets, certificates, bulk operations,
//! queries and registration records (spec §4.3–4.11).

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_client::{Credential, ProvisioningClient};
use dps_e2e::server::{SystemOptions, TestSystem};
use reqwest::Method;
use serde_json::{json, Value};

use crate::service_client::{endorsement_key, Service};
use dps_e2e::certs;

fn symmetric(id: &str) -> Value {
    json!({"registrationId": id, "attestation": {"type": "symmetricKey"},
        "initialTwin": {"tags": {"site": "lab"}, "properties": {"desired": {"interval": 30}}}})
}

/// Base64 DER of a PEM certificate (what C# and Python users send).
fn base64_der(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_enrollment_lifecycle_with_etags_and_hidden_keys() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;

    // Create without keys: keys are generated and answered once.
    let created = api.put("/enrollments/Dev-1", &symmetric("Dev-1")).await?;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let keys = created.body["attestation"]["symmetricKey"].clone();
    let primary = keys["primaryKey"]
        .as_str()
        .expect("generated key")
        .to_owned();
    assert_eq!(primary.len(), 88, "64 random bytes");
    assert_ne!(keys["primaryKey"], keys["secondaryKey"]);
    let etag1 = created.body["etag"].as_str().unwrap().to_owned();
    assert_eq!(created.header("etag"), Some(etag1.as_str()));
    assert!(created.body["createdDateTimeUtc"].is_string());

    // GET hides the keys, any case, trailing slash.
    let got = api.get("/ENROLLMENTS/dev-1/").await?;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["registrationId"], "Dev-1");
    assert_eq!(got.body["attestation"]["type"], "symmetricKey");
    assert!(got.body["attestation"]["symmetricKey"]["primaryKey"].is_null());
    assert_eq!(got.body["initialTwin"]["tags"]["site"], "lab");
    assert!(got.body.get("registrationState").is_none());

    // attestationmechanism carries the secrets.
    let mechanism = api
        .post("/enrollments/dev-1/attestationmechanism", None)
        .await?;
    assert_eq!(mechanism.status, 200);
    assert_eq!(mechanism.body["symmetricKey"], keys);

    // A stale etag is refused: 412001, no Retry-After.
    let mut update = got.body.clone();
    update["provisioningStatus"] = json!("disabled");
    let stale = api
        .send(
            Method::PUT,
            "/enrollments/dev-1",
            Some(&update),
            &[("If-Match", "\"not-the-etag\"")],
        )
        .await?;
    assert_eq!(stale.status, 412, "{:?}", stale.body);
    assert_eq!(stale.error_code(), Some(412001));
    assert!(stale.header("retry-after").is_none());

    // PUT back what GET returned (dates, no keys, etag in If-Match): keys kept.
    let quoted = format!("\"{etag1}\"");
    let updated = api
        .send(
            Method::PUT,
            "/enrollments/dev-1",
            Some(&update),
            &[("If-Match", &quoted)],
        )
        .await?;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(updated.body["provisioningStatus"], "disabled");
    assert_eq!(updated.body["attestation"]["symmetricKey"], keys);
    let etag2 = updated.body["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag1, etag2);
    assert_eq!(
        updated.body["createdDateTimeUtc"],
        created.body["createdDateTimeUtc"]
    );

    // Validation errors name the field; keys are not echoed.
    let mut bad = symmetric("dev-1");
    bad["attestation"]["symmetricKey"] = json!({"primaryKey": "c2hvcnQ="});
    let refused = api.put("/enrollments/dev-1", &bad).await?;
    assert_eq!(refused.status, 400);
    let message = refused.body["message"].as_str().unwrap();
    assert!(
        message.contains("attestation.symmetricKey.primaryKey"),
        "{message}"
    );
    assert!(!message.contains("c2hvcnQ="), "{message}");
    let mismatch = api.put("/enrollments/dev-2", &symmetric("dev-1")).await?;
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.body["message"]
        .as_str()
        .unwrap()
        .contains("registrationId"));
    let mut unlinked = symmetric("dev-3");
    unlinked["iotHubs"] = json!(["hub-z.test"]);
    let refused = api.put("/enrollments/dev-3", &unlinked).await?;
    assert_eq!(refused.status, 400);
    assert!(refused.body["message"]
        .as_str()
        .unwrap()
        .contains("iotHubs"));
    let bad_id = api.put("/enrollments/dev%201", &symmetric("dev 1")).await?;
    assert_eq!((bad_id.status, bad_id.error_code()), (400, Some(400202)));

    // If-Match on a record that does not exist: 412.
    let missing = api
        .send(
            Method::PUT,
            "/enrollments/dev-9",
            Some(&symmetric("dev-9")),
            &[("If-Match", "*")],
        )
        .await?;
    assert_eq!(missing.status, 412);

    // DELETE: stale etag 412, then 204, then 404201.
    let stale = api
        .send(
            Method::DELETE,
            "/enrollments/dev-1",
            None,
            &[("If-Match", &etag1)],
        )
        .await?;
    assert_eq!(stale.status, 412);
    let deleted = api
        .send(
            Method::DELETE,
            "/enrollments/dev-1",
            None,
            &[("If-Match", &etag2)],
        )
        .await?;
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.body, Value::Null);
    let gone = api.get("/enrollments/dev-1").await?;
    assert_eq!((gone.status, gone.error_code()), (404, Some(404201)));
    assert!(gone.header("retry-after").is_none());
    assert_eq!(api.delete("/enrollments/dev-1").await?.status, 404);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_and_tpm_enrollments_keep_certificates_and_show_info() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let device = certs::self_signed("x509-dev", false);
    let pem = device.pem();

    // PEM in, info out, no certificate body on GET; base64 DER accepted too.
    let body = json!({"registrationId": "x509-dev", "attestation": {"type": "x509",
        "x509": {"clientCertificates": {"primary": {"certificate": pem}}}}});
    let created = api.put("/enrollments/x509-dev", &body).await?;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let info = &created.body["attestation"]["x509"]["clientCertificates"]["primary"]["info"];
    assert_eq!(info["subjectName"], "CN=x509-dev");
    assert_eq!(info["version"], 3);
    assert_eq!(info["sha256Thumbprint"].as_str().unwrap().len(), 64);
    let got = api.get("/enrollments/x509-dev").await?;
    let slot = &got.body["attestation"]["x509"]["clientCertificates"]["primary"];
    assert!(slot["certificate"].is_null());
    assert_eq!(slot["info"], *info);

    // The round trip (info only) keeps the stored certificate: the device still provisions.
    let mut echoed = got.body.clone();
    echoed["optionalDeviceInformation"] = json!({"note": "edited"});
    let etag = echoed["etag"].as_str().unwrap().to_owned();
    let replaced = api
        .send(
            Method::PUT,
            "/enrollments/x509-dev",
            Some(&echoed),
            &[("If-Match", &etag)],
        )
        .await?;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    let stored = system
        .server
        .store()
        .enrollment(system.scope(), &"x509-dev".parse()?)
        .await?
        .unwrap();
    let kept = stored
        .attestation
        .x509
        .unwrap()
        .client_certificates
        .unwrap()
        .primary
        .unwrap();
    assert_eq!(kept.certificate.as_deref(), Some(pem.as_str()));

    let der = json!({"registrationId": "x509-der", "attestation": {"type": "x509",
        "x509": {"clientCertificates": {"primary": {"certificate": base64_der(&pem)}}}}});
    let created = api.put("/enrollments/x509-der", &der).await?;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(
        created.body["attestation"]["x509"]["clientCertificates"]["primary"]["info"]
            ["sha1Thumbprint"],
        info["sha1Thumbprint"]
    );
    let garbage = json!({"registrationId": "x509-bad", "attestation": {"type": "x509",
        "x509": {"clientCertificates": {"primary": {"certificate": "not a certificate"}}}}});
    let refused = api.put("/enrollments/x509-bad", &garbage).await?;
    assert_eq!(refused.status, 400);
    assert!(refused.body["message"]
        .as_str()
        .unwrap()
        .contains("attestation.x509.clientCertificates.primary.certificate"));

    // TPM: a valid EK is stored and shown; a bad one is 400201.
    let ek = endorsement_key("tpm-dev");
    let tpm = json!({"registrationId": "tpm-dev", "attestation": {"type": "tpm",
        "tpm": {"endorsementKey": ek}}});
    let created = api.put("/enrollments/tpm-dev", &tpm).await?;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(
        api.get("/enrollments/tpm-dev").await?.body["attestation"]["tpm"]["endorsementKey"],
        ek
    );
    let bad = json!({"registrationId": "tpm-bad", "attestation": {"type": "tpm",
        "tpm": {"endorsementKey": "AAAA"}}});
    let refused = api.put("/enrollments/tpm-bad", &bad).await?;
    assert_eq!((refused.status, refused.error_code()), (400, Some(400201)));
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_bulk_operations_and_query_pages() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;

    // Bulk create with one failing item: 200, the item's error.
    api.put("/enrollments/bulk-0", &symmetric("bulk-0")).await?;
    let items: Vec<Value> = (0..4).map(|i| symmetric(&format!("bulk-{i}"))).collect();
    let bulk = api
        .post(
            "/enrollments/",
            Some(&json!({"mode": "create", "enrollments": items})),
        )
        .await?;
    assert_eq!(bulk.status, 200, "{:?}", bulk.body);
    assert_eq!(bulk.body["isSuccessful"], false);
    let errors = bulk.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["registrationId"], "bulk-0");
    assert_eq!(errors[0]["errorCode"], 409201);
    for i in 1..4 {
        assert_eq!(
            api.get(&format!("/enrollments/bulk-{i}")).await?.status,
            200
        );
    }
    // Whole-request refusals.
    let eleven: Vec<Value> = (0..11).map(|i| symmetric(&format!("many-{i}"))).collect();
    let refused = api
        .post(
            "/enrollments",
            Some(&json!({"mode": "update", "enrollments": eleven})),
        )
        .await?;
    assert_eq!((refused.status, refused.error_code()), (400, Some(400205)));
    let twice = api
        .post(
            "/enrollments",
            Some(&json!({"mode": "update",
            "enrollments": [symmetric("twice"), symmetric("TWICE")]})),
        )
        .await?;
    assert_eq!((twice.status, twice.error_code()), (400, Some(400206)));
    // updateIfMatchETag with a stale etag fails the item; delete removes.
    let mut stale = symmetric("bulk-1");
    stale["etag"] = json!("stale");
    let result = api
        .post(
            "/enrollments",
            Some(&json!({"mode": "updateIfMatchETag", "enrollments": [stale]})),
        )
        .await?;
    assert_eq!(result.body["errors"][0]["errorCode"], 412001);
    let result = api
        .post(
            "/enrollments",
            Some(&json!({"mode": "delete",
            "enrollments": [{"registrationId": "bulk-2"}, {"registrationId": "nope"}]})),
        )
        .await?;
    assert_eq!(result.body["errors"].as_array().unwrap().len(), 1);
    assert_eq!(result.body["errors"][0]["registrationId"], "nope");
    assert_eq!(result.body["errors"][0]["errorCode"], 404201);
    assert_eq!(api.get("/enrollments/bulk-2").await?.status, 404);

    // Query pages: JSON array, item type, continuation only while more follow.
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let mut headers = vec![("x-ms-max-item-count", "2")];
        if let Some(token) = &continuation {
            headers.push(("x-ms-continuation", token.as_str()));
        }
        let page = api
            .send(
                Method::POST,
                "/enrollments/query",
                Some(&json!({"query": "*"})),
                &headers,
            )
            .await?;
        assert_eq!(page.status, 200, "{:?}", page.body);
        assert_eq!(page.header("x-ms-item-type"), Some("Enrollment"));
        assert_eq!(page.header("x-ms-max-item-count"), Some("2"));
        for item in page.body.as_array().unwrap() {
            assert!(item["attestation"]["symmetricKey"]["primaryKey"].is_null());
            seen.push(item["registrationId"].as_str().unwrap().to_owned());
        }
        continuation = page.header("x-ms-continuation").map(str::to_owned);
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["bulk-0", "bulk-1", "bulk-3"]);
    let bad = api
        .send(
            Method::POST,
            "/enrollments/query",
            None,
            &[("x-ms-continuation", "garbage!")],
        )
        .await?;
    assert_eq!(bad.status, 400);

    // Groups: symmetric key with generated keys, lower-case attestation path, query.
    let group = json!({"enrollmentGroupId": "Group-1", "attestation": {"type": "symmetricKey"}});
    let created = api.put("/enrollmentGroups/Group-1", &group).await?;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let keys = created.body["attestation"]["symmetricKey"].clone();
    assert!(keys["primaryKey"].is_string());
    let got = api.get("/enrollmentGroups/group-1").await?;
    assert!(got.body["attestation"]["symmetricKey"]["primaryKey"].is_null());
    let mechanism = api
        .post("/enrollmentgroups/group-1/attestationmechanism", None)
        .await?;
    assert_eq!(mechanism.body["symmetricKey"], keys);
    let tpm_group = json!({"enrollmentGroupId": "g-tpm", "attestation": {"type": "tpm",
        "tpm": {"endorsementKey": endorsement_key("g")}}});
    assert_eq!(
        api.put("/enrollmentGroups/g-tpm", &tpm_group).await?.status,
        400
    );
    let no_ca = json!({"enrollmentGroupId": "g-ca", "attestation": {"type": "x509",
        "x509": {"caReferences": {"primary": "missing-ca"}}}});
    let refused = api.put("/enrollmentGroups/g-ca", &no_ca).await?;
    assert_eq!(refused.status, 400);
    assert!(refused.body["message"]
        .as_str()
        .unwrap()
        .contains("caReferences"));
    let page = api
        .post("/enrollmentGroups/query", Some(&json!({"query": "*"})))
        .await?;
    assert_eq!(page.header("x-ms-item-type"), Some("EnrollmentGroup"));
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert!(page.header("x-ms-continuation").is_none());
    let bulk = api
        .post("/enrollmentGroups", Some(&json!({"mode": "create",
            "enrollmentGroups": [group.clone(), {"enrollmentGroupId": "g-2", "attestation": {"type": "symmetricKey"}}]})))
        .await?;
    assert_eq!(bulk.body["errors"][0]["enrollmentGroupId"], "Group-1");
    assert_eq!(bulk.body["errors"][0]["errorCode"], 409202);
    assert_eq!(api.delete("/enrollmentGroups/group-1").await?.status, 204);
    let gone = api.get("/enrollmentGroups/group-1").await?;
    assert_eq!(gone.error_code(), Some(404204));
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_records_are_read_listed_and_deleted() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let group = api
        .put(
            "/enrollmentGroups/fleet",
            &json!({"enrollmentGroupId": "fleet", "attestation": {"type": "symmetricKey"}}),
        )
        .await?;
    let group_key = group.body["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let individual_key = generate_key();
    let mut single = symmetric("solo");
    single["attestation"]["symmetricKey"] = json!({"primaryKey": individual_key});
    api.put("/enrollments/solo", &single).await?;

    let provision = |id: &str, credential: Credential| {
        ProvisioningClient::builder(system.device_host.clone(), system.scope().to_string(), id)
            .credential(credential)
            .trust_ca_pem(system.server.trust_pem().to_owned())
            .build()
    };
    for id in ["fleet-a", "fleet-b", "fleet-c"] {
        provision(id, Credential::group_key(&group_key, id)?)?
            .register()
            .await?;
    }
    provision("solo", Credential::symmetric_key(&individual_key)?)?
        .register()
        .await?;

    // GET a record; the individual enrollment shows its registrationState.
    let record = api.get("/registrations/fleet-b").await?;
    assert_eq!(record.status, 200, "{:?}", record.body);
    assert_eq!(record.body["status"], "assigned");
    assert_eq!(record.body["assignedHub"], "hub-a.test");
    assert!(record.body.get("tpm").is_none());
    let solo = api.get("/enrollments/solo").await?;
    assert_eq!(solo.body["registrationState"]["status"], "assigned");
    assert_eq!(solo.body["registrationState"]["deviceId"], "solo");

    // Query by group, with an empty body and no content type (Python).
    let page = api
        .send(
            Method::POST,
            "/registrations/fleet/query",
            None,
            &[("x-ms-max-item-count", "2")],
        )
        .await?;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.header("x-ms-item-type"), Some("DeviceRegistration"));
    assert_eq!(page.body.as_array().unwrap().len(), 2);
    let token = page
        .header("x-ms-continuation")
        .expect("a third record")
        .to_owned();
    let rest = api
        .send(
            Method::POST,
            "/registrations/fleet/query",
            None,
            &[("x-ms-max-item-count", "2"), ("x-ms-continuation", &token)],
        )
        .await?;
    assert_eq!(rest.body[0]["registrationId"], "fleet-c");
    assert!(rest.header("x-ms-continuation").is_none());

    // DELETE with a wrong etag, then right.
    let etag = record.body["etag"].as_str().unwrap().to_owned();
    let refused = api
        .send(
            Method::DELETE,
            "/registrations/fleet-b",
            None,
            &[("If-Match", "\"bogus\"")],
        )
        .await?;
    assert_eq!(refused.status, 412);
    assert!(refused.header("retry-after").is_none());
    let deleted = api
        .send(
            Method::DELETE,
            "/registrations/fleet-b",
            None,
            &[("If-Match", &etag)],
        )
        .await?;
    assert_eq!(deleted.status, 204);
    let gone = api.get("/registrations/fleet-b").await?;
    assert_eq!((gone.status, gone.error_code()), (404, Some(404202)));

    // Deleting the group keeps its records; deleting an individual enrollment
    // takes its record along.
    api.delete("/enrollmentGroups/fleet").await?;
    assert_eq!(api.get("/registrations/fleet-a").await?.status, 200);
    assert_eq!(api.delete("/enrollments/solo").await?.status, 204);
    assert_eq!(api.get("/registrations/solo").await?.status, 404);
    system.stop().await;
    Ok(())
}
