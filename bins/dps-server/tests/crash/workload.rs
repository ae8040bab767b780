//! The load that runs while the server gets killed, and the bookkeeping of
//! what the server acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Result};
use dps_attestation::keys::generate_key;
use dps_client::service::ServiceClient;
use dps_client::{Credential, ProvisioningClient, TlsTrust};
use serde_json::json;
use tokio::task::JoinSet;

use crate::server::{CrashSystem, Device};

/// Devices registering at once.
const DEVICE_WORKERS: usize = 6;
/// Administrators writing enrollments at once.
const ADMIN_WORKERS: usize = 2;

/// What one server incarnation acknowledged before it was killed.
#[derive(Default)]
pub(crate) struct CycleAcks {
    /// Devices whose client saw `202` and then `assigned` (twice for a
    /// device that re-registered).
    pub(crate) registrations: Vec<String>,
    /// Every register started, acknowledged or cut off by the kill.
    pub(crate) attempts: Vec<String>,
    /// Of those, devices handed a certificate: its SHA-256 thumbprint.
    pub(crate) issued: Vec<(String, String)>,
    /// Enrollments written with `200`/`201`, with the etag returned; `None`
    /// when a later write of the same enrollment was cut off by the kill, so
    /// that either etag may be stored.
    pub(crate) enrollments: Vec<(String, Option<String>)>,
    /// Failures seen before the kill: there must be none.
    pub(crate) unexpected: Vec<String>,
}

/// The running load of one cycle.
pub(crate) struct Workload {
    tasks: JoinSet<()>,
    acks: Arc<Mutex<CycleAcks>>,
    killing: Arc<AtomicBool>,
}

impl Workload {
    /// Start device and administrator workers against the running server.
    pub(crate) fn start(system: &CrashSystem, cycle: usize) -> Result<Workload> {
        let acks = Arc::new(Mutex::new(CycleAcks::default()));
        let killing = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let endpoint = system.device_addr.to_string();
        for _ in 0..DEVICE_WORKERS {
            let devices = system.devices().to_vec();
            let next = system.next_device.clone();
            let (acks, killing) = (acks.clone(), killing.clone());
            let (endpoint, scope, ca) = (
                endpoint.clone(),
                system.scope().to_string(),
                system.ca_pem().to_owned(),
            );
            tasks.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let Some(device) = devices.get(n) else { return };
                    let rounds = if device.reregisters { 2 } else { 1 };
                    for _ in 0..rounds {
                        acks.lock()
                            .expect("acks lock")
                            .attempts
                            .push(device.id.clone());
                        let outcome = register(&endpoint, &scope, &ca, device).await;
                        let mut acks = acks.lock().expect("acks lock");
                        match outcome {
                            Ok(thumbprint) => {
                                acks.registrations.push(device.id.clone());
                                if let Some(thumbprint) = thumbprint {
                                    acks.issued.push((device.id.clone(), thumbprint));
                                }
                            }
                            Err(err) if !killing.load(Ordering::SeqCst) => {
                                acks.unexpected.push(format!("{}: {err:#}", device.id));
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
            });
        }
        let trust = TlsTrust::new(false, &[system.ca_pem()])?;
        for worker in 0..ADMIN_WORKERS {
            let client = ServiceClient::from_connection_string(
                &system.connection_string(),
                Some(&system.service_addr.to_string()),
                &trust,
            )?;
            let (acks, killing) = (acks.clone(), killing.clone());
            tasks.spawn(async move {
                admin_loop(client, cycle, worker, acks, killing).await;
            });
        }
        Ok(Workload {
            tasks,
            acks,
            killing,
        })
    }

    /// Call before the kill: failures from then on are the kill's doing.
    pub(crate) fn mark_killing(&self) {
        self.killing.store(true, Ordering::SeqCst);
    }

    /// Stop every worker (the server is dead by now) and hand over what was
    /// acknowledged.
    pub(crate) async fn stop(mut self) -> CycleAcks {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        std::mem::take(&mut *self.acks.lock().expect("acks lock"))
    }
}

/// Register one device over a new TLS connection: `Ok` only after
/// `assigned`, with the issued certificate's thumbprint for an issuing device.
async fn register(
    endpoint: &str,
    scope: &str,
    ca: &str,
    device: &Device,
) -> Result<Option<String>> {
    let mut builder = ProvisioningClient::builder(endpoint, scope, &device.id);
    if device.issuing {
        builder = builder.issue_certificate(dps_client::KeyType::EcdsaP256);
    }
    let client = builder
        .credential(Credential::symmetric_key(&device.key)?)
        .system_roots(false)
        .trust_ca_pem(ca)
        .timeout(Duration::from_secs(30))
        // The work is done before the 202 (the first poll finds `assigned`):
        // polling at once lets many registrations complete between kills.
        .poll_interval(Duration::from_millis(10))
        .build()?;
    let registration = client.register().await?;
    ensure!(
        !registration.assigned_hub.is_empty(),
        "assigned without a hub"
    );
    let thumbprint = registration.issued_certificate.map(|c| c.thumbprint);
    ensure!(
        thumbprint.is_some() == device.issuing,
        "issued certificate: {thumbprint:?}, expected one: {}",
        device.issuing
    );
    Ok(thumbprint)
}

/// Create enrollments, and replace every third one already created.
async fn admin_loop(
    client: ServiceClient,
    cycle: usize,
    worker: usize,
    acks: Arc<Mutex<CycleAcks>>,
    killing: Arc<AtomicBool>,
) {
    let mut created: Vec<String> = Vec::new();
    for n in 0.. {
        let id = if n % 3 == 2 && !created.is_empty() {
            created[n % created.len()].clone()
        } else {
            format!("admin-{cycle}-{worker}-{n}")
        };
        let body = json!({"registrationId": id, "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": generate_key(), "secondaryKey": generate_key()}},
            "initialTwin": {"tags": {"write": n}}});
        let replacing = created.contains(&id);
        if replacing {
            // Until acknowledged, either the old or the new version may be stored.
            acks.lock()
                .expect("acks lock")
                .enrollments
                .push((id.clone(), None));
        }
        match client.put_enrollment(&body).await {
            Ok(answer) => {
                let etag = answer["etag"].as_str().map(str::to_owned);
                let mut acks = acks.lock().expect("acks lock");
                match etag {
                    Some(etag) => acks.enrollments.push((id.clone(), Some(etag))),
                    None => acks.unexpected.push(format!("{id}: 200 without etag")),
                }
                if !replacing {
                    created.push(id);
                }
            }
            Err(err) if !killing.load(Ordering::SeqCst) => {
                acks.lock()
                    .expect("acks lock")
                    .unexpected
                    .push(format!("enrollment {id}: {err}"));
                return;
            }
            Err(_) => return,
        }
    }
}

/// Everything acknowledged so far, and what is still to be checked through
/// the server.
#[derive(Default)]
pub(crate) struct Acknowledged {
    /// Acknowledged registrations, all cycles (a device that re-registered
    /// appears once per acknowledged register).
    pub(crate) registrations: Vec<String>,
    /// Device (lower case) → registers started, all cycles.
    pub(crate) attempts: BTreeMap<String, usize>,
    /// Enrollment id → the etag last acknowledged (`None`: any version).
    pub(crate) enrollments: BTreeMap<String, Option<String>>,
    /// Enrollment writes acknowledged, all cycles.
    pub(crate) enrollment_writes: usize,
    /// Device → the thumbprint of the certificate its client was handed.
    pub(crate) issued: BTreeMap<String, String>,
    unchecked_registrations: Vec<String>,
    unchecked_issued: Vec<(String, String)>,
    unchecked_enrollments: Vec<String>,
}

impl Acknowledged {
    /// Take in a cycle's acknowledgements (failing on unexpected errors).
    pub(crate) fn absorb(&mut self, cycle: CycleAcks) -> Result<()> {
        ensure!(
            cycle.unexpected.is_empty(),
            "failures before the kill: {:?}",
            &cycle.unexpected[..cycle.unexpected.len().min(5)]
        );
        self.unchecked_registrations
            .extend(cycle.registrations.iter().cloned());
        self.registrations.extend(cycle.registrations);
        for id in cycle.attempts {
            *self.attempts.entry(id.to_ascii_lowercase()).or_default() += 1;
        }
        self.unchecked_issued.extend(cycle.issued.iter().cloned());
        self.issued.extend(cycle.issued);
        for (id, etag) in cycle.enrollments {
            self.enrollment_writes += usize::from(etag.is_some());
            self.unchecked_enrollments.push(id.clone());
            self.enrollments.insert(id, etag);
        }
        Ok(())
    }

    /// Through the restarted server: every registration and enrollment write
    /// acknowledged since the last check is there.
    pub(crate) async fn verify_through_service(&mut self, system: &CrashSystem) -> Result<()> {
        for id in std::mem::take(&mut self.unchecked_registrations) {
            let (status, body) = system.service_get(&format!("registrations/{id}")).await?;
            ensure!(
                status == 200 && body["status"] == "assigned",
                "acknowledged registration {id} lost: {status} {body}"
            );
        }
        for (id, thumbprint) in std::mem::take(&mut self.unchecked_issued) {
            let (status, body) = system
                .service_get(&format!("registrations/{id}/issuedCertificates"))
                .await?;
            let listed = body.as_array().map(Vec::as_slice).unwrap_or_default();
            ensure!(
                status == 200
                    && listed
                        .iter()
                        .any(|c| c["sha256Thumbprint"] == thumbprint.as_str()),
                "the certificate handed to {id} is not recorded: {status} {body}"
            );
        }
        let mut ids = std::mem::take(&mut self.unchecked_enrollments);
        ids.dedup();
        for id in ids {
            let (status, body) = system.service_get(&format!("enrollments/{id}")).await?;
            ensure!(
                status == 200,
                "acknowledged enrollment {id} lost: {status} {body}"
            );
            if let Some(Some(etag)) = self.enrollments.get(&id) {
                ensure!(
                    body["etag"].as_str() == Some(etag.as_str()),
                    "enrollment {id}: acknowledged etag {etag}, stored {}",
                    body["etag"]
                );
            }
        }
        Ok(())
    }
}
