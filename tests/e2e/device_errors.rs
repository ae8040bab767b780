//! Every refusal of the device endpoint, through a plain HTTPS client: the
//! status code, the 6-digit `errorCode`, and nothing that reveals other
//! tenants or enrollments.

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::*;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use dps_e2e::certs;

fn client(system: &TestSystem, identity: Option<reqwest::Identity>) -> Client {
    let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes()).expect("CA");
    let mut builder = Client::builder().use_rustls_tls().add_root_certificate(ca);
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().expect("client")
}

fn token(scope: &str, id: &str, key: &str, expiry: u64) -> String {
    create_token(
        &registration_resource(scope, id),
        &SymmetricKey::from_base64(key).unwrap(),
        expiry,
        Some("registration"),
    )
}

async fn register(
    client: &Client,
    system: &TestSystem,
    scope: &str,
    id: &str,
    token: Option<&str>,
    body: String,
) -> (StatusCode, Value) {
    let url = format!(
        "https://{}/{scope}/registrations/{id}/register?api-version=2019-03-31",
        system.device_host
    );
    let mut request = client
        .put(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let response = request.send().await.expect("response");
    let status = response.status();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn enrolled(system: &TestSystem, id: &str) -> String {
    let key = generate_key();
    let enrollment = IndividualEnrollment::from_json(
        json!({"registrationId": id, "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": key}}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await
        .unwrap();
    key
}

#[tokio::test]
async fn sas_refusals_carry_their_codes() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let http = client(&system, None);
    let scope = system.scope().to_string();
    let key = enrolled(&system, "err-dev").await;
    let body = json!({"registrationId": "err-dev"}).to_string();
    let later = unix_now() + 3600;

    // Success first, so each refusal below differs by one thing only.
    let good = token(&scope, "err-dev", &key, later);
    let (status, answer) =
        register(&http, &system, &scope, "err-dev", Some(&good), body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "assigning");
    let operation_id = answer["operationId"].as_str().unwrap().to_owned();

    // Wrong ID scope: the same 401 as an unknown enrollment.
    let other = token("0ne00000000", "err-dev", &key, later);
    let (status, answer) = register(
        &http,
        &system,
        "0ne00000000",
        "err-dev",
        Some(&other),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(401002)),
        "{answer}"
    );
    let unknown_enrollment = token(&scope, "nobody", &key, later);
    let (_, unknown) = register(
        &http,
        &system,
        &scope,
        "nobody",
        Some(&unknown_enrollment),
        json!({}).to_string(),
    )
    .await;
    assert_eq!(
        unknown["message"], answer["message"],
        "scope and enrollment refusals must look alike"
    );

    // Expired token (beyond the 5-minute skew).
    let expired = token(&scope, "err-dev", &key, unix_now() - 600);
    let (status, answer) = register(
        &http,
        &system,
        &scope,
        "err-dev",
        Some(&expired),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(401002))
    );
    // The one generic refusal: no "expired at X (now Y)" (issue #15).
    assert_eq!(answer["message"], unknown["message"], "{answer}");

    // Tampered token: one character of the signature changed.
    let tampered = good.replacen("sig=", "sig=A", 1);
    let (status, answer) = register(
        &http,
        &system,
        &scope,
        "err-dev",
        Some(&tampered),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(401002))
    );

    // Malformed JSON and a body that names another device.
    let (status, answer) = register(
        &http,
        &system,
        &scope,
        "err-dev",
        Some(&good),
        "{\"registrationId\":".to_owned(),
    )
    .await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(400004)),
        "{answer}"
    );
    let (status, answer) = register(
        &http,
        &system,
        &scope,
        "err-dev",
        Some(&good),
        json!({"registrationId": "x"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(400202)),
        "{answer}"
    );

    // Oversized body (over 96 KB).
    let huge = json!({"registrationId": "err-dev", "payload": {"blob": "x".repeat(100 * 1024)}})
        .to_string();
    let (status, answer) = register(&http, &system, &scope, "err-dev", Some(&good), huge).await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some(413001)),
        "{answer}"
    );

    // Unknown operation id; then the real one answers 200 assigned.
    let poll = |op: &str| {
        http.get(format!(
            "https://{}/{scope}/registrations/err-dev/operations/{op}?api-version=2019-03-31",
            system.device_host
        ))
        .header("authorization", good.clone())
        .send()
    };
    let response = poll("5.0000000000000000.00000000-0000-0000-0000-000000000000").await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.json::<Value>().await?["errorCode"], 404203);
    let response = poll(&operation_id).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await?;
    assert_eq!(answer["status"], "assigned", "{answer}");
    assert_eq!(answer["registrationState"]["assignedHub"], "hub-a.test");
    // The poll right after a register is answered from memory: it still
    // checks the token, and the operation still belongs to its device only.
    let forged = token(&scope, "err-dev", &generate_key(), later);
    let response = http
        .get(format!(
            "https://{}/{scope}/registrations/err-dev/operations/{operation_id}?api-version=2019-03-31",
            system.device_host
        ))
        .header("authorization", forged)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let other_key = enrolled(&system, "err-other").await;
    let response = http
        .get(format!(
            "https://{}/{scope}/registrations/err-other/operations/{operation_id}?api-version=2019-03-31",
            system.device_host
        ))
        .header("authorization", token(&scope, "err-other", &other_key, later))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Missing api-version.
    let response = http
        .put(format!(
            "https://{}/{scope}/registrations/err-dev/register",
            system.device_host
        ))
        .header("authorization", good.clone())
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Nothing was billed for the refusals: exactly one registration.
    let record = system
        .server
        .store()
        .registration(system.scope(), &RegistrationId::new("err-dev")?)
        .await?;
    assert_eq!(record.unwrap().status, RegistrationStatus::Assigned);
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn certificate_refusals_carry_their_codes() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let root = certs::self_signed("unverified-root", true);
    let mut tenant = system.tenant.clone();
    tenant.ca_certificates.push(CaCertificate {
        name: "unverified".to_owned(),
        certificate: root.pem(),
        info: None,
        is_verified: false,
        verification_code: None,
        etag: ETag::generate(),
        created: chrono::Utc::now(),
        updated: chrono::Utc::now(),
    });
    system
        .server
        .store()
        .replace_tenant(tenant, Precondition::None)
        .await?;
    let group = EnrollmentGroup::from_json(
        json!({"enrollmentGroupId": "unverified-group", "attestation": {"type": "x509",
            "x509": {"caReferences": {"primary": "unverified"}}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment_group(system.scope(), group, Precondition::None)
        .await?;
    let leaf = certs::signed_by("cert-dev-1", false, &root);
    let identity =
        reqwest::Identity::from_pem(format!("{}{}", leaf.key_pem(), leaf.pem()).as_bytes())?;
    let http = client(&system, Some(identity));

    // Unverified CA.
    let (status, answer) = register(
        &http,
        &system,
        &scope,
        "cert-dev-1",
        None,
        json!({"registrationId": "cert-dev-1"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(401002)),
        "{answer}"
    );
    // The one generic refusal; the diagnosis is in the server's DEBUG log
    // (issue #15: refusals say nothing about what the scope holds).
    assert_eq!(
        answer["message"],
        "Unauthorized: the credentials do not match an enrollment of this ID scope.",
        "{answer}"
    );

    // Wrong CN: the certificate names another device than the path.
    let (status, answer) = register(
        &http,
        &system,
        &scope,
        "cert-dev-2",
        None,
        json!({}).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(401002)),
        "{answer}"
    );
    assert_eq!(
        answer["message"],
        "Unauthorized: the credentials do not match an enrollment of this ID scope.",
        "{answer}"
    );
    system.stop().await;
    Ok(())
}
