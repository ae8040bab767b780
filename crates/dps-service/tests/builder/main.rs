//! `Server::builder`: replaced parts are the ones used, listeners are the
//! ones asked for, and a server that cannot take its ports never opens its
//! store.

#[cfg(feature = "embedded")]
mod embedded;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use dps_client::admin::{AdminClient, Collection, ConnectionString, Credentials};
use dps_client::{Credential, ProvisioningClient, TlsTrust};
use dps_model::{IdScope, RegistrationId};
use dps_service::data_lock::{DataDirLock, LOCK_FILE};
use dps_service::server::{policy_url, Listeners, RunningServer, Server};
use dps_service::tls::ServerIdentity;
use dps_service::ServiceError;
use dps_storage::{MemoryStore, Store};
use serde_json::json;

use support::{AlwaysSecondHub, BySite, RecordingHubs, SecondHubNearest, HUBS};

/// Create a symmetric-key enrollment through the server's service API, as
/// the tenant's owner; returns the device key.
async fn enroll(server: &RunningServer, id: &str, policy: Option<&str>) -> Result<String> {
    let tenant = &server.tenants()[0];
    let owner = tenant
        .connection_string(dps_model::tenant::OWNER_POLICY)
        .context("owner policy")?;
    let admin = AdminClient::new(
        server
            .service_addr()
            .context("service listener")?
            .to_string(),
        Credentials::Policy(ConnectionString::parse(&owner)?),
        &TlsTrust::new(false, &[server.trust_pem()])?,
    )?;
    let key = dps_attestation::keys::generate_key();
    let mut enrollment = json!({
        "registrationId": id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
    });
    match policy {
        Some("geoLatency") => enrollment["allocationPolicy"] = json!("geoLatency"),
        Some(url) => {
            enrollment["allocationPolicy"] = json!("custom");
            enrollment["customAllocationDefinition"] =
                json!({"webhookUrl": url, "apiVersion": "2021-10-01"});
        }
        None => {}
    }
    admin
        .put_record(Collection::Enrollments, &enrollment, None)
        .await?;
    Ok(key)
}

fn device(
    server: &RunningServer,
    id: &str,
    key: &str,
    payload: serde_json::Value,
) -> Result<ProvisioningClient> {
    Ok(ProvisioningClient::builder(
        server.device_addr().context("device listener")?.to_string(),
        server.tenants()[0].id_scope.as_str(),
        id,
    )
    .credential(Credential::symmetric_key(key)?)
    .trust_ca_pem(server.trust_pem().to_owned())
    .poll_interval(Duration::from_millis(50))
    .payload(payload)
    .build()?)
}

/// A store, a named policy and a hub connector given to the builder are
/// the ones a registration goes through: the enrollment (created through
/// the service API) selects the policy by its URL, the policy picks the
/// hub from the payload, the connector receives the identity, and the
/// record lands in the given store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_store_policy_and_hub_connector_serve_a_registration() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(MemoryStore::new());
    let hubs = RecordingHubs::default();
    let server = Server::builder(support::config(dir.path()))
        .shared_store(store.clone())
        .policy("By-Site", BySite)
        .hub_connector(hubs.clone())
        .latency_source(SecondHubNearest)
        .start()
        .await?;
    // The SDK-normalised spelling (System.Uri lowercases and adds a '/').
    let key = enroll(&server, "site-device", Some("dps-policy://by-site/")).await?;
    let registration = device(&server, "site-device", &key, json!({"site": "hub-b"}))?
        .register()
        .await?;
    assert_eq!(registration.assigned_hub, HUBS[1]);
    assert_eq!(registration.payload, Some(json!({"site": "hub-b"})));
    assert_eq!(
        hubs.identities(),
        [(HUBS[1].to_owned(), "site-device".to_owned())]
    );
    let scope: &IdScope = &server.tenants()[0].id_scope;
    let record = store
        .registration(scope, &RegistrationId::new("site-device")?)
        .await?
        .context("the registration is in the given store")?;
    assert_eq!(record.assigned_hub.as_deref(), Some(HUBS[1]));
    assert!(
        !dir.path().join("dps.db").exists(),
        "no SQLite store was opened beside the given one"
    );

    // The given latency source is the one geoLatency reads.
    for id in ["near-device-1", "near-device-2"] {
        let key = enroll(&server, id, Some("geoLatency")).await?;
        let registration = device(&server, id, &key, json!({}))?.register().await?;
        assert_eq!(registration.assigned_hub, HUBS[1], "{id}");
    }
    assert!(
        server.live_latency().is_none(),
        "no prober beside the source"
    );

    // The service API refuses a URL naming no registered policy...
    let refused = enroll(&server, "lost-device", Some(&policy_url("nowhere")))
        .await
        .expect_err("no policy is registered as nowhere");
    let text = format!("{refused:#}");
    assert!(text.contains("400") && text.contains("nowhere"), "{text}");
    // ...and an enrollment that names one anyway (written by a replica
    // that has it) fails its registration by name.
    let key = dps_attestation::keys::generate_key();
    let enrollment: dps_model::IndividualEnrollment = serde_json::from_value(json!({
        "registrationId": "lost-device",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": policy_url("nowhere"), "apiVersion": "2021-10-01"},
    }))?;
    store
        .put_enrollment(scope, enrollment, dps_model::Precondition::None)
        .await?;
    let err = device(&server, "lost-device", &key, json!({}))?
        .register()
        .await
        .expect_err("no policy is registered as nowhere");
    assert!(err.to_string().contains("nowhere"), "{err}");
    server.shutdown().await;
    Ok(())
}

/// A replaced built-in serves every enrollment that names none: the
/// tenant's default policy (`hashed`) is the replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_built_in_policy_serves_the_tenant_default() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::builder(support::config(dir.path()))
        .store(MemoryStore::new())
        .replace_policy(AlwaysSecondHub)
        .hub_connector(RecordingHubs::default())
        .start()
        .await?;
    for id in ["default-device-1", "default-device-2", "default-device-3"] {
        let key = enroll(&server, id, None).await?;
        let registration = device(&server, id, &key, json!({}))?.register().await?;
        assert_eq!(registration.assigned_hub, HUBS[1], "{id}");
    }
    server.shutdown().await;
    Ok(())
}

/// Only the listeners asked for are bound; a given TLS identity is the
/// one presented (no development CA is generated).
#[tokio::test]
async fn a_listener_subset_binds_only_those_listeners() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let identity = ServerIdentity::generate_in_memory(&["127.0.0.1".to_owned()])?;
    let server = Server::builder(support::config(dir.path()))
        .tls(identity.clone())
        .store(MemoryStore::new())
        .hub_connector(RecordingHubs::default())
        .listeners(Listeners {
            device_https: true,
            service: true,
            ..Listeners::none()
        })
        .start()
        .await?;
    assert!(server.device_addr().is_some());
    assert!(server.service_addr().is_some());
    assert_eq!(server.mqtt_addr(), None);
    assert_eq!(server.admin_addr(), None);
    assert!(server.connections().mqtt.is_none());
    assert_eq!(server.trust_pem(), identity.trust_pem);
    assert!(
        !dir.path().join("tls").exists(),
        "a development CA was made"
    );
    let shown = format!("{server:?}");
    assert!(shown.contains("mqtt_addr: None"), "{shown}");
    assert!(!shown.contains(server.operator_key()), "{shown}");
    server.shutdown().await;

    let err = Server::builder(support::config(dir.path()))
        .listeners(Listeners {
            mqtt_websocket: true,
            ..Listeners::none()
        })
        .start()
        .await
        .expect_err("WebSocket rides on the device listener");
    assert!(err.to_string().contains("WebSocket"), "{err}");
    Ok(())
}

/// Dropping a running server stops its listeners: its ports can be bound
/// again, and its data directory is free for the next server.
#[tokio::test]
async fn dropping_the_server_frees_its_ports_and_data_directory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::builder(support::config(dir.path()))
        .store(MemoryStore::new())
        .start()
        .await?;
    let ports = [
        server.device_addr(),
        server.service_addr(),
        server.mqtt_addr(),
        server.admin_addr(),
    ];
    drop(server);
    DataDirLock::acquire(dir.path()).context("the lock goes with the server")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    for addr in ports.into_iter().flatten() {
        // The accept loops end on their own once they see the signal.
        while let Err(err) = std::net::TcpListener::bind(addr) {
            assert!(Instant::now() < deadline, "{addr} still taken: {err}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

/// A server whose port is taken, or whose data directory is locked by
/// another server, fails naming the port or the directory — and has not
/// opened (or created) the database.
#[tokio::test]
async fn a_taken_port_or_locked_directory_fails_before_the_store_opens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut config = support::config(dir.path());
    config.service.listen = taken.local_addr()?;
    let err = Server::builder(config.clone())
        .start()
        .await
        .expect_err("the service port is taken");
    assert!(
        matches!(&err, ServiceError::Bind { addr, .. } if *addr == taken.local_addr()?),
        "{err}"
    );
    assert!(
        err.to_string().contains(&taken.local_addr()?.to_string()),
        "{err}"
    );
    assert!(!dir.path().join("dps.db").exists(), "the store was opened");
    drop(taken);

    let holder = DataDirLock::acquire(dir.path())?;
    let err = Server::builder(support::config(dir.path()))
        .start()
        .await
        .expect_err("the data directory is locked");
    assert!(err.to_string().contains(LOCK_FILE), "{err}");
    assert!(!dir.path().join("dps.db").exists(), "the store was opened");
    drop(holder);
    Ok(())
}
