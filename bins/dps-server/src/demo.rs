//! `--demo`: the service with embedded defaults plus everything needed to
//! watch a device get provisioned — an in-process IoT hub emulator, a demo
//! tenant with that hub linked, a symmetric-key enrollment, and a device
//! registering through `dps-client`.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context as _;
use dps_client::{Credential, ProvisioningClient};
use dps_hub_sim::{HubSim, HubSimConfig};
use dps_model::{IndividualEnrollment, LinkedHub, Precondition, RegistrationId, Tenant};
use dps_service::ServiceConfig;

const HUB: &str = "demo-hub.localhost";
const DEVICE: &str = "demo-device-1";

/// Unprivileged loopback ports, so the demo runs without root.
pub(crate) fn configure(config: &mut ServiceConfig) {
    config.device.listen = SocketAddr::from(([127, 0, 0, 1], 8443));
    config.service.listen = SocketAddr::from(([127, 0, 0, 1], 9443));
}

/// Start the emulator, then the server, then provision one device.
pub(crate) async fn run(mut config: ServiceConfig) -> anyhow::Result<()> {
    let hubs = HubSim::start(HubSimConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &[HUB],
    ))
    .await
    .context("starting the hub emulator")?;
    std::fs::create_dir_all(&config.data_dir)?;
    let hub_ca = config.data_dir.join("demo-hub-ca.pem");
    std::fs::write(&hub_ca, hubs.ca_pem().unwrap_or_default())?;
    config.hubs.trusted_ca_files.push(hub_ca);
    config.hubs.resolve.insert(HUB.to_owned(), hubs.addr());

    let server = dps_service::server::start(config).await?;
    let store = &server.store;
    let tenant = match store.tenant_by_name("demo").await? {
        Some(tenant) => tenant,
        None => {
            let mut tenant = Tenant::new("demo", server.service_addr.ip().to_string())?;
            tenant.linked_hubs.push(LinkedHub {
                host_name: HUB.to_owned(),
                connection_string: hubs.connection_string(HUB).context("demo hub")?,
                allocation_weight: 1,
                apply_allocation_policy: true,
                location: None,
            });
            store.create_tenant(tenant).await?
        }
    };
    let scope = tenant.id_scope.clone();
    // The emulator's keys change on every start: keep the link current.
    let mut current = tenant.clone();
    current.linked_hubs[0].connection_string = hubs.connection_string(HUB).context("demo hub")?;
    store.replace_tenant(current, Precondition::None).await?;

    let key = dps_attestation::keys::generate_key();
    let enrollment: IndividualEnrollment = dps_model::from_json(
        serde_json::json!({
            "registrationId": DEVICE,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
            "initialTwin": {"tags": {"demo": true}, "properties": {"desired": {"telemetryInterval": 30}}}
        })
        .to_string()
        .as_bytes(),
    )?;
    store
        .put_enrollment(&scope, enrollment, Precondition::None)
        .await?;

    println!(
        "device endpoint:  https://{}  (ID scope {scope})",
        server.device_addr
    );
    println!("service endpoint: https://{}", server.service_addr);
    println!(
        "owner connection string: {}",
        tenant
            .connection_string(dps_model::tenant::OWNER_POLICY)
            .unwrap_or_default()
    );
    let started = Instant::now();
    let registration =
        ProvisioningClient::builder(server.device_addr.to_string(), scope.as_str(), DEVICE)
            .credential(Credential::symmetric_key(&key)?)
            .trust_ca_pem(server.trust_pem.clone())
            .build()?
            .register()
            .await?;
    println!(
        "provisioned {DEVICE} in {} ms: hub {}, device id {}, substatus {:?}",
        started.elapsed().as_millis(),
        registration.assigned_hub,
        registration.device_id,
        registration.substatus,
    );
    let record = store
        .registration(&scope, &RegistrationId::new(DEVICE)?)
        .await?;
    println!(
        "registration record: {}",
        serde_json::to_string(&record.map(|r| r.to_state()))?
    );
    println!(
        "hub twin: {}",
        serde_json::to_string(&hubs.twin(HUB, DEVICE))?
    );
    println!("serving; press Ctrl-C to stop");
    crate::wait_for_signal().await;
    server.shutdown().await;
    hubs.shutdown().await;
    Ok(())
}
