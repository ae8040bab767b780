//! What the dps examples share, so that each example shows only its own
//! part. Run them with `cargo run -p dps-examples --example NAME`:
//!
//! * `in_process`: start a server on ephemeral ports, enroll a device
//!   through the service API, provision it with `dps-client`, read its
//!   registration, shut down — every step spelled out;
//! * `custom_policy`: an allocation policy of your own beside the built-ins;
//! * `custom_store`: a store wrapping another one to audit every write;
//! * `custom_hub`: a hub connector that keeps device identities in your own
//!   inventory instead of an IoT hub.
//!
//! `docs/embedding.md` walks through them.

#![deny(missing_docs)]

use std::path::Path;

use anyhow::Context as _;
use dps_client::admin::{AdminClient, Collection, ConnectionString, Credentials};
use dps_client::{Credential, ProvisioningClient, Registration, TlsTrust};
use dps_hub::{HubClientOptions, HubDirectory};
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::tenant::OWNER_POLICY;
use dps_service::config::{LinkedHubBootstrap, TenantBootstrap};
use dps_service::server::{Listeners, RunningServer};
use dps_service::ServiceConfig;
use serde_json::{json, Value};

/// A configuration serving on ephemeral loopback ports, keeping its files
/// (lock, development certificate) in `data_dir`.
pub fn local_config(data_dir: &Path) -> ServiceConfig {
    let mut config = ServiceConfig {
        data_dir: data_dir.to_owned(),
        ..ServiceConfig::default()
    };
    config.device.listen = ([127, 0, 0, 1], 0).into();
    config.service.listen = ([127, 0, 0, 1], 0).into();
    config
}

/// Device HTTPS and the service API: what the examples use.
pub fn device_and_service() -> Listeners {
    Listeners {
        device_https: true,
        service: true,
        ..Listeners::none()
    }
}

/// A tenant whose service API answers on the loopback address, linked to
/// hubs given as (connection string, location).
pub fn tenant(name: &str, hubs: &[(&str, Option<&str>)]) -> TenantBootstrap {
    TenantBootstrap {
        name: name.to_owned(),
        service_host_name: Some("127.0.0.1".to_owned()),
        id_scope: None,
        linked_hubs: hubs
            .iter()
            .map(|(connection_string, location)| LinkedHubBootstrap {
                connection_string: (*connection_string).to_owned(),
                allocation_weight: 1,
                location: location.map(str::to_owned),
            })
            .collect(),
    }
}

/// An IoT hub emulator serving `hosts` on loopback, and the hub connector
/// that reaches it (the REST client of real hubs, trusting its CA).
pub async fn emulated_hubs(hosts: &[&str]) -> anyhow::Result<(RunningHubSim, HubDirectory)> {
    let sim = HubSim::start(HubSimConfig::new(([127, 0, 0, 1], 0).into(), hosts)).await?;
    let mut options = HubClientOptions::default().trust_ca_pem(sim.ca_pem().context("CA")?);
    for host in hosts {
        options = options.resolve(*host, sim.addr());
    }
    Ok((sim, HubDirectory::new(options)?))
}

/// The service API of the server's first tenant, as its owner.
pub fn admin(server: &RunningServer) -> anyhow::Result<AdminClient> {
    let tenant = server.tenants().first().context("no tenant")?;
    let owner = tenant
        .connection_string(OWNER_POLICY)
        .context("no owner policy")?;
    let trust = TlsTrust::new(false, &[server.trust_pem()])?;
    let endpoint = server.service_addr().context("service API off")?;
    let credentials = Credentials::Policy(ConnectionString::parse(&owner)?);
    Ok(AdminClient::new(endpoint.to_string(), credentials, &trust)?)
}

/// Create a symmetric-key enrollment for `registration_id` with the extra
/// members of `settings` (an object); returns the device's key.
pub async fn enroll(
    admin: &AdminClient,
    registration_id: &str,
    settings: Value,
) -> anyhow::Result<String> {
    let key = dps_attestation::keys::generate_key();
    let mut enrollment = json!({
        "registrationId": registration_id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
    });
    if let (Some(record), Value::Object(extra)) = (enrollment.as_object_mut(), settings) {
        record.extend(extra);
    }
    admin
        .put_record(Collection::Enrollments, &enrollment, None)
        .await?;
    Ok(key)
}

/// Provision `registration_id` over the device endpoint with `dps-client`,
/// sending `payload`.
pub async fn register(
    server: &RunningServer,
    registration_id: &str,
    key: &str,
    payload: Option<Value>,
) -> anyhow::Result<Registration> {
    let tenant = server.tenants().first().context("no tenant")?;
    let endpoint = server.device_addr().context("device endpoint off")?;
    let mut builder = ProvisioningClient::builder(
        endpoint.to_string(),
        tenant.id_scope.as_str(),
        registration_id,
    )
    .credential(Credential::symmetric_key(key)?)
    .trust_ca_pem(server.trust_pem().to_owned());
    if let Some(payload) = payload {
        builder = builder.payload(payload);
    }
    Ok(builder.build()?.register().await?)
}
