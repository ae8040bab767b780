//! The Rust device client (`dps-client`) against the real server, one test
//! per credential type, each ending with the device checked on the hub
//! emulator.

use std::time::{Duration, Instant};

use anyhow::Result;
use dps_attestation::keys::{derive_device_key, generate_key};
use dps_attestation::sas::SymmetricKey;
use dps_client::{Credential, ProvisioningClient, Registration};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::*;
use serde_json::json;

use dps_e2e::certs;

/// A client for `registration_id` that trusts only the test server's CA.
pub(crate) fn client(
    system: &TestSystem,
    registration_id: &str,
    credential: Credential,
) -> dps_client::ProvisioningClientBuilder {
    ProvisioningClient::builder(
        system.device_host.clone(),
        system.scope().to_string(),
        registration_id,
    )
    .credential(credential)
    .system_roots(false)
    .trust_ca_pem(system.server.trust_pem().to_owned())
    .timeout(Duration::from_secs(30))
}

pub(crate) async fn put_enrollment(system: &TestSystem, enrollment: serde_json::Value) {
    let enrollment =
        IndividualEnrollment::from_json(enrollment.to_string().as_bytes()).expect("enrollment");
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await
        .expect("stored");
}

pub(crate) async fn put_group(system: &TestSystem, group: serde_json::Value) {
    let group = EnrollmentGroup::from_json(group.to_string().as_bytes()).expect("group");
    system
        .server
        .store()
        .put_enrollment_group(system.scope(), group, Precondition::None)
        .await
        .expect("stored");
}

/// Add a verified CA certificate `name` to the test tenant (for X.509 groups).
pub(crate) async fn trust_verified_ca(system: &TestSystem, name: &str, pem: &str) -> Result<()> {
    let mut tenant = system.tenant.clone();
    tenant.ca_certificates.push(CaCertificate {
        name: name.to_owned(),
        certificate: pem.to_owned(),
        info: None,
        is_verified: true,
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
    Ok(())
}

fn hub_key(system: &TestSystem, hub: &str, device_id: &str) -> Option<String> {
    system
        .hubs
        .device(hub, device_id)?
        .authentication?
        .symmetric_key?
        .primary_key
}

fn assert_assigned(registration: &Registration, registration_id: &str) {
    assert_eq!(registration.assigned_hub, "hub-a.test");
    assert_eq!(registration.device_id, registration_id);
    assert_eq!(registration.registration_id, registration_id);
    assert_eq!(
        registration.substatus,
        Some(RegistrationSubstatus::InitialAssignment)
    );
    assert_eq!(registration.raw.status, RegistrationStatus::Assigned);
}

#[tokio::test]
async fn symmetric_key_individual_enrollment_honours_retry_after() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = generate_key();
    put_enrollment(
        &system,
        json!({"registrationId": "rs-sym-1", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": key, "secondaryKey": generate_key()}},
            "initialTwin": {"tags": {"from": "rust"}}}),
    )
    .await;

    let started = Instant::now();
    let registration = client(&system, "rs-sym-1", Credential::symmetric_key(&key)?)
        .build()?
        .register()
        .await?;
    let elapsed = started.elapsed();
    assert_assigned(&registration, "rs-sym-1");
    // The server answers 202 with Retry-After: 1; the client waits for it once.
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(
        registration.hub_connection_string.as_deref(),
        Some(format!("HostName=hub-a.test;DeviceId=rs-sym-1;SharedAccessKey={key}").as_str())
    );
    assert_eq!(
        hub_key(&system, "hub-a.test", "rs-sym-1").as_deref(),
        Some(key.as_str())
    );
    let twin = system.hubs.twin("hub-a.test", "rs-sym-1").expect("twin");
    assert_eq!(twin.tags.expect("tags")["from"], "rust");
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn group_device_registers_with_its_derived_key() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let group_key = generate_key();
    put_group(
        &system,
        json!({"enrollmentGroupId": "rs-group", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": group_key, "secondaryKey": generate_key()}}}),
    )
    .await;
    let registration = client(
        &system,
        "rs-grp-dev-1",
        Credential::group_key(&group_key, "rs-grp-dev-1")?,
    )
    .poll_interval(Duration::from_millis(50))
    .build()?
    .register()
    .await?;
    assert_assigned(&registration, "rs-grp-dev-1");
    assert_eq!(
        registration
            .raw
            .symmetric_key
            .as_ref()
            .and_then(|s| s.enrollment_group_id.as_deref()),
        Some("rs-group")
    );
    let derived =
        derive_device_key(&SymmetricKey::from_base64(&group_key)?, "rs-grp-dev-1").to_base64();
    assert_eq!(
        hub_key(&system, "hub-a.test", "rs-grp-dev-1").as_deref(),
        Some(derived.as_str())
    );
    assert!(registration
        .hub_connection_string
        .expect("symmetric-key devices get a connection string")
        .ends_with(&format!("SharedAccessKey={derived}")));
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn x509_individual_enrollment_with_a_self_signed_certificate() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let device = certs::self_signed("rs-x509-ind", false);
    put_enrollment(
        &system,
        json!({"registrationId": "rs-x509-ind", "attestation": {"type": "x509",
            "x509": {"clientCertificates": {"primary": {"certificate": device.pem()}}}}}),
    )
    .await;
    let registration = client(
        &system,
        "rs-x509-ind",
        Credential::X509 {
            chain_pem: device.pem(),
            key_pem: device.key_pem(),
        },
    )
    .poll_interval(Duration::from_millis(50))
    .build()?
    .register()
    .await?;
    assert_assigned(&registration, "rs-x509-ind");
    assert!(registration.hub_connection_string.is_none());
    let info = registration
        .raw
        .x509
        .as_ref()
        .and_then(|x| x.certificate_info.as_ref())
        .expect("certificateInfo");
    let hub_device = system
        .hubs
        .device("hub-a.test", "rs-x509-ind")
        .expect("device on the hub");
    let thumbprint = hub_device
        .authentication
        .and_then(|a| a.x509_thumbprint)
        .and_then(|t| t.primary_thumbprint)
        .expect("thumbprint");
    assert!(thumbprint.eq_ignore_ascii_case(&info.sha256_thumbprint));
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn x509_group_through_a_verified_ca_and_an_intermediate() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let root = certs::self_signed("rs-root-ca", true);
    let intermediate = certs::signed_by("rs-intermediate", true, &root);
    let leaf = certs::signed_by("rs-x509-grp-1", false, &intermediate);
    trust_verified_ca(&system, "rs-root", &root.pem()).await?;
    put_group(
        &system,
        json!({"enrollmentGroupId": "rs-x509-group", "attestation": {"type": "x509",
            "x509": {"caReferences": {"primary": "rs-root"}}}}),
    )
    .await;
    let credential = Credential::X509 {
        chain_pem: format!("{}{}", leaf.pem(), intermediate.pem()),
        key_pem: leaf.key_pem(),
    };
    let registration = client(&system, "rs-x509-grp-1", credential)
        .poll_interval(Duration::from_millis(50))
        .build()?
        .register()
        .await?;
    assert_assigned(&registration, "rs-x509-grp-1");
    let x509 = registration.raw.x509.as_ref().expect("x509 result");
    assert_eq!(x509.enrollment_group_id.as_deref(), Some("rs-x509-group"));
    assert!(system.hubs.device("hub-a.test", "rs-x509-grp-1").is_some());

    // Without the intermediate the chain cannot reach the verified root.
    let alone = Credential::X509 {
        chain_pem: leaf.pem(),
        key_pem: leaf.key_pem(),
    };
    let refused = client(&system, "rs-x509-grp-1", alone)
        .build()?
        .register()
        .await
        .expect_err("a chain without its intermediate");
    assert!(
        matches!(
            refused,
            dps_client::ClientError::Authentication {
                status: 401,
                error_code: Some(401002),
                ..
            }
        ),
        "{refused:?}"
    );
    system.stop().await;
    Ok(())
}
