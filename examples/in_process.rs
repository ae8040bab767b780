//! Run dps inside your own process, start to finish.
//!
//! 1. `Server::builder(config)` with ephemeral loopback ports, an
//!    in-memory store and the in-process IoT hub emulator (feature
//!    `embedded`), which also declares a `default` tenant linked to the
//!    emulated hub. `start()` returns once every listener accepts.
//! 2. An administrator creates a symmetric-key enrollment through the
//!    tenant's service API (`dps_client::admin`), trusting the server's
//!    development CA (`RunningServer::trust_pem`).
//! 3. The device provisions over HTTPS with `dps_client::ProvisioningClient`
//!    and learns its hub and device id.
//! 4. The administrator reads the registration record back.
//! 5. `shutdown().await` stops the listeners and lets open requests finish
//!    (dropping the server would stop it too, without waiting).
//!
//! Run: `cargo run -p dps-examples --example in_process`.

use std::path::Path;

use anyhow::Context as _;
use dps_client::admin::{AdminClient, Collection, ConnectionString, Credentials};
use dps_client::{Credential, ProvisioningClient, TlsTrust};
use dps_model::tenant::OWNER_POLICY;
use dps_service::server::{Listeners, Server};
use dps_service::ServiceConfig;
use dps_storage::MemoryStore;
use serde_json::json;

/// What the run saw.
#[derive(Debug)]
pub struct Outcome {
    /// The hub the device was assigned to.
    pub assigned_hub: String,
    /// Its device id there.
    pub device_id: String,
    /// The registration record the service API returned.
    pub record: serde_json::Value,
}

/// Start a server keeping its files in `data_dir`, enroll and provision
/// one device, read its registration, stop.
pub async fn run(data_dir: &Path) -> anyhow::Result<Outcome> {
    let mut config = ServiceConfig {
        data_dir: data_dir.to_owned(),
        ..ServiceConfig::default()
    };
    config.device.listen = "127.0.0.1:0".parse()?;
    config.service.listen = "127.0.0.1:0".parse()?;
    let server = Server::builder(config)
        .store(MemoryStore::new())
        .hub_emulator()
        .listeners(Listeners {
            device_https: true,
            service: true,
            ..Listeners::none()
        })
        .start()
        .await?;
    println!("{server:?}");

    // The administrator: the tenant owner's connection string.
    let tenant = server.tenants().first().context("the default tenant")?;
    let owner = tenant
        .connection_string(OWNER_POLICY)
        .context("owner policy")?;
    let trust = TlsTrust::new(false, &[server.trust_pem()])?;
    let service = server.service_addr().context("service API")?.to_string();
    let admin = AdminClient::new(
        service,
        Credentials::Policy(ConnectionString::parse(&owner)?),
        &trust,
    )?;
    let key = dps_attestation::keys::generate_key();
    let enrollment = json!({
        "registrationId": "thermostat-1",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        "initialTwin": {"properties": {"desired": {"setPoint": 21}}}
    });
    admin
        .put_record(Collection::Enrollments, &enrollment, None)
        .await?;

    // The device: ID scope, registration id and key are all it knows.
    let device = server.device_addr().context("device endpoint")?.to_string();
    let registration =
        ProvisioningClient::builder(device, tenant.id_scope.as_str(), "thermostat-1")
            .credential(Credential::symmetric_key(&key)?)
            .trust_ca_pem(server.trust_pem().to_owned())
            .build()?
            .register()
            .await?;
    println!(
        "thermostat-1 is {} on {}",
        registration.device_id, registration.assigned_hub
    );

    let record = admin.get_registration("thermostat-1").await?;
    println!("registration record: {record:#}");
    server.shutdown().await;
    Ok(Outcome {
        assigned_hub: registration.assigned_hub,
        device_id: registration.device_id,
        record,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    run(data_dir.path()).await?;
    Ok(())
}
