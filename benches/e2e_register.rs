//! The whole registration path on one machine: dps in-process (SQLite in a
//! temporary directory, the hub emulator with four equal-weight hubs), and a
//! swarm of `dps-client` devices, each with its own client and a new TLS
//! connection (full handshake, no resumption), doing register + poll.
//!
//! In the same run it measures the machine's floor: a bare rustls server with
//! the same TLS setup (ECDSA P-256 certificate, client certificate requested)
//! answering one small HTTP request per new TLS connection, driven by the same
//! client code — and prints registrations/s ÷ floor.
//!
//! Run: `cargo bench -p dps-benches --bench e2e_register`
//! * `DPS_BENCH_DEVICES` devices per phase (default 6000; X.509 uses half)
//! * `DPS_BENCH_CONCURRENCY` devices in flight (default 48)
//! * `DPS_BENCH_LARGE=100000` adds a symmetric-key run of that many devices,
//!   checking zero failures and each hub within 2 % of an even share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_client::swarm::{
    self, DeviceKind, Mix, PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress, SwarmReport,
};
use dps_client::TlsTrust;
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{
    AccessRight, AllocationPolicy, ETag, EnrollmentGroup, IdScope, IndividualEnrollment, LinkedHub,
    Precondition, SharedAccessPolicy, Tenant,
};
use dps_service::server::RunningServer;
use dps_service::ServiceConfig;
use hdrhistogram::Histogram;

const HUBS: [&str; 4] = [
    "hub-0.bench.test",
    "hub-1.bench.test",
    "hub-2.bench.test",
    "hub-3.bench.test",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct System {
    server: RunningServer,
    hubs: RunningHubSim,
    scope: IdScope,
    _dir: tempfile::TempDir,
}

async fn start_system() -> Result<System> {
    let dir = tempfile::tempdir()?;
    let hubs = HubSim::start(HubSimConfig::new("127.0.0.1:0".parse()?, &HUBS)).await?;
    let hub_ca = dir.path().join("hub-ca.pem");
    std::fs::write(&hub_ca, hubs.ca_pem().context("emulator CA")?)?;
    let mut config = ServiceConfig {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    config.device.listen = "127.0.0.1:0".parse()?;
    config.service.listen = "127.0.0.2:0".parse()?;
    config.tls.dev_names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    config.hubs.trusted_ca_files = vec![hub_ca];
    for hub in HUBS {
        config.hubs.resolve.insert(hub.to_owned(), hubs.addr());
    }
    config.operator_key = Some(generate_key());
    let server = dps_service::server::start(config).await?;
    let tenant = Tenant {
        name: "bench".to_owned(),
        id_scope: IdScope::generate(),
        service_host_name: "127.0.0.2".to_owned(),
        default_allocation_policy: AllocationPolicy::Hashed,
        linked_hubs: HUBS
            .iter()
            .map(|h| LinkedHub {
                host_name: (*h).to_owned(),
                connection_string: hubs.connection_string(h).unwrap_or_default(),
                allocation_weight: 1,
                apply_allocation_policy: true,
                location: None,
            })
            .collect(),
        access_policies: vec![SharedAccessPolicy {
            key_name: "provisioningserviceowner".to_owned(),
            primary_key: generate_key(),
            secondary_key: generate_key(),
            rights: AccessRight::ALL.to_vec(),
        }],
        ca_certificates: Vec::new(),
        synchronous_register: false,
        challenge_secret: generate_key(),
        etag: ETag::generate(),
        created: chrono::Utc::now(),
    };
    let tenant = server.store.create_tenant(tenant).await?;
    Ok(System {
        server,
        hubs,
        scope: tenant.id_scope,
        _dir: dir,
    })
}

/// Create the plan's enrollments directly in the store (not timed).
async fn enroll(system: &System, plan: &SwarmPlan) -> Result<()> {
    for (_, group) in plan.enrollment_groups() {
        let group = EnrollmentGroup::from_json(group.to_string().as_bytes())?;
        system
            .server
            .store
            .put_enrollment_group(&system.scope, group, Precondition::None)
            .await?;
    }
    let enrollments = plan
        .individual_enrollments()
        .iter()
        .map(|e| IndividualEnrollment::from_json(e.to_string().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    for chunk in enrollments.chunks(10_000) {
        system
            .server
            .store
            .import_enrollments(&system.scope, chunk.to_vec())
            .await?;
    }
    // Let the tenant view (groups) cache expire so the run sees the groups.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    Ok(())
}

struct Row {
    name: String,
    devices: u64,
    concurrency: usize,
    rate: f64,
    latency: Histogram<u64>,
    failures: u64,
}

impl Row {
    fn from_report(name: &str, concurrency: usize, report: &SwarmReport) -> Self {
        Row {
            name: name.to_owned(),
            devices: report.attempted,
            concurrency,
            rate: report.rate(),
            latency: report.latency.clone(),
            failures: report.failed(),
        }
    }

    fn print(&self) {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<44} {:>7} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6}",
            self.name,
            self.devices,
            self.concurrency,
            self.rate,
            ms(0.50),
            ms(0.90),
            ms(0.99),
            self.latency.max() as f64 / 1000.0,
            self.failures
        );
    }
}

async fn swarm_phase(
    system: &System,
    name: &str,
    plan: SwarmPlan,
    concurrency: usize,
    rate: Option<f64>,
) -> Result<(Row, SwarmReport)> {
    enroll(system, &plan).await?;
    let mut config = SwarmConfig::new(
        system.server.device_addr.to_string(),
        system.scope.to_string(),
        TlsTrust::new(false, &[system.server.trust_pem.as_str()])?,
    );
    config.concurrency = concurrency;
    config.poll_interval = Some(Duration::ZERO);
    config.timeout = Duration::from_secs(60);
    config.rate = rate;
    let report = swarm::run(&config, Arc::new(plan), Arc::new(SwarmProgress::default())).await;
    if report.failed() > 0 {
        eprintln!("{name}: failures {:?}", report.sample_errors);
    }
    let row = Row::from_report(name, concurrency, &report);
    row.print();
    Ok((row, report))
}

/// The floor: new TLS connection + one small HTTP/1.1 request, nothing else.
async fn floor_phase(count: u64, concurrency: usize) -> Result<Row> {
    let identity = dps_service::tls::ServerIdentity::generate_in_memory(&["127.0.0.1".to_owned()])?;
    let tls = identity.server_config(&[b"h2", b"http/1.1"])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                br#"{"operationId":"5.0000000000000000.00000000-0000-0000-0000-000000000000","status":"assigning"}"#,
                            )))
                            .unwrap_or_default(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });

    let trust = TlsTrust::new(false, &[identity.trust_pem.as_str()])?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (trust, next) = (trust.clone(), next.clone());
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let url = format!("https://{addr}/floor");
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let begun = Instant::now();
                    // A new client per request: a new connection and a full handshake.
                    let client = trust.http_client(None)?;
                    let response = client.get(&url).send().await?;
                    ensure!(response.status().is_success());
                    let _ = response.bytes().await?;
                    histogram.record(begun.elapsed().as_micros().max(1) as u64)?;
                }
                anyhow::Ok(histogram)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for worker in workers {
        latency.add(worker.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    let row = Row {
        name: "floor: bare rustls, 1 request per connection".to_owned(),
        devices: latency.len(),
        concurrency,
        rate: latency.len() as f64 / elapsed,
        latency,
        failures: 0,
    };
    row.print();
    Ok(row)
}

fn plan(prefix: &str, count: u64, kind: DeviceKind) -> Result<SwarmPlan> {
    Ok(SwarmPlan::prepare(PlanOptions::new(
        prefix,
        count,
        Mix::only(kind),
    ))?)
}

fn main() -> Result<()> {
    let devices: u64 = env_or("DPS_BENCH_DEVICES", 6000);
    let concurrency: usize = env_or("DPS_BENCH_CONCURRENCY", 48);
    let large: u64 = env_or("DPS_BENCH_LARGE", 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let system = start_system().await?;
        println!(
            "dps on {} (SQLite, 4 hubs on the in-process emulator), {} cores, {devices} devices per phase",
            system.server.device_addr,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        println!(
            "{:<44} {:>7} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6}",
            "phase", "devices", "conc", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "failed"
        );
        // Warm-up: code paths, the hub clients' connections, SQLite pages.
        let _ = swarm_phase(&system, "warm-up", plan("warm", 500, DeviceKind::Symmetric)?, concurrency, None).await?;

        let floor = floor_phase(devices, concurrency).await?;
        let (symmetric, _) = swarm_phase(
            &system,
            "symmetric key, individual (register+poll)",
            plan("sym", devices, DeviceKind::Symmetric)?,
            concurrency,
            None,
        )
        .await?;
        let (group, _) = swarm_phase(
            &system,
            "symmetric key, group-derived",
            plan("grp", devices, DeviceKind::Group)?,
            concurrency,
            None,
        )
        .await?;
        let (x509, _) = swarm_phase(
            &system,
            "X.509 group, ECDSA P-256 leaf+intermediate",
            plan("x509", devices / 2, DeviceKind::X509)?,
            concurrency,
            None,
        )
        .await?;
        let half = symmetric.rate / 2.0;
        let (paced, _) = swarm_phase(
            &system,
            &format!("symmetric key at half rate ({half:.0}/s)"),
            plan("half", devices / 2, DeviceKind::Symmetric)?,
            concurrency,
            Some(half),
        )
        .await?;

        println!();
        let p99 = |row: &Row| row.latency.value_at_quantile(0.99) as f64 / 1000.0;
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "symmetric key {:>6.0}/s   target >= 3000/s   {}",
            symmetric.rate,
            verdict(symmetric.rate >= 3000.0)
        );
        println!(
            "X.509 (ECDSA) {:>6.0}/s   target >= 1500/s   {}",
            x509.rate,
            verdict(x509.rate >= 1500.0)
        );
        println!(
            "p99 at half rate {:.2} ms (client-observed: an upper bound of the server's)   target < 10 ms   {}",
            p99(&paced),
            verdict(p99(&paced) < 10.0)
        );
        let ratio = symmetric.rate / floor.rate;
        println!(
            "registrations/s / floor = {:.0} / {:.0} = {ratio:.2}   target >= 0.5   {}",
            symmetric.rate,
            floor.rate,
            verdict(ratio >= 0.5)
        );
        println!(
            "group-derived {:.0}/s ({:.2} of floor), X.509 {:.2} of floor",
            group.rate,
            group.rate / floor.rate,
            x509.rate / floor.rate
        );
        let failures = symmetric.failures + group.failures + x509.failures + paced.failures;
        ensure!(failures == 0, "{failures} registrations failed");

        if large > 0 {
            println!("\nlarge run: {large} symmetric-key devices");
            let (_, report) = swarm_phase(
                &system,
                "symmetric key, large run",
                plan("large", large, DeviceKind::Symmetric)?,
                concurrency,
                None,
            )
            .await?;
            print!("{report}");
            let deviation = report.max_hub_deviation(HUBS.len());
            println!(
                "largest deviation from an even share: {:.2} % (target <= 2 %)",
                deviation * 100.0
            );
            ensure!(report.failed() == 0, "{} failures", report.failed());
            ensure!(deviation <= 0.02, "uneven distribution: {:?}", report.per_hub);
        }
        let on_hubs: usize = HUBS.iter().map(|h| system.hubs.device_count(h)).sum();
        println!("devices on the hub emulator: {on_hubs}");
        system.server.shutdown().await;
        system.hubs.shutdown().await;
        anyhow::Ok(())
    })
}
