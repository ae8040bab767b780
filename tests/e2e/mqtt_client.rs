//! `dps-client` over MQTT and MQTT over WebSocket against our server: the
//! same exchanges as over HTTPS, each ending with the device on the hub.

use std::time::Duration;

use anyhow::Result;
use dps_client::{ClientError, Credential as ClientCredential, ProvisioningClient, Transport};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::RegistrationSubstatus;

use crate::mqtt_fixtures::{self as fixtures, Credential};

fn client(
    system: &TestSystem,
    scope: &str,
    id: &str,
    credential: &Credential,
    transport: Transport,
) -> Result<ProvisioningClient> {
    let credential = match credential {
        Credential::Key(key) => ClientCredential::symmetric_key(key)?,
        Credential::Certificate { chain_pem, key_pem } => ClientCredential::X509 {
            chain_pem: chain_pem.clone(),
            key_pem: key_pem.clone(),
        },
    };
    Ok(
        ProvisioningClient::builder(system.device_host.clone(), scope, id)
            .credential(credential)
            .trust_ca_pem(system.server.trust_pem().to_owned())
            .system_roots(false)
            .transport(transport)
            .timeout(Duration::from_secs(20))
            .build()?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_key_and_x509_devices_provision_over_both_mqtt_transports() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    // Groups first: the tenant view (groups included) is cached for 2 s.
    let mut group_keys = Vec::new();
    for suffix in ["tls", "ws"] {
        let device = format!("client-grp-{suffix}");
        group_keys
            .push(fixtures::symmetric_group(&system, &format!("group-{suffix}"), &device).await?);
    }
    for ((transport, suffix), group_key) in [(Transport::Mqtt, "tls"), (Transport::MqttWs, "ws")]
        .into_iter()
        .zip(group_keys)
    {
        let id = format!("client-sym-{suffix}");
        let key = fixtures::symmetric_individual(&system, &id).await?;
        let registration = client(&system, &scope, &id, &Credential::Key(key), transport)?
            .register()
            .await?;
        assert_eq!(registration.assigned_hub, "hub-a.test");
        assert_eq!(registration.device_id, id);
        assert_eq!(
            registration.substatus,
            Some(RegistrationSubstatus::InitialAssignment)
        );
        fixtures::assert_on_hub(&system, "hub-a.test", &id);
        let twin = system.hubs.twin("hub-a.test", &id).expect("twin");
        assert_eq!(twin.tags.unwrap()["transport"], "mqtt");

        let group_device = format!("client-grp-{suffix}");
        let registration = client(
            &system,
            &scope,
            &group_device,
            &Credential::Key(group_key),
            transport,
        )?
        .register()
        .await?;
        assert_eq!(registration.device_id, group_device);
        fixtures::assert_on_hub(&system, "hub-a.test", &group_device);

        let id = format!("client-x509-{suffix}");
        let credential = fixtures::x509_individual(&system, &id).await?;
        let registration = client(&system, &scope, &id, &credential, transport)?
            .register()
            .await?;
        assert_eq!(registration.device_id, id);
        assert!(registration.hub_connection_string.is_none());
        fixtures::assert_on_hub(&system, "hub-a.test", &id);
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_errors_not_retries() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "client-refused").await?;
    let disabled_key = fixtures::symmetric_individual(&system, "client-off").await?;
    fixtures::disable(&system, "client-off").await?;
    for transport in [Transport::Mqtt, Transport::MqttWs] {
        let cases = [
            // wrong token, unknown scope, unknown enrollment
            (
                scope.clone(),
                "client-refused",
                Credential::Key(dps_attestation::keys::generate_key()),
            ),
            (
                fixtures::unknown_scope(),
                "client-refused",
                Credential::Key(key.clone()),
            ),
            (scope.clone(), "client-nobody", Credential::Key(key.clone())),
        ];
        for (case_scope, id, credential) in cases {
            let started = std::time::Instant::now();
            let err = client(&system, &case_scope, id, &credential, transport)?
                .register()
                .await
                .unwrap_err();
            assert!(
                matches!(err, ClientError::Authentication { status: 401, .. }),
                "{transport:?} {id}: {err}"
            );
            assert!(started.elapsed() < Duration::from_secs(3), "{err}");
        }
        let err = client(
            &system,
            &scope,
            "client-off",
            &Credential::Key(disabled_key.clone()),
            transport,
        )?
        .register()
        .await
        .unwrap_err();
        assert!(matches!(err, ClientError::Disabled), "{transport:?}: {err}");
    }
    assert!(system.hubs.device("hub-a.test", "client-off").is_none());
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_register_answers_assigned_at_once() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    fixtures::synchronous_register(&system).await?;
    let scope = system.scope().to_string();
    for (transport, id) in [
        (Transport::Mqtt, "client-sync-tls"),
        (Transport::MqttWs, "client-sync-ws"),
    ] {
        let key = fixtures::symmetric_individual(&system, id).await?;
        let started = std::time::Instant::now();
        let registration = client(&system, &scope, id, &Credential::Key(key), transport)?
            .register()
            .await?;
        // No poll: no Retry-After wait.
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(registration.device_id, id);
        fixtures::assert_on_hub(&system, "hub-a.test", id);
    }
    system.stop().await;
    Ok(())
}

/// MQTT pointed at the HTTPS port (a common slip: the device port serves
/// HTTPS and MQTT over WebSocket, plain MQTT has its own) names the mistake
/// instead of reporting a garbled MQTT packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_at_the_https_port_says_so() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "client-wrong-port").await?;
    let device_port = system.server.device_addr().expect("device listener").port();
    let error = ProvisioningClient::builder(
        format!("{}:{device_port}", system.device_host),
        scope,
        "client-wrong-port",
    )
    .credential(ClientCredential::symmetric_key(&key)?)
    .trust_ca_pem(system.server.trust_pem().to_owned())
    .system_roots(false)
    .transport(Transport::Mqtt)
    .timeout(Duration::from_secs(10))
    .build()?
    .register()
    .await
    .expect_err("MQTT cannot talk to the HTTPS listener");
    let text = error.to_string();
    assert!(text.contains("answered HTTP, not MQTT"), "{text}");
    assert!(text.contains("8883"), "{text}");
    system.stop().await;
    Ok(())
}
