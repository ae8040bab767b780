//! Several dps replicas on ONE PostgreSQL database: three in-process servers
//! (each with its own listeners, TLS identity and caches) in a fresh schema,
//! one hub emulator with three hubs, 300 devices provisioned concurrently
//! through all of them, 60 re-registering through another replica, every
//! operation polled through yet another one. Nothing is lost or duplicated,
//! the meter counts exactly the successful instructions, and every device
//! sits on the hub its hashed policy picks.
//!
//! Without PostgreSQL the test says so and passes without running.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use dps_allocation::{HashedPolicy, HubTable};
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{
    IdScope, IndividualEnrollment, LinkedHub, OperationKind, Precondition, RegistrationId,
    RegistrationStatus, Tenant,
};
use dps_service::server::RunningServer;
use dps_service::ServiceConfig;
use dps_storage::postgres::scratch::ScratchSchema;
use dps_storage::{PostgresOptions, PostgresStore, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

const HUBS: [&str; 3] = ["hub-1.test", "hub-2.test", "hub-3.test"];
const DEVICES: usize = 300;

/// A device with an individual symmetric-key enrollment.
#[derive(Clone, Debug)]
pub(crate) struct Device {
    /// Its registration id.
    pub(crate) id: String,
    /// Its primary key (base64).
    pub(crate) key: String,
}

impl Device {
    pub(crate) fn new(id: String) -> Self {
        Device {
            id,
            key: generate_key(),
        }
    }

    pub(crate) fn enrollment(&self) -> IndividualEnrollment {
        let body = json!({"registrationId": self.id, "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": self.key}}});
        IndividualEnrollment::from_json(body.to_string().as_bytes()).expect("valid enrollment")
    }
}

/// A plain HTTPS device client with SAS tokens (what the SDKs send).
#[derive(Clone)]
pub(crate) struct DeviceClient {
    http: reqwest::Client,
    scope: String,
}

/// How far one register instruction got.
#[derive(Debug)]
pub(crate) enum Registered {
    /// `202` with this operation id: the server committed the outcome.
    Accepted(String),
    /// Any other answer.
    Refused(StatusCode, String),
}

impl DeviceClient {
    /// A client trusting these CA certificates (PEM), for devices of `scope`.
    pub(crate) fn new(trusted_pems: &[&str], scope: &IdScope) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(20));
        for pem in trusted_pems {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
        }
        Ok(DeviceClient {
            http: builder.build()?,
            scope: scope.to_string(),
        })
    }

    fn token(&self, device: &Device) -> Result<String> {
        Ok(create_token(
            &registration_resource(&self.scope, &device.id),
            &SymmetricKey::from_base64(&device.key)?,
            unix_now() + 600,
            Some("registration"),
        ))
    }

    fn base(&self, endpoint: SocketAddr, device: &Device) -> String {
        format!(
            "https://{endpoint}/{}/registrations/{}",
            self.scope, device.id
        )
    }

    /// `PUT …/register` through the replica at `endpoint`.
    pub(crate) async fn register(
        &self,
        endpoint: SocketAddr,
        device: &Device,
    ) -> Result<Registered> {
        let response = self
            .http
            .put(format!(
                "{}/register?api-version=2021-06-01",
                self.base(endpoint, device)
            ))
            .header("authorization", self.token(device)?)
            .json(&json!({"registrationId": device.id}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::ACCEPTED {
            return Ok(Registered::Refused(status, body.to_string()));
        }
        let operation = body["operationId"]
            .as_str()
            .context("202 without operationId")?;
        Ok(Registered::Accepted(operation.to_owned()))
    }

    /// `GET …/operations/{id}` through the replica at `endpoint`.
    pub(crate) async fn poll(
        &self,
        endpoint: SocketAddr,
        device: &Device,
        operation: &str,
    ) -> Result<Value> {
        let response = self
            .http
            .get(format!(
                "{}/operations/{operation}?api-version=2021-06-01",
                self.base(endpoint, device)
            ))
            .header("authorization", self.token(device)?)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status == StatusCode::OK, "poll answered {status}: {body}");
        Ok(body)
    }
}

/// A tenant linking every hub of the emulator, hashed allocation.
pub(crate) fn tenant_for(hubs: &RunningHubSim, name: &str) -> Tenant {
    let mut tenant = Tenant::new(name, format!("{name}.localhost")).expect("a valid tenant name");
    tenant.linked_hubs = hubs
        .hosts()
        .iter()
        .map(|h| LinkedHub::new(h.clone(), hubs.connection_string(h).expect("hub exists")))
        .collect();
    tenant
}

/// A replica's configuration: its own data directory and loopback ports,
/// the shared storage URL, the emulator's hubs.
fn replica_config(
    dir: &std::path::Path,
    storage_url: &str,
    hubs: &RunningHubSim,
    hub_ca: &std::path::Path,
) -> ServiceConfig {
    let mut config = ServiceConfig {
        data_dir: dir.to_path_buf(),
        storage_url: Some(storage_url.to_owned()),
        operator_key: Some(generate_key()),
        ..ServiceConfig::default()
    };
    config.device.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.service.listen = SocketAddr::from(([127, 0, 0, 2], 0));
    config.hubs.trusted_ca_files = vec![hub_ca.to_path_buf()];
    for hub in hubs.hosts() {
        config.hubs.resolve.insert(hub, hubs.addr());
    }
    config
}

/// One device's story: (operation ids of successful instructions).
async fn provision(
    client: DeviceClient,
    endpoints: Arc<Vec<SocketAddr>>,
    device: Device,
    index: usize,
) -> Result<Vec<String>> {
    let replicas = endpoints.len();
    let mut rounds = vec![(index % replicas, (index + 1) % replicas)];
    if index.is_multiple_of(5) {
        // Re-register through a different replica, poll through another.
        rounds.push(((index + 2) % replicas, index % replicas));
    }
    let mut done = Vec::new();
    for (register_via, poll_via) in rounds {
        let operation = match client.register(endpoints[register_via], &device).await? {
            Registered::Accepted(operation) => operation,
            Registered::Refused(status, body) => {
                anyhow::bail!("{}: register answered {status}: {body}", device.id)
            }
        };
        let answer = client
            .poll(endpoints[poll_via], &device, &operation)
            .await?;
        ensure!(
            answer["status"] == "assigned",
            "{}: polled through another replica: {answer}",
            device.id
        );
        done.push(operation);
    }
    Ok(done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_database_provision_every_device_exactly_once() -> Result<()> {
    let Some(schema) = ScratchSchema::create().await else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let hubs = HubSim::start(HubSimConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &HUBS,
    ))
    .await?;
    let hub_ca = dir.path().join("hub-ca.pem");
    std::fs::write(&hub_ca, hubs.ca_pem().context("emulator CA")?)?;

    // The replicas start at once: their migrations meet on the advisory lock.
    let configs: Vec<ServiceConfig> = (0..3)
        .map(|i| {
            replica_config(
                &dir.path().join(format!("replica-{i}")),
                schema.url(),
                &hubs,
                &hub_ca,
            )
        })
        .collect();
    let mut starting = tokio::task::JoinSet::new();
    for (i, config) in configs.into_iter().enumerate() {
        starting.spawn(async move { (i, dps_service::server::start(config).await) });
    }
    let mut replicas: Vec<Option<RunningServer>> = vec![None, None, None];
    while let Some(started) = starting.join_next().await {
        let (i, server) = started?;
        replicas[i] = Some(server.with_context(|| format!("starting replica {i}"))?);
    }
    let replicas: Vec<RunningServer> = replicas.into_iter().flatten().collect();

    // An administrator's own connection to the same database.
    let admin = PostgresStore::connect(
        schema.url(),
        PostgresOptions {
            max_connections: 4,
            ..PostgresOptions::default()
        },
    )
    .await?;
    let tenant = admin.create_tenant(tenant_for(&hubs, "replicated")).await?;
    let scope = tenant.id_scope.clone();
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| Device::new(format!("replica-dev-{i:03}")))
        .collect();
    for device in &devices {
        admin
            .put_enrollment(&scope, device.enrollment(), Precondition::Absent)
            .await?;
    }

    let trust: Vec<&str> = replicas.iter().map(|r| r.trust_pem()).collect();
    let client = DeviceClient::new(&trust, &scope)?;
    let endpoints = Arc::new(
        replicas
            .iter()
            .map(|r| r.device_addr().expect("device HTTPS listener"))
            .collect::<Vec<_>>(),
    );
    let gate = Arc::new(Semaphore::new(48));
    let mut swarm = tokio::task::JoinSet::new();
    for (index, device) in devices.iter().cloned().enumerate() {
        let (client, endpoints, gate) = (client.clone(), Arc::clone(&endpoints), gate.clone());
        swarm.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            provision(client, endpoints, device, index).await
        });
    }
    let mut operations = Vec::new();
    while let Some(done) = swarm.join_next().await {
        operations.extend(done??);
    }
    let re_registrations = DEVICES.div_ceil(5);
    assert_eq!(operations.len(), DEVICES + re_registrations);

    // Every replica sees the same, complete picture.
    for replica in &replicas {
        assert_eq!(
            replica.store().count_registrations(&scope).await?,
            DEVICES as u64,
            "no record lost or duplicated"
        );
    }
    for (i, operation) in operations.iter().enumerate() {
        let store = &replicas[i % 3].store();
        let stored = store.registration_operation(&scope, operation).await?;
        assert!(stored.is_some(), "operation {operation} stored");
    }

    // Every device on the hub its policy picks, and on no other.
    let table = HubTable::new(&tenant.linked_hubs)?;
    let mut per_hub: BTreeMap<String, usize> = BTreeMap::new();
    for device in &devices {
        let expected = HashedPolicy::choose(&device.id, &table, table.all())
            .map(|i| table.get(i).host_name().to_owned())
            .context("a hub")?;
        let record = admin
            .registration(&scope, &RegistrationId::new(device.id.as_str())?)
            .await?
            .context("record")?;
        assert_eq!(record.status, RegistrationStatus::Assigned, "{}", device.id);
        assert_eq!(
            record.assigned_hub.as_deref(),
            Some(expected.as_str()),
            "{}",
            device.id
        );
        for hub in HUBS {
            assert_eq!(
                hubs.device(hub, &device.id).is_some(),
                hub == expected,
                "{} on {hub}",
                device.id
            );
        }
        *per_hub.entry(expected).or_default() += 1;
    }
    assert_eq!(per_hub.len(), 3, "hashing spreads devices: {per_hub:?}");

    // The meter: exactly the successful instructions, and the enrollment writes.
    let now = chrono::Utc::now();
    let report = admin
        .operation_report(
            &scope,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
        .await?;
    let count = |kind| report.totals.get(&kind).copied().unwrap_or(0);
    assert_eq!(count(OperationKind::Registration), DEVICES as u64);
    assert_eq!(
        count(OperationKind::ReRegistration),
        re_registrations as u64
    );
    assert_eq!(
        count(OperationKind::Registration) + count(OperationKind::ReRegistration),
        operations.len() as u64
    );
    assert_eq!(count(OperationKind::EnrollmentCreate), DEVICES as u64);
    assert_eq!(
        report.total,
        (DEVICES + operations.len()) as u64,
        "nothing else billed: {report:?}"
    );

    for replica in replicas {
        replica.shutdown().await;
    }
    admin.close().await;
    hubs.shutdown().await;
    Ok(())
}
