//! dps and the hub emulator, in-process on loopback addresses: the
//! configuration of a server, a tenant with an owner policy, and the
//! enrollments of a device plan written straight into the store.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_client::swarm::SwarmDevice;
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{DeviceId, IdScope, IndividualEnrollment, LinkedHub, RegistrationId, Tenant};
use dps_service::ServiceConfig;
use dps_storage::Store;

/// The name of the tenant policy with every right.
pub use dps_model::tenant::OWNER_POLICY;

/// Enrollments per `import_enrollments` call: one transaction each.
pub const IMPORT_CHUNK: usize = 10_000;

/// The hub emulator and the file holding its CA (which dps must trust).
pub struct Hubs {
    /// The running emulator.
    pub sim: RunningHubSim,
    /// Its hubs' host names.
    pub hosts: Vec<String>,
    /// PEM file of the emulator's CA.
    pub ca_file: PathBuf,
}

impl Hubs {
    /// Start the emulator on 127.0.0.1 with these hubs; its CA goes to `dir`.
    pub async fn start(dir: &Path, hosts: &[&str]) -> Result<Hubs> {
        let sim = HubSim::start(HubSimConfig::new("127.0.0.1:0".parse()?, hosts)).await?;
        let ca_file = dir.join("hub-ca.pem");
        std::fs::write(&ca_file, sim.ca_pem().context("emulator CA")?)?;
        Ok(Hubs {
            sim,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            ca_file,
        })
    }

    /// Devices the emulator holds over all hubs.
    pub fn device_count(&self) -> usize {
        self.hosts.iter().map(|h| self.sim.device_count(h)).sum()
    }
}

/// A loopback address with an ephemeral port.
pub fn loopback(last_octet: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)), 0)
}

/// A server in `data_dir`: the device endpoint on 127.0.0.1, the service
/// endpoint on 127.0.0.2 (both ephemeral ports, both in the development
/// certificate), MQTT off (callers turn it on), the emulator's hubs reachable
/// when given. Storage is SQLite in `data_dir` unless `storage_url` is set.
pub fn server_config(data_dir: &Path, hubs: Option<&Hubs>) -> ServiceConfig {
    let mut config = ServiceConfig {
        data_dir: data_dir.to_path_buf(),
        operator_key: Some(generate_key()),
        ..ServiceConfig::default()
    };
    config.device.listen = loopback(1);
    config.service.listen = loopback(2);
    config.device.mqtt.enabled = false;
    // Benchmarks measure throughput: the per-tenant limits (on by default)
    // would measure the limits instead.
    config.throttling = dps_service::config::ThrottlingConfig::unlimited();
    config.tls.dev_names = vec![
        "127.0.0.1".to_owned(),
        "127.0.0.2".to_owned(),
        "localhost".to_owned(),
    ];
    if let Some(hubs) = hubs {
        config.hubs.trusted_ca_files = vec![hubs.ca_file.clone()];
        for host in &hubs.hosts {
            config.hubs.resolve.insert(host.clone(), hubs.sim.addr());
        }
    }
    config
}

/// A tenant named `name` whose service host is `service_host_name`, with one
/// owner policy ([`OWNER_POLICY`], every right), hashed allocation over the
/// emulator's hubs (equal weights) when given.
pub fn tenant(name: &str, service_host_name: &str, hubs: Option<&Hubs>) -> Tenant {
    let mut tenant = Tenant::new(name, service_host_name).expect("a valid tenant name");
    tenant.linked_hubs = hubs.map_or_else(Vec::new, |hubs| {
        hubs.hosts
            .iter()
            .map(|host| {
                LinkedHub::new(
                    host.clone(),
                    hubs.sim.connection_string(host).unwrap_or_default(),
                )
            })
            .collect()
    });
    tenant
}

/// A typical symmetric-key enrollment as an SDK sends it: both keys (so the
/// server completes nothing from a stored record) and an initial twin
/// (~500 bytes of JSON).
pub fn typical_enrollment_json(registration_id: &str) -> String {
    format!(
        r#"{{"registrationId":"{registration_id}","deviceId":"{registration_id}",
        "attestation":{{"type":"symmetricKey","symmetricKey":{{
            "primaryKey":"cHJpbWFyeWtleXByaW1hcnlrZXlwcmltYXJ5a2V5cHJpbWFyeWtleQ==",
            "secondaryKey":"c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5a2V5c2Vjbw=="}}}},
        "provisioningStatus":"enabled","allocationPolicy":"hashed",
        "capabilities":{{"iotEdge":false}},
        "reprovisionPolicy":{{"updateHubAssignment":true,"migrateDeviceData":true}},
        "initialTwin":{{"tags":{{"site":"plant-7","line":"3"}},
            "properties":{{"desired":{{"telemetryInterval":30,"firmware":"1.4.2"}}}}}}}}"#
    )
}

/// Import `count` [`typical_enrollment_json`] enrollments with ids
/// `id(0..count)` in [`IMPORT_CHUNK`]s; returns the seconds it took.
pub async fn import_typical(
    store: &dyn Store,
    scope: &IdScope,
    count: u64,
    id: impl Fn(u64) -> String,
) -> Result<f64> {
    let template = IndividualEnrollment::from_json(typical_enrollment_json("template").as_bytes())?;
    let started = std::time::Instant::now();
    let mut next = 0;
    while next < count {
        let end = (next + IMPORT_CHUNK as u64).min(count);
        let batch = (next..end)
            .map(|i| {
                let mut enrollment = template.clone();
                enrollment.registration_id = RegistrationId::new(id(i))?;
                enrollment.device_id = Some(DeviceId::new(id(i))?);
                Ok(enrollment)
            })
            .collect::<Result<Vec<_>, dps_model::ModelError>>()?;
        store.import_enrollments(scope, batch).await?;
        next = end;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The individual enrollments of symmetric-key devices, imported in
/// [`IMPORT_CHUNK`]s (not billed, not timed by callers).
pub async fn import_devices(
    store: &dyn Store,
    scope: &IdScope,
    devices: &[SwarmDevice],
) -> Result<()> {
    let enrollments = devices
        .iter()
        .filter_map(|device| {
            let key = device.individual_key.as_ref()?;
            let body = serde_json::json!({
                "registrationId": device.registration_id,
                "attestation": {"type": "symmetricKey",
                    "symmetricKey": {"primaryKey": key, "secondaryKey": key}},
                "provisioningStatus": "enabled",
            });
            Some(IndividualEnrollment::from_json(body.to_string().as_bytes()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for chunk in enrollments.chunks(IMPORT_CHUNK) {
        store.import_enrollments(scope, chunk.to_vec()).await?;
    }
    Ok(())
}

/// One keep-alive service API client: HTTP/1.1, a single pooled connection,
/// reused (so the figures are requests, not TLS handshakes).
pub fn keep_alive_client(trust: &dps_client::TlsTrust) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(trust.client_config(None)?)
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

/// A service API token of `tenant`'s owner policy for `service_host`, valid
/// for three hours: the token an SDK signs once and reuses.
pub fn owner_token(tenant: &Tenant, service_host: &str) -> Result<String> {
    let owner = tenant
        .access_policies
        .iter()
        .find(|p| p.key_name == OWNER_POLICY)
        .context("owner policy")?;
    Ok(dps_attestation::sas::create_token(
        service_host,
        &dps_attestation::sas::SymmetricKey::from_base64(&owner.primary_key)?,
        dps_attestation::sas::unix_now() + 3 * 3600,
        Some(OWNER_POLICY),
    ))
}

/// A registration record as the server writes it for a device assigned to
/// a hub, and its operation (ids left for the caller to set).
pub fn registration_template() -> Result<(
    dps_model::RegistrationRecord,
    dps_model::RegistrationOperation,
)> {
    let record: dps_model::RegistrationRecord = dps_model::from_json(
        br#"{"registrationId":"template","attestationType":"symmetricKey",
            "created":"2025-01-01T00:00:00.0000000Z","lastUpdated":"2025-01-01T00:00:00.0000000Z",
            "assignedHub":"hub-a.example","deviceId":"template","status":"assigned",
            "substatus":"initialAssignment","etag":"x"}"#,
    )?;
    let operation = dps_model::RegistrationOperation {
        operation_id: String::new(),
        registration_id: record.registration_id.clone(),
        created: record.created,
        status: dps_model::RegistrationOperationStatus {
            operation_id: String::new(),
            status: dps_model::RegistrationStatus::Assigned,
            registration_state: Some(record.to_result()),
        },
    };
    Ok((record, operation))
}
