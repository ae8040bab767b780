//! Provision many devices at once, each as a real device would: its own
//! client, its own TLS connection, register then poll — for load tests,
//! benchmarks and the `dps-device swarm` command. Any [`Transport`] (HTTPS,
//! MQTT, AMQP, each also over WebSocket); per-device samples on request,
//! exported as CSV or an HdrHistogram interval log ([`SwarmReport::write_latency_csv`],
//! [`SwarmReport::write_histogram_log`]); [`delete_enrollments`] undoes
//! [`create_enrollments`].
//!
//! ```no_run
//! # async fn run() -> Result<(), dps_client::ClientError> {
//! use std::sync::Arc;
//! use dps_client::swarm::{PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress};
//! use dps_client::TlsTrust;
//! let plan = SwarmPlan::prepare(PlanOptions::new("load", 1000, "symmetric=70,group=20,x509=10".parse()?))?;
//! // … create plan.individual_enrollments() and plan.enrollment_groups() …
//! let config = SwarmConfig::new("dps.example.com", "0ne00000A0A", TlsTrust::new(true, &[] as &[&str])?);
//! let report = dps_client::swarm::run(&config, Arc::new(plan), Arc::new(SwarmProgress::default())).await;
//! println!("{report}");
//! # Ok(()) }
//! ```

mod export;
mod plan;
mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use export::{SampleOutcome, SwarmSample};
pub use plan::{DeviceKind, Mix, PlanOptions, SwarmCa, SwarmDevice, SwarmPlan};
pub use report::SwarmReport;

use crate::service::ServiceClient;
use crate::{ClientError, ProvisioningClient, TlsTrust, Transport};

/// How a swarm runs.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Device endpoint, `host[:port]`.
    pub endpoint: String,
    /// The tenant's ID scope.
    pub id_scope: String,
    /// Devices provisioning at the same time.
    pub concurrency: usize,
    /// Trusted servers (parsed once, shared by every device).
    pub trust: TlsTrust,
    /// Limit for one device's whole exchange.
    pub timeout: Duration,
    /// Poll at this interval instead of the service's `Retry-After`
    /// (`Some(Duration::ZERO)`: poll at once; dps finishes the work before
    /// answering `202`, so the first poll finds the final state).
    pub poll_interval: Option<Duration>,
    /// Start at most this many devices per second (open loop); `None`: as
    /// fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// How the devices talk to the service; the endpoint's port, when
    /// absent, is the transport's usual one.
    pub transport: Transport,
    /// Keep one [`SwarmSample`] per device in the report (for the CSV and
    /// HdrHistogram exports); off by default, as a million devices' samples
    /// take tens of megabytes.
    pub keep_samples: bool,
}

impl SwarmConfig {
    /// Defaults: 64 devices at a time, 60 s per device, honour `Retry-After`,
    /// no rate limit, HTTPS, no samples.
    pub fn new(endpoint: impl Into<String>, id_scope: impl Into<String>, trust: TlsTrust) -> Self {
        SwarmConfig {
            endpoint: endpoint.into(),
            id_scope: id_scope.into(),
            concurrency: 64,
            trust,
            timeout: Duration::from_secs(60),
            poll_interval: None,
            rate: None,
            transport: Transport::Https,
            keep_samples: false,
        }
    }
}

/// Live counters of a running swarm (for progress bars).
#[derive(Debug, Default)]
pub struct SwarmProgress {
    /// Devices finished (assigned or failed).
    pub done: AtomicU64,
    /// Devices that failed.
    pub failed: AtomicU64,
}

/// Provision every device of `plan`; never fails as a whole — each device's
/// outcome is in the report.
pub async fn run(
    config: &SwarmConfig,
    plan: Arc<SwarmPlan>,
    progress: Arc<SwarmProgress>,
) -> SwarmReport {
    let next = Arc::new(AtomicU64::new(0));
    let started_at = SystemTime::now();
    let started = Instant::now();
    let workers: Vec<_> = (0..config.concurrency.max(1))
        .map(|_| {
            let (config, plan, progress, next) =
                (config.clone(), plan.clone(), progress.clone(), next.clone());
            tokio::spawn(async move { worker(&config, &plan, &progress, &next, started).await })
        })
        .collect();
    let mut report = SwarmReport::empty();
    for worker in workers {
        match worker.await {
            Ok(part) => report.merge(part),
            Err(e) => report
                .sample_errors
                .push(format!("a swarm worker failed: {e}")),
        }
    }
    report.elapsed = started.elapsed();
    report.started_at = started_at;
    report.honoured_retry_after = config.poll_interval.is_none();
    report.samples.sort_by_key(|sample| sample.device);
    report
}

async fn worker(
    config: &SwarmConfig,
    plan: &SwarmPlan,
    progress: &SwarmProgress,
    next: &AtomicU64,
    started: Instant,
) -> SwarmReport {
    let mut report = SwarmReport::empty();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(device) = usize::try_from(index)
            .ok()
            .and_then(|i| plan.devices.get(i))
        else {
            return report;
        };
        if let Some(rate) = config.rate.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let device_started = Instant::now();
        let outcome = match register(config, device).await {
            Ok(hub) => {
                report.record_success(device.kind, &hub, device_started.elapsed());
                SampleOutcome::Assigned { hub }
            }
            Err(error) => {
                progress.failed.fetch_add(1, Ordering::Relaxed);
                report.record_failure(&device.registration_id, &error);
                SampleOutcome::Failed {
                    class: error.class(),
                    error_code: error.error_code(),
                }
            }
        };
        if config.keep_samples {
            report.samples.push(SwarmSample {
                device: index as usize,
                registration_id: device.registration_id.clone(),
                kind: device.kind,
                started: device_started.duration_since(started),
                latency: device_started.elapsed(),
                outcome,
            });
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn register(config: &SwarmConfig, device: &SwarmDevice) -> Result<String, ClientError> {
    let mut builder = ProvisioningClient::builder(
        config.endpoint.clone(),
        config.id_scope.clone(),
        device.registration_id.clone(),
    )
    .credential(device.credential.clone())
    .trust(config.trust.clone())
    .transport(config.transport)
    .timeout(config.timeout);
    if let Some(interval) = config.poll_interval {
        builder = builder.poll_interval(interval);
    }
    if let Some(request) = &device.certificate_request {
        builder = builder.certificate_request(request.clone());
    }
    let registration = builder.build()?.register().await?;
    // A device that asked for a certificate and got none is not provisioned
    // as it wanted: counted as failed, not as assigned.
    if device.certificate_request.is_some() && registration.issued_certificate.is_none() {
        return Err(ClientError::protocol(
            "assigned without issuedCertificateChain although the device sent a csr",
        ));
    }
    Ok(registration.assigned_hub)
}

/// Create (or replace) the plan's enrollment groups, then its individual
/// enrollments, `concurrency` requests at a time, through the service API.
/// Returns how many records were written; stops at the first refusal.
pub async fn create_enrollments(
    service: Arc<ServiceClient>,
    plan: &SwarmPlan,
    concurrency: usize,
) -> Result<usize, ClientError> {
    let groups = plan.enrollment_groups();
    for (_, group) in &groups {
        service.put_enrollment_group(group).await?;
    }
    let enrollments = Arc::new(plan.individual_enrollments());
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (service, enrollments, next) = (service.clone(), enrollments.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(enrollment) =
                        usize::try_from(index).ok().and_then(|i| enrollments.get(i))
                    else {
                        return Ok::<(), ClientError>(());
                    };
                    service.put_enrollment(enrollment).await?;
                }
            })
        })
        .collect();
    join_all(workers).await?;
    Ok(groups.len() + enrollments.len())
}

/// What [`delete_enrollments`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Individual enrollments deleted (each with its registration record).
    pub enrollments: usize,
    /// Enrollment groups deleted.
    pub groups: usize,
    /// Registration records of group members deleted.
    pub registrations: usize,
}

/// Undo [`create_enrollments`]: delete the plan's individual enrollments
/// (dps deletes each one's registration record with it), the registration
/// records of its group members, then its groups, `concurrency` requests at
/// a time. What is already gone is skipped, so a second run deletes nothing
/// and fails nothing. The device identities on the hubs stay: DPS never
/// deletes those.
pub async fn delete_enrollments(
    service: Arc<ServiceClient>,
    plan: &SwarmPlan,
    concurrency: usize,
) -> Result<Cleanup, ClientError> {
    // Members first: a group deleted first would leave records nobody
    // recognises as the swarm's.
    let devices: Arc<Vec<(bool, String)>> = Arc::new(
        plan.devices
            .iter()
            .map(|d| (d.kind == DeviceKind::Symmetric, d.registration_id.clone()))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let enrollments = Arc::new(AtomicU64::new(0));
    let registrations = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (service, devices, next) = (service.clone(), devices.clone(), next.clone());
            let (enrollments, registrations) = (enrollments.clone(), registrations.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((individual, id)) =
                        usize::try_from(index).ok().and_then(|i| devices.get(i))
                    else {
                        return Ok::<(), ClientError>(());
                    };
                    if *individual {
                        if service.delete_enrollment(id).await? {
                            enrollments.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if service.delete_registration(id).await? {
                        registrations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    join_all(workers).await?;
    let mut cleanup = Cleanup {
        enrollments: enrollments.load(Ordering::Relaxed) as usize,
        registrations: registrations.load(Ordering::Relaxed) as usize,
        groups: 0,
    };
    for (group_id, _) in plan.enrollment_groups() {
        if service.delete_enrollment_group(&group_id).await? {
            cleanup.groups += 1;
        }
    }
    Ok(cleanup)
}

async fn join_all(
    workers: Vec<tokio::task::JoinHandle<Result<(), ClientError>>>,
) -> Result<(), ClientError> {
    for worker in workers {
        worker.await.map_err(|e| ClientError::Config {
            reason: format!("a service API worker failed: {e}"),
        })??;
    }
    Ok(())
}
