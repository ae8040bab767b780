//! Each class of `dps_client::ClientError`, produced by the real server (or
//! a real closed port), so a device can tell a wrong key from a broken
//! network from a sick service.

use std::time::{Duration, Instant};

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_client::{ClientError, Credential, ProvisioningClient};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_hub_sim::Fault;
use serde_json::json;

use crate::client_credentials::{client, put_enrollment};

async fn enrolled(system: &TestSystem, id: &str, status: &str) -> String {
    let key = generate_key();
    put_enrollment(
        system,
        json!({"registrationId": id, "provisioningStatus": status,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}}),
    )
    .await;
    key
}

#[tokio::test]
async fn wrong_key_and_unknown_scope_are_authentication_errors() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    enrolled(&system, "rs-auth", "enabled").await;

    let wrong_key = client(
        &system,
        "rs-auth",
        Credential::symmetric_key(&generate_key())?,
    )
    .build()?
    .register()
    .await
    .expect_err("a wrong key");
    let ClientError::Authentication {
        status,
        error_code,
        message,
    } = &wrong_key
    else {
        panic!("expected Authentication, got {wrong_key:?}")
    };
    assert_eq!((*status, *error_code), (401, Some(401002)));
    assert!(!wrong_key.is_transient());

    let unknown_scope =
        ProvisioningClient::builder(system.device_host.clone(), "0ne0000FFFF", "rs-auth")
            .credential(Credential::symmetric_key(&generate_key())?)
            .system_roots(false)
            .trust_ca_pem(system.server.trust_pem().to_owned())
            .build()?
            .register()
            .await
            .expect_err("an unknown scope");
    match &unknown_scope {
        ClientError::Authentication {
            status: 401,
            error_code: Some(401002),
            message: other,
        } => assert_eq!(other, message, "scope and key refusals must look alike"),
        other => panic!("expected Authentication, got {other:?}"),
    }
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn closed_port_and_untrusted_server_are_network_errors() -> Result<()> {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let closed = ProvisioningClient::builder(format!("127.0.0.1:{port}"), "0ne00000A0A", "rs-net")
        .credential(Credential::symmetric_key(&generate_key())?)
        .timeout(Duration::from_secs(10))
        .build()?
        .register()
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&closed, ClientError::Network { endpoint, .. } if endpoint.ends_with(&port.to_string())),
        "{closed:?}"
    );
    assert!(closed.is_transient());

    // The real server, but its development CA is not trusted.
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = enrolled(&system, "rs-net", "enabled").await;
    let untrusted = ProvisioningClient::builder(
        system.device_host.clone(),
        system.scope().to_string(),
        "rs-net",
    )
    .credential(Credential::symmetric_key(&key)?)
    .build()?
    .register()
    .await
    .expect_err("an untrusted server certificate");
    match &untrusted {
        ClientError::Network { reason, .. } => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("expected Network, got {other:?}"),
    }
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn malformed_registration_id_is_a_service_error() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let error = client(
        &system,
        "not a valid id!",
        Credential::symmetric_key(&generate_key())?,
    )
    .build()?
    .register()
    .await
    .expect_err("a malformed id");
    match &error {
        ClientError::Service {
            status: 400,
            error_code: Some(code),
            ..
        } => assert_eq!(code / 1000, 400, "{error:?}"),
        other => panic!("expected Service 400, got {other:?}"),
    }
    assert!(!error.is_transient());
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn disabled_enrollment_is_disabled() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = enrolled(&system, "rs-disabled", "disabled").await;
    let error = client(&system, "rs-disabled", Credential::symmetric_key(&key)?)
        .poll_interval(Duration::from_millis(50))
        .build()?
        .register()
        .await
        .expect_err("a disabled enrollment");
    assert!(matches!(error, ClientError::Disabled), "{error:?}");
    assert!(system.hubs.device("hub-a.test", "rs-disabled").is_none());
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn unreachable_hub_is_a_failed_registration() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.hubs.request_timeout_ms = 1_500,
        ..SystemOptions::default()
    })
    .await?;
    let key = enrolled(&system, "rs-dead-hub", "enabled").await;
    assert!(system.hubs.set_fault("hub-a.test", Fault::Unreachable));
    let error = client(&system, "rs-dead-hub", Credential::symmetric_key(&key)?)
        .poll_interval(Duration::from_millis(50))
        .build()?
        .register()
        .await
        .expect_err("the only hub is down");
    match &error {
        ClientError::RegistrationFailed {
            error_code: Some(code),
            message,
        } => {
            assert_eq!(code / 1000, 500, "{error:?}");
            assert!(message.contains("hub-a.test"), "{message}");
        }
        other => panic!("expected RegistrationFailed, got {other:?}"),
    }

    // Once the hub is back the same device registers.
    system.hubs.clear_fault("hub-a.test");
    let registration = client(&system, "rs-dead-hub", Credential::symmetric_key(&key)?)
        .poll_interval(Duration::from_millis(50))
        .build()?
        .register()
        .await?;
    assert_eq!(registration.assigned_hub, "hub-a.test");
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_slow_service_times_out_at_the_deadline() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = enrolled(&system, "rs-slow", "enabled").await;
    // The hub holds every request: registration cannot finish in time.
    assert!(system
        .hubs
        .set_fault("hub-a.test", Fault::Delay(Duration::from_secs(4))));
    let started = Instant::now();
    let error = client(&system, "rs-slow", Credential::symmetric_key(&key)?)
        .timeout(Duration::from_secs(1))
        .build()?
        .register()
        .await
        .expect_err("the deadline passes");
    let elapsed = started.elapsed();
    assert!(
        matches!(error, ClientError::Timeout { seconds: 1 }),
        "{error:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    system.hubs.clear_fault("hub-a.test");
    system.stop().await;
    Ok(())
}
