//! Failures are answers, not crashes: a dead hub, a failing webhook, a
//! throttled tenant — each a documented result with a code and a message
//! naming the cause (never a webhook's answer), stored on the registration
//! record; nothing billed.

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_hub_sim::Fault;
use dps_model::*;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

fn client(system: &TestSystem) -> Client {
    let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes()).expect("CA");
    Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .build()
        .expect("client")
}

async fn enroll(system: &TestSystem, id: &str, extra: Value) -> String {
    let key = generate_key();
    let mut body = json!({"registrationId": id, "attestation": {"type": "symmetricKey",
        "symmetricKey": {"primaryKey": key}}});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let enrollment = IndividualEnrollment::from_json(body.to_string().as_bytes()).unwrap();
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await
        .unwrap();
    key
}

/// Register and poll once; returns (register status, register headers' Retry-After, poll body).
async fn register_and_poll(
    http: &Client,
    system: &TestSystem,
    id: &str,
    key: &str,
) -> (StatusCode, Option<String>, Value) {
    let scope = system.scope().to_string();
    let token = create_token(
        &registration_resource(&scope, id),
        &SymmetricKey::from_base64(key).unwrap(),
        unix_now() + 600,
        Some("registration"),
    );
    let base = format!("https://{}/{scope}/registrations/{id}", system.device_host);
    let response = http
        .put(format!("{base}/register?api-version=2021-06-01"))
        .header("authorization", &token)
        .json(&json!({"registrationId": id}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    if status != StatusCode::ACCEPTED {
        return (status, retry_after, body);
    }
    let operation = body["operationId"].as_str().unwrap();
    let poll: Value = http
        .get(format!(
            "{base}/operations/{operation}?api-version=2021-06-01"
        ))
        .header("authorization", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (status, retry_after, poll)
}

/// Registrations billed so far (enrollment writes are billed too, separately).
async fn billed(system: &TestSystem) -> u64 {
    let now = chrono::Utc::now();
    let report = system
        .server
        .store()
        .operation_report(
            system.scope(),
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    [OperationKind::Registration, OperationKind::ReRegistration]
        .iter()
        .map(|kind| report.totals.get(kind).copied().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_dead_hub_fails_the_registration_with_its_cause_on_the_record() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let http = client(&system);
    let key = enroll(&system, "dead-hub-dev", json!({})).await;
    system.hubs.set_fault("hub-a.test", Fault::Status(503));
    let (status, _, poll) = register_and_poll(&http, &system, "dead-hub-dev", &key).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(poll["status"], "failed", "{poll}");
    let state = &poll["registrationState"];
    assert_eq!(state["errorCode"].as_i64().unwrap() / 1000, 500, "{poll}");
    assert!(
        state["errorMessage"]
            .as_str()
            .unwrap()
            .contains("hub-a.test"),
        "{poll}"
    );
    let record = system
        .server
        .store()
        .registration(system.scope(), &RegistrationId::new("dead-hub-dev")?)
        .await?
        .expect("the failure is recorded for administrators");
    assert_eq!(record.status, RegistrationStatus::Failed);
    assert!(record.error_message.unwrap().contains("503"));
    assert_eq!(billed(&system).await, 0, "failures are not billed");

    // The hub recovers: the same device now provisions, billed once.
    system.hubs.clear_fault("hub-a.test");
    let (_, _, poll) = register_and_poll(&http, &system, "dead-hub-dev", &key).await;
    assert_eq!(poll["status"], "assigned", "{poll}");
    assert_eq!(billed(&system).await, 1);
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_failing_webhook_names_its_status_never_its_body() -> Result<()> {
    use axum::http::StatusCode as AxumStatus;
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/alloc",
        post(|| async { (AxumStatus::BAD_REQUEST, "unknown device model") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/alloc", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    // The operator allows this loopback webhook (the default refuses it).
    let system = TestSystem::start(SystemOptions {
        configure: &|config| {
            config.egress.allowed_networks = vec!["127.0.0.0/8".to_owned()];
            config.egress.allow_http_networks = vec!["127.0.0.0/8".to_owned()];
        },
        ..SystemOptions::default()
    })
    .await?;
    let http = client(&system);
    let key = enroll(
        &system,
        "hook-dev",
        json!({"allocationPolicy": "custom",
               "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"}}),
    )
    .await;
    let (_, _, poll) = register_and_poll(&http, &system, "hook-dev", &key).await;
    assert_eq!(poll["status"], "failed", "{poll}");
    let state = &poll["registrationState"];
    assert_eq!(state["errorCode"], 400207, "{poll}");
    let message = state["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("status code: 400") && !message.contains("unknown device model"),
        "{message}"
    );
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn over_the_rate_a_tenant_gets_429_with_retry_after() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| {
            config.throttling.registrations_per_second = 1;
            config.throttling.burst = 2;
        },
        ..SystemOptions::default()
    })
    .await?;
    let http = client(&system);
    let key = enroll(&system, "busy-dev", json!({})).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let (status, after, body) = register_and_poll(&http, &system, "busy-dev", &key).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["errorCode"], 429001, "{body}");
            retry_after = after;
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn tenants_declared_in_the_configuration_are_created_once() -> Result<()> {
    use dps_service::config::{LinkedHubBootstrap, TenantBootstrap};
    let dir = tempfile::tempdir()?;
    let make = |dir: &std::path::Path| {
        let mut config = dps_service::ServiceConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        };
        config.device.listen = "127.0.0.1:0".parse().unwrap();
        config.service.listen = "127.0.0.2:0".parse().unwrap();
        config.tenants = vec![TenantBootstrap {
            name: "configured".to_owned(),
            service_host_name: None,
            id_scope: Some("0ne0000C0F1".to_owned()),
            linked_hubs: vec![LinkedHubBootstrap {
                connection_string: format!(
                    "HostName=hub-x.test;SharedAccessKeyName=iothubowner;SharedAccessKey={}",
                    generate_key()
                ),
                allocation_weight: 3,
                location: None,
            }],
        }];
        config
    };
    let server = dps_service::server::start(make(dir.path())).await?;
    let first = server.tenants()[0].clone();
    assert_eq!(first.id_scope.as_str(), "0ne0000C0F1");
    assert_eq!(first.service_host_name, "configured.localhost");
    assert_eq!(first.linked_hubs[0].host_name, "hub-x.test");
    assert_eq!(first.linked_hubs[0].allocation_weight, 3);
    let operator_key = server.operator_key().to_owned();
    server.shutdown().await;
    // A restart keeps the tenant (same keys), the hub link and the operator key.
    let server = dps_service::server::start(make(dir.path())).await?;
    assert_eq!(server.tenants()[0].access_policies, first.access_policies);
    assert_eq!(server.operator_key(), operator_key);
    assert_eq!(server.store().list_tenants().await?.len(), 1);
    server.shutdown().await;
    Ok(())
}
