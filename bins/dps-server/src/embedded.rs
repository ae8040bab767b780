//! Embedded defaults: what `dps-server` runs with no configuration file — an
//! in-process IoT hub emulator (its devices kept in the data directory), a
//! `default` tenant with that hub linked, and a sample device provisioned
//! through `dps-client` so the whole path is seen working.
//!
//! Secrets (the tenant's connection string, a sample device's key) are
//! printed only by the start that created them: start-up output ends up in
//! logs, and later starts say where to fetch them instead.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use dps_client::{Credential, ProvisioningClient};
use dps_hub_sim::{HubSim, HubSimConfig, HubSpec, RunningHubSim, TlsSource};
use dps_model::{IndividualEnrollment, Precondition, Tenant};
use dps_service::config::{LinkedHubBootstrap, TenantBootstrap};
use dps_service::server::RunningServer;
use dps_service::ServiceConfig;

const HUB: &str = "local-hub.localhost";

/// Start the emulator and point the configuration at it: its CA trusted, its
/// name resolved to it, and the `default` tenant linked to it.
pub(crate) async fn start_hub_emulator(
    config: &mut ServiceConfig,
) -> anyhow::Result<RunningHubSim> {
    std::fs::create_dir_all(&config.data_dir)?;
    let hubs = HubSim::start(HubSimConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hubs: vec![HubSpec::new(HUB)],
        data_file: Some(config.data_dir.join("hub-emulator.json")),
        tls: TlsSource::Generate {
            extra_names: Vec::new(),
        },
    })
    .await
    .context("starting the in-process IoT hub emulator")?;
    let hub_ca = config.data_dir.join("hub-emulator-ca.pem");
    std::fs::write(&hub_ca, hubs.ca_pem().unwrap_or_default())?;
    config.hubs.trusted_ca_files.push(hub_ca);
    config.hubs.resolve.insert(HUB.to_owned(), hubs.addr());
    if config.tenants.is_empty() {
        config.tenants.push(TenantBootstrap {
            name: "default".to_owned(),
            service_host_name: Some(config.service.listen.ip().to_string()),
            id_scope: None,
            linked_hubs: vec![LinkedHubBootstrap {
                connection_string: hubs.connection_string(HUB).context("emulated hub")?,
                allocation_weight: 1,
                location: None,
            }],
        });
    }
    Ok(hubs)
}

/// Print how to reach the service and provision a sample device; `started`
/// is when this start began (what was created since is new).
pub(crate) async fn show(
    server: &RunningServer,
    hubs: &RunningHubSim,
    data_dir: &std::path::Path,
    started: SystemTime,
) -> anyhow::Result<()> {
    let Some(tenant) = server.tenants.first() else {
        return Ok(());
    };
    let ca_file = data_dir.join("tls").join("ca.pem");
    println!("device endpoint:    https://{}", server.device_addr);
    println!("service endpoint:   https://{}", server.service_addr);
    if let Some(addr) = server.admin_addr {
        println!("admin (health):     http://{addr}/readyz");
    }
    println!("ID scope:           {}", tenant.id_scope);
    let started_ms = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if tenant.created.timestamp_millis() >= started_ms {
        // The HostName carries no port: say where the service really is.
        println!(
            "service connection: {} (shown only now; with --endpoint {} or --service-endpoint {})",
            tenant
                .connection_string(dps_model::tenant::OWNER_POLICY)
                .unwrap_or_default(),
            server.service_addr,
            server.service_addr
        );
    } else {
        println!(
            "service connection: POST /tenants/{}/listKeys with the operator key",
            tenant.name
        );
    }
    println!("trust this CA:      {}", ca_file.display());
    crate::banner::print_client_hints(
        server.device_addr,
        server.service_addr,
        Some(tenant.id_scope.as_str()),
        Some(&ca_file),
    );

    let (first_key, _) = enroll(server, tenant, "sample-device-1").await?;
    let started = Instant::now();
    let registration = ProvisioningClient::builder(
        server.device_addr.to_string(),
        tenant.id_scope.as_str(),
        "sample-device-1",
    )
    .credential(Credential::symmetric_key(&first_key)?)
    .trust_ca_pem(server.trust_pem.clone())
    .build()?
    .register()
    .await
    .context("provisioning the sample device")?;
    println!(
        "provisioned sample-device-1 in {} ms: hub {}, device id {}, substatus {}; on the hub: {}",
        started.elapsed().as_millis(),
        registration.assigned_hub,
        registration.device_id,
        registration
            .substatus
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "none".to_owned()),
        if hubs.device(HUB, "sample-device-1").is_some() {
            "yes"
        } else {
            "no"
        },
    );
    let (second_key, created) = enroll(server, tenant, "sample-device-2").await?;
    let key = if created {
        second_key
    } else {
        "<primaryKey of GET /enrollments/sample-device-2>".to_owned()
    };
    println!("provision another device:");
    println!(
        "  cargo run --release -p dps-device -- register --endpoint {} --id-scope {} --registration-id sample-device-2 --key {} --ca {}",
        server.device_addr,
        tenant.id_scope,
        key,
        ca_file.display()
    );
    Ok(())
}

/// A symmetric-key enrollment (created once; its key is reused on later
/// starts): the key, and whether this call created it.
async fn enroll(
    server: &RunningServer,
    tenant: &Tenant,
    id: &str,
) -> anyhow::Result<(String, bool)> {
    let registration_id = dps_model::RegistrationId::new(id)?;
    if let Some(existing) = server
        .store
        .enrollment(&tenant.id_scope, &registration_id)
        .await?
    {
        if let Some(key) = existing
            .attestation
            .symmetric_key
            .as_ref()
            .and_then(|k| k.primary_key.clone())
        {
            return Ok((key, false));
        }
    }
    let key = dps_attestation::keys::generate_key();
    let enrollment: IndividualEnrollment = dps_model::from_json(
        serde_json::json!({
            "registrationId": id,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
            "initialTwin": {"tags": {"sample": true}, "properties": {"desired": {"telemetryInterval": 30}}}
        })
        .to_string()
        .as_bytes(),
    )?;
    server
        .store
        .put_enrollment(&tenant.id_scope, enrollment, Precondition::None)
        .await?;
    Ok((key, true))
}
