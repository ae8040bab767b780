//! The embedded mode (feature `embedded`): what `dps-server` runs with no
//! configuration file — an in-process IoT hub emulator (its devices kept in
//! the data directory), a `default` tenant with that hub linked, and sample
//! devices provisioned so the whole path is seen working.
//!
//! [`ServerBuilder::hub_emulator`](crate::server::ServerBuilder::hub_emulator)
//! starts the emulator; [`provision_samples`] then creates the sample
//! enrollments through the service API over HTTPS, as any administrator
//! would (the same validation and storage path), and registers the first
//! sample device with `dps-client`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dps_client::admin::{status_of, AdminClient, Collection, ConnectionString, Credentials};
use dps_client::{Credential, ProvisioningClient, TlsTrust};
use dps_hub_sim::{HubSim, HubSimConfig, HubSpec, RunningHubSim, TlsSource};
use serde_json::{json, Value};

use crate::config::{LinkedHubBootstrap, TenantBootstrap};
use crate::server::RunningServer;
use crate::{ServiceConfig, ServiceError};

/// The emulated hub's host name.
pub const EMULATED_HUB: &str = "local-hub.localhost";

/// The tenant the embedded mode declares when the configuration has none.
pub const DEFAULT_TENANT: &str = "default";

/// The sample device provisioned at every start.
pub const SAMPLE_DEVICE: &str = "sample-device-1";

/// The sample enrollment left for the user to provision.
pub const SECOND_SAMPLE_DEVICE: &str = "sample-device-2";

/// Start the emulator and point `config` at it: its CA trusted, its name
/// resolved to it, and the `default` tenant linked to it when no tenant is
/// declared. Called with the data directory's lock held.
pub(crate) async fn start_hub_emulator(
    config: &mut ServiceConfig,
) -> Result<RunningHubSim, ServiceError> {
    let hubs = HubSim::start(HubSimConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hubs: vec![HubSpec::new(EMULATED_HUB)],
        data_file: Some(config.data_dir.join("hub-emulator.json")),
        tls: TlsSource::Generate {
            extra_names: Vec::new(),
        },
    })
    .await
    .map_err(|e| failed(format!("starting the in-process IoT hub emulator: {e}")))?;
    let hub_ca = config.data_dir.join("hub-emulator-ca.pem");
    std::fs::write(&hub_ca, hubs.ca_pem().unwrap_or_default()).map_err(|e| ServiceError::Io {
        path: hub_ca.clone(),
        reason: e.to_string(),
    })?;
    config.hubs.trusted_ca_files.push(hub_ca);
    config
        .hubs
        .resolve
        .insert(EMULATED_HUB.to_owned(), hubs.addr());
    if config.tenants.is_empty() {
        let connection_string = hubs
            .connection_string(EMULATED_HUB)
            .ok_or_else(|| failed("the emulated hub has no connection string".to_owned()))?;
        config.tenants.push(TenantBootstrap {
            name: DEFAULT_TENANT.to_owned(),
            service_host_name: Some(config.service.listen.ip().to_string()),
            id_scope: None,
            linked_hubs: vec![LinkedHubBootstrap {
                connection_string,
                allocation_weight: 1,
                location: None,
            }],
        });
    }
    Ok(hubs)
}

/// What [`provision_samples`] did.
#[derive(Clone, Debug)]
pub struct Samples {
    /// The first sample device's registration.
    pub provisioned: ProvisionedSample,
    /// The second sample enrollment's key, when this start created it
    /// (later starts do not repeat secrets).
    pub second_key: Option<String>,
}

impl Samples {
    /// The banner lines that report them: the first device's registration
    /// and the command line that provisions the second.
    pub fn lines(&self, server: &RunningServer, ca_file: &std::path::Path) -> Vec<String> {
        let done = &self.provisioned;
        let device = server
            .device_addr()
            .map_or_else(String::new, |a| a.to_string());
        let scope = server.tenants().first().map_or("", |t| t.id_scope.as_str());
        let key = self
            .second_key
            .clone()
            .unwrap_or_else(|| format!("<primaryKey of GET /enrollments/{SECOND_SAMPLE_DEVICE}>"));
        vec![
            format!(
                "provisioned {SAMPLE_DEVICE} in {} ms: hub {}, device id {}, substatus {}; on the hub: {}",
                done.elapsed.as_millis(),
                done.assigned_hub,
                done.device_id,
                done.substatus.as_deref().unwrap_or("none"),
                if done.on_hub { "yes" } else { "no" },
            ),
            "provision another device:".to_owned(),
            format!(
                "  cargo run --release -p dps-device -- register --endpoint {device} --id-scope {scope} \
                 --registration-id {SECOND_SAMPLE_DEVICE} --key {key} --ca {}",
                ca_file.display()
            ),
        ]
    }
}

/// The first sample device, provisioned.
#[derive(Clone, Debug)]
pub struct ProvisionedSample {
    /// How long the registration took, end to end.
    pub elapsed: Duration,
    /// The hub it was assigned to.
    pub assigned_hub: String,
    /// Its device id there.
    pub device_id: String,
    /// The registration's substatus (`initialAssignment`, …), if any.
    pub substatus: Option<String>,
    /// The emulator holds the device identity.
    pub on_hub: bool,
}

/// Create the sample enrollments of the server's first declared tenant
/// (once; later starts reuse their keys) through its service API, and
/// provision [`SAMPLE_DEVICE`] over the device endpoint. Needs the device
/// HTTPS and service listeners.
pub async fn provision_samples(server: &RunningServer) -> Result<Samples, ServiceError> {
    let tenant = server
        .tenants()
        .first()
        .ok_or_else(|| failed("no tenant is declared".to_owned()))?;
    let (Some(device), Some(service)) = (server.device_addr(), server.service_addr()) else {
        return Err(failed(
            "the sample devices need the device HTTPS and service listeners".to_owned(),
        ));
    };
    let owner = tenant
        .connection_string(dps_model::tenant::OWNER_POLICY)
        .ok_or_else(|| failed("the tenant has no owner policy".to_owned()))?;
    let trust = TlsTrust::new(false, &[server.trust_pem()]).map_err(client_failed)?;
    let connection = ConnectionString::parse(&owner).map_err(client_failed)?;
    let admin = AdminClient::new(service.to_string(), Credentials::Policy(connection), &trust)
        .map_err(client_failed)?;

    let (first_key, _) = enroll(&admin, SAMPLE_DEVICE).await?;
    let started = Instant::now();
    let registration =
        ProvisioningClient::builder(device.to_string(), tenant.id_scope.as_str(), SAMPLE_DEVICE)
            .credential(Credential::symmetric_key(&first_key).map_err(client_failed)?)
            .trust_ca_pem(server.trust_pem().to_owned())
            .build()
            .map_err(client_failed)?
            .register()
            .await
            .map_err(|e| failed(format!("provisioning the sample device: {e}")))?;
    let on_hub = server.hub_emulator().is_some_and(|hubs| {
        hubs.device(&registration.assigned_hub, SAMPLE_DEVICE)
            .is_some()
    });
    let provisioned = ProvisionedSample {
        elapsed: started.elapsed(),
        substatus: registration
            .substatus
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        assigned_hub: registration.assigned_hub,
        device_id: registration.device_id,
        on_hub,
    };
    let (second_key, created) = enroll(&admin, SECOND_SAMPLE_DEVICE).await?;
    Ok(Samples {
        provisioned,
        second_key: created.then_some(second_key),
    })
}

/// A symmetric-key enrollment through the service API, created once (its
/// key is reused on later starts): the key, and whether this call created it.
async fn enroll(admin: &AdminClient, id: &str) -> Result<(String, bool), ServiceError> {
    match admin
        .get_record_with_secrets(Collection::Enrollments, id)
        .await
    {
        Ok(existing) => {
            if let Some(key) = existing["attestation"]["symmetricKey"]["primaryKey"].as_str() {
                return Ok((key.to_owned(), false));
            }
        }
        Err(err) if status_of(&err) == Some(404) => {}
        Err(err) => return Err(client_failed(err)),
    }
    let key = dps_attestation::keys::generate_key();
    let enrollment: Value = json!({
        "registrationId": id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        "initialTwin": {"tags": {"sample": true}, "properties": {"desired": {"telemetryInterval": 30}}}
    });
    admin
        .put_record(Collection::Enrollments, &enrollment, None)
        .await
        .map_err(client_failed)?;
    Ok((key, true))
}

fn failed(reason: String) -> ServiceError {
    ServiceError::Embedded { reason }
}

fn client_failed(err: dps_client::ClientError) -> ServiceError {
    failed(dps_client::admin::describe(&err))
}
