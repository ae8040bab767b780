//! Provision devices as real devices do — each its own `ProvisioningClient`,
//! a new connection and a full TLS handshake, register then poll — over any
//! [`Transport`], spreading devices round-robin over several endpoints.
//!
//! `dps_client::swarm` does the same for one HTTPS endpoint; this loop exists
//! because the swarm's configuration names neither a transport nor several
//! endpoints. Per device it builds the client exactly as the swarm does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use dps_client::swarm::SwarmDevice;
use dps_client::{ClientError, ProvisioningClient, TlsTrust, Transport};
use hdrhistogram::Histogram;

use crate::table::{latency_histogram, record, Meter, Row};

/// How a loop runs.
#[derive(Clone, Debug)]
pub struct DeviceLoop {
    /// Endpoints (`host:port`, of the transport's listener); device `i` uses
    /// `endpoints[i % len]`.
    pub endpoints: Vec<String>,
    /// The tenant's ID scope.
    pub id_scope: String,
    /// HTTPS, MQTT over TLS or MQTT over WebSocket.
    pub transport: Transport,
    /// PEM CAs the devices trust (each replica has its own development CA).
    pub trust_pems: Vec<String>,
    /// Devices in flight.
    pub concurrency: usize,
    /// Limit of one device's whole exchange.
    pub timeout: Duration,
}

impl DeviceLoop {
    /// HTTPS to these endpoints, 48 devices in flight, 60 s per device.
    pub fn new(endpoints: Vec<String>, id_scope: String, trust_pems: Vec<String>) -> Self {
        DeviceLoop {
            endpoints,
            id_scope,
            transport: Transport::Https,
            trust_pems,
            concurrency: 48,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a loop measured.
#[derive(Clone, Debug)]
pub struct LoopReport {
    /// Time from a device's start to its assignment (µs), successes only.
    pub latency: Histogram<u64>,
    /// Devices that failed.
    pub failed: u64,
    /// Devices assigned through each endpoint.
    pub per_endpoint: Vec<u64>,
    /// Up to ten failure messages.
    pub sample_errors: Vec<String>,
    /// The row for the results table.
    pub row: Row,
}

/// Provision every device; failures are counted, not fatal.
pub async fn provision(
    config: &DeviceLoop,
    name: &str,
    devices: Arc<Vec<SwarmDevice>>,
) -> Result<LoopReport> {
    anyhow::ensure!(
        !config.endpoints.is_empty(),
        "no endpoint to provision through"
    );
    // Parsed once and shared by every device, as the swarm does.
    let trust = TlsTrust::new(false, &config.trust_pems)?;
    let next = Arc::new(AtomicUsize::new(0));
    let meter = Meter::start();
    let workers: Vec<_> = (0..config.concurrency.max(1))
        .map(|_| {
            let (config, trust, devices, next) =
                (config.clone(), trust.clone(), devices.clone(), next.clone());
            tokio::spawn(async move {
                let mut part = Part::new(config.endpoints.len());
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(device) = devices.get(index) else {
                        return part;
                    };
                    let endpoint = index % config.endpoints.len();
                    let started = Instant::now();
                    match register(&config, &trust, &config.endpoints[endpoint], device).await {
                        Ok(()) => {
                            record(&mut part.latency, started.elapsed());
                            part.per_endpoint[endpoint] += 1;
                        }
                        Err(error) => {
                            part.failed += 1;
                            if part.sample_errors.len() < 10 {
                                part.sample_errors
                                    .push(format!("{}: {error}", device.registration_id));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = Part::new(config.endpoints.len());
    for worker in workers {
        let part = worker.await?;
        total.latency.add(&part.latency)?;
        total.failed += part.failed;
        for (sum, n) in total.per_endpoint.iter_mut().zip(part.per_endpoint) {
            *sum += n;
        }
        total
            .sample_errors
            .extend(part.sample_errors.into_iter().take(10));
    }
    total.sample_errors.truncate(10);
    let row = Row::new(
        name,
        config.concurrency,
        total.latency.clone(),
        total.failed,
        &meter,
    );
    Ok(LoopReport {
        latency: total.latency,
        failed: total.failed,
        per_endpoint: total.per_endpoint,
        sample_errors: total.sample_errors,
        row,
    })
}

/// One worker's share of the counts.
struct Part {
    latency: Histogram<u64>,
    failed: u64,
    per_endpoint: Vec<u64>,
    sample_errors: Vec<String>,
}

impl Part {
    fn new(endpoints: usize) -> Self {
        Part {
            latency: latency_histogram(),
            failed: 0,
            per_endpoint: vec![0; endpoints],
            sample_errors: Vec::new(),
        }
    }
}

async fn register(
    config: &DeviceLoop,
    trust: &TlsTrust,
    endpoint: &str,
    device: &SwarmDevice,
) -> Result<(), ClientError> {
    let mut builder = ProvisioningClient::builder(
        endpoint,
        config.id_scope.clone(),
        device.registration_id.clone(),
    )
    .credential(device.credential.clone())
    .transport(config.transport)
    .timeout(config.timeout)
    // dps finishes the work before answering "assigning": the first poll
    // finds the final state, so waiting `Retry-After` would measure a sleep.
    .poll_interval(Duration::ZERO);
    builder = builder.trust(trust.clone());
    if config.transport != Transport::Https {
        // The MQTT TLS set-up reads these PEMs, not the shared trust.
        builder = config
            .trust_pems
            .iter()
            .fold(builder.system_roots(false), |b, pem| {
                b.trust_ca_pem(pem.clone())
            });
    }
    builder.build()?.register().await.map(|_| ())
}
