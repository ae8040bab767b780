//! Issue #15, findings 7 and 10, through the real server: SAS token
//! lifetimes are capped on both endpoints (device tokens, TPM tokens,
//! tenant and operator tokens), an operator token must name this service,
//! and a `202`'s `Location` never echoes the client's `Host`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_client::{Credential, Tpm2Tools, TpmDevice as _};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_e2e::swtpm::{missing_tools, SoftwareTpm};
use dps_model::{IndividualEnrollment, Precondition, RegistrationId};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::client_credentials::{client as device_client, put_enrollment};
use crate::service_client::{token, Service, OWNER};

const DAY: u64 = 24 * 3600;
/// The verifier's clock-skew allowance, added to every cap.
const SKEW: u64 = 300;

fn https(system: &TestSystem) -> Client {
    let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes()).expect("CA");
    Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        // HTTP/1.1, so that the `Host` header below is sent as written.
        .http1_only()
        .build()
        .expect("client")
}

async fn enrolled(system: &TestSystem, id: &str) -> Result<String> {
    let key = generate_key();
    let enrollment = IndividualEnrollment::from_json(
        json!({"registrationId": id, "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": key}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await?;
    Ok(key)
}

/// `PUT …/register` with a device token expiring at `se`; extra headers.
async fn register(
    system: &TestSystem,
    id: &str,
    key: &str,
    se: u64,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, reqwest::header::HeaderMap, Value)> {
    let scope = system.scope().to_string();
    let token = create_token(
        &registration_resource(&scope, id),
        &SymmetricKey::from_base64(key)?,
        se,
        Some("registration"),
    );
    let mut request = https(system)
        .put(format!(
            "https://{}/{scope}/registrations/{id}/register?api-version=2019-03-31",
            system.device_host
        ))
        .header("content-type", "application/json")
        .header("authorization", token)
        .body(json!({ "registrationId": id }).to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    Ok((
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_tokens_beyond_the_lifetime_cap_are_refused() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = enrolled(&system, "cap-dev").await?;
    let now = unix_now();
    // The default cap is two days; the C# SDK signs for one.
    for se in [now + 3600, now + DAY, now + 2 * DAY] {
        let (status, _, answer) = register(&system, "cap-dev", &key, se, &[]).await?;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "se = now + {}: {answer}",
            se - now
        );
    }
    for se in [now + 2 * DAY + SKEW + 60, now + 3650 * DAY, u64::MAX] {
        let (status, _, answer) = register(&system, "cap-dev", &key, se, &[]).await?;
        assert_eq!(
            (status, answer["errorCode"].as_i64()),
            (StatusCode::UNAUTHORIZED, Some(401002)),
            "se = {se}: {answer}"
        );
    }
    // The refusals cost the device nothing: a proper token still works.
    let (status, _, answer) = register(&system, "cap-dev", &key, now + 3600, &[]).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_cap_applies_to_tokens_signed_with_the_tpm_activated_key() -> Result<()> {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED TPM lifetime-cap test: {why}");
        return Ok(());
    }
    let swtpm = SoftwareTpm::start()?;
    let tpm = Arc::new(Tpm2Tools::new(swtpm.tcti())?);
    let (endorsement_key, registration_id) = {
        let tpm = tpm.clone();
        tokio::task::spawn_blocking(move || {
            anyhow::Ok((tpm.endorsement_key()?, tpm.registration_id()?))
        })
        .await??
    };
    // dps-client signs for one hour; a one-minute cap (plus the skew) is less.
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.device.max_token_lifetime_seconds = 60,
        ..SystemOptions::default()
    })
    .await?;
    put_enrollment(
        &system,
        json!({"registrationId": registration_id, "attestation": {"type": "tpm",
            "tpm": {"endorsementKey": BASE64.encode(&endorsement_key)}}}),
    )
    .await;
    let register = |system: &TestSystem| {
        device_client(system, &registration_id, Credential::Tpm(tpm.clone()))
            .poll_interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(60))
            .build()
    };
    let refused = register(&system)?.register().await;
    assert!(refused.is_err(), "{refused:?}");
    let id = RegistrationId::new(registration_id.as_str())?;
    assert!(system
        .server
        .store()
        .registration(system.scope(), &id)
        .await?
        .is_none());

    // The same TPM, the same enrollment, the default cap: provisioned.
    let mut system = system;
    system.config.device.max_token_lifetime_seconds =
        dps_service::config::DEFAULT_DEVICE_TOKEN_LIFETIME_SECS;
    let system = system.restart().await?;
    let registration = register(&system)?.register().await?;
    assert_eq!(registration.device_id, registration_id);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_beyond_the_lifetime_cap_are_refused() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let host = system.service_host.clone();
    let owner_key = system
        .tenant
        .access_policy(OWNER)
        .expect("owner policy")
        .primary_key
        .clone();
    let anonymous = Service::anonymous(&system)?;
    let now = unix_now();
    let with_expiry = |se: u64| {
        let key = SymmetricKey::from_base64(&owner_key).expect("base64");
        anonymous
            .clone()
            .with_token(create_token(&host, &key, se, Some(OWNER)))
    };
    // The SDKs sign for an hour; the default cap is a day.
    for se in [now + 3600, now + DAY] {
        let reply = with_expiry(se).get("/enrollments/nobody").await?;
        assert_eq!(
            reply.status,
            404,
            "se = now + {}: {:?}",
            se - now,
            reply.body
        );
    }
    for se in [now + DAY + SKEW + 60, now + 365 * DAY, u64::MAX] {
        let reply = with_expiry(se).get("/enrollments/nobody").await?;
        assert_eq!(
            (reply.status, reply.error_code()),
            (401, Some(401002)),
            "se = {se}: {:?}",
            reply.body
        );
    }
    // The operator's tokens too.
    let operator = SymmetricKey::from_base64(system.server.operator_key())?;
    let far =
        anonymous
            .clone()
            .with_token(create_token(&host, &operator, u64::MAX, Some("operator")));
    assert_eq!(far.get("/tenants").await?.status, 401);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_tokens_must_name_this_service() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let anonymous = Service::anonymous(&system)?;
    let operator_key = system.server.operator_key().to_owned();
    let signed_for = |sr: &str| {
        anonymous
            .clone()
            .with_token(token(sr, "operator", &operator_key, 3600))
    };
    // The service's own names: its listen address and the certificate's.
    for sr in [
        system.service_host.clone(),
        format!("{}:443", system.service_host),
        "localhost".to_owned(),
    ] {
        let reply = signed_for(&sr).get("/tenants").await?;
        assert_eq!(reply.status, 200, "sr = {sr}: {:?}", reply.body);
    }
    // Any other audience, even with the right key: a tenant's host, another
    // deployment, anything at all.
    for sr in [
        "evil.example",
        "anything",
        "contoso.localhost",
        "127.0.0.1.evil",
    ] {
        let reply = signed_for(sr).get("/tenants").await?;
        assert_eq!(
            (reply.status, reply.error_code()),
            (401, Some(401002)),
            "sr = {sr}: {:?}",
            reply.body
        );
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_never_comes_from_the_host_header() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = enrolled(&system, "loc-dev").await?;
    let scope = system.scope().to_string();
    let (status, headers, answer) = register(
        &system,
        "loc-dev",
        &key,
        unix_now() + 3600,
        &[("host", "evil.example")],
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let location = headers["location"].to_str()?;
    assert!(!location.contains("evil.example"), "{location}");
    // The certificate's first name (the device address; port 443 is implied).
    assert_eq!(
        location,
        format!(
            "https://{}/{scope}/registrations/loc-dev/register",
            system.device_host
        )
    );
    system.stop().await;

    // A configured public host wins, whatever the client says.
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.device.public_host = Some("dps.example.test".to_owned()),
        ..SystemOptions::default()
    })
    .await?;
    let key = enrolled(&system, "loc-dev").await?;
    let (status, headers, answer) = register(
        &system,
        "loc-dev",
        &key,
        unix_now() + 3600,
        &[("host", "evil.example")],
    )
    .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        headers["location"].to_str()?,
        format!(
            "https://dps.example.test/{}/registrations/loc-dev/register",
            system.scope()
        )
    );
    system.stop().await;
    Ok(())
}
