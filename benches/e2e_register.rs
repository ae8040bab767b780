//! The whole registration path on one machine: dps in-process (SQLite in a
//! temporary directory, the hub emulator with four equal-weight hubs), and a
//! swarm of `dps-client` devices, each with its own client and a new TLS
//! connection (full handshake, no resumption), doing register + poll.
//!
//! The same run provisions symmetric-key devices over MQTT 3.1.1 over TLS,
//! MQTT over WebSocket, AMQP 1.0 over TLS and AMQP over WebSocket (also a new
//! connection per device) and prints them in the same table, with their
//! ratio to HTTPS, two ways:
//! * register + poll, as above, polling at once on every transport;
//! * register alone, against a second tenant with `synchronous_register`
//!   (the final state is the register answer): one round trip on every
//!   transport, the same client loop for all five — the like-for-like
//!   comparison of the transports.
//!
//! In the same run it measures the machine's floor: a bare rustls server with
//! the same TLS setup (ECDSA P-256 certificate, client certificate requested)
//! answering one small HTTP request per new TLS connection, driven by the same
//! client code — and prints registrations/s ÷ floor.
//!
//! Run: `cargo bench -p dps-benches --bench e2e_register`
//! * `DPS_BENCH_DEVICES` devices per phase (default 6000; X.509 uses half)
//! * `DPS_BENCH_CONCURRENCY` devices in flight (default 48)
//! * `DPS_BENCH_STORAGE` overrides the storage URL (e.g. `memory://`, to see
//!   what SQLite costs); `DPS_BENCH_QUICK=1` stops after the floor and the
//!   symmetric-key phase (for profiling).
//! * `DPS_BENCH_LARGE=100000` adds a symmetric-key run of that many devices,
//!   checking zero failures and each hub within 2 % of an even share.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use dps_benches::devices::{self, DeviceLoop};
use dps_benches::system::{self, Hubs};
use dps_benches::table::{latency_histogram, print_header, record, Meter, Row};
use dps_benches::{env_or, verdict};
use dps_client::swarm::{
    self, DeviceKind, Mix, PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress, SwarmReport,
};
use dps_client::{TlsTrust, Transport};
use dps_model::{EnrollmentGroup, IdScope, IndividualEnrollment, Precondition};
use dps_service::server::RunningServer;

const HUBS: [&str; 4] = [
    "hub-0.bench.test",
    "hub-1.bench.test",
    "hub-2.bench.test",
    "hub-3.bench.test",
];

struct System {
    server: RunningServer,
    hubs: Hubs,
    scope: IdScope,
    /// A tenant answering register with the final state (no poll).
    synchronous_scope: IdScope,
    _dir: tempfile::TempDir,
}

async fn start_system() -> Result<System> {
    let dir = tempfile::tempdir()?;
    let hubs = Hubs::start(dir.path(), &HUBS).await?;
    let mut config = system::server_config(&dir.path().join("data"), Some(&hubs));
    if let Ok(url) = std::env::var("DPS_BENCH_STORAGE") {
        config.storage_url = Some(url);
    }
    // MQTT and AMQP over TLS on ports of their own; both over WebSocket on
    // the HTTPS port.
    config.device.mqtt.enabled = true;
    config.device.mqtt.listen = Some(system::loopback(1));
    config.device.mqtt.websocket = true;
    config.device.amqp.enabled = true;
    config.device.amqp.listen = Some(system::loopback(1));
    config.device.amqp.websocket = true;
    let server = dps_service::server::start(config).await?;
    let tenant = system::tenant("bench", "127.0.0.2", Some(&hubs));
    let tenant = server.store().create_tenant(tenant).await?;
    let mut synchronous = system::tenant("bench-synchronous", "127.0.0.2", Some(&hubs));
    synchronous.synchronous_register = true;
    let synchronous = server.store().create_tenant(synchronous).await?;
    Ok(System {
        server,
        hubs,
        scope: tenant.id_scope,
        synchronous_scope: synchronous.id_scope,
        _dir: dir,
    })
}

/// Create the plan's enrollments directly in the store (not timed).
async fn enroll(system: &System, scope: &IdScope, plan: &SwarmPlan) -> Result<()> {
    for (_, group) in plan.enrollment_groups() {
        let group = EnrollmentGroup::from_json(group.to_string().as_bytes())?;
        system
            .server
            .store()
            .put_enrollment_group(scope, group, Precondition::None)
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
            .store()
            .import_enrollments(scope, chunk.to_vec())
            .await?;
    }
    // Let the tenant view (groups) cache expire so the run sees the groups.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    Ok(())
}

async fn swarm_phase(
    system: &System,
    name: &str,
    plan: SwarmPlan,
    concurrency: usize,
    rate: Option<f64>,
) -> Result<(Row, SwarmReport)> {
    enroll(system, &system.scope, &plan).await?;
    let mut config = SwarmConfig::new(
        system
            .server
            .device_addr()
            .expect("device HTTPS listener")
            .to_string(),
        system.scope.to_string(),
        TlsTrust::new(false, &[system.server.trust_pem()])?,
    );
    config.concurrency = concurrency;
    config.poll_interval = Some(Duration::ZERO);
    config.timeout = Duration::from_secs(60);
    config.rate = rate;
    let meter = Meter::start();
    let report = swarm::run(&config, Arc::new(plan), Arc::new(SwarmProgress::default())).await;
    let row = Row::from_swarm(name, &report, concurrency, &meter);
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
    let meter = Meter::start();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (trust, next) = (trust.clone(), next.clone());
            tokio::spawn(async move {
                let mut histogram = latency_histogram();
                let url = format!("https://{addr}/floor");
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let begun = std::time::Instant::now();
                    // A new client per request: a new connection and a full handshake.
                    let client = trust.http_client(None)?;
                    let response = client.get(&url).send().await?;
                    ensure!(response.status().is_success());
                    let _ = response.bytes().await?;
                    record(&mut histogram, begun.elapsed());
                }
                anyhow::Ok(histogram)
            })
        })
        .collect();
    let mut latency = latency_histogram();
    for worker in workers {
        latency.add(worker.await??)?;
    }
    let row = Row::new(
        "floor: bare rustls, 1 request per connection",
        concurrency,
        latency,
        0,
        &meter,
    );
    server.abort();
    row.print();
    Ok(row)
}

/// Symmetric-key devices over `transport` through the shared device loop
/// (the swarm's client set-up, a new connection per device), under `scope`.
async fn transport_phase(
    system: &System,
    scope: &IdScope,
    name: &str,
    transport: Transport,
    plan: SwarmPlan,
    concurrency: usize,
) -> Result<Row> {
    enroll(system, scope, &plan).await?;
    let endpoint = match transport {
        Transport::Mqtt => mqtt_addr(system)?,
        Transport::Amqp => amqp_addr(system)?,
        _ => system.server.device_addr().expect("device HTTPS listener"),
    };
    let mut config = DeviceLoop::new(
        vec![endpoint.to_string()],
        scope.to_string(),
        vec![system.server.trust_pem().to_owned()],
    );
    config.transport = transport;
    config.concurrency = concurrency;
    let report = devices::provision(&config, name, Arc::new(plan.devices)).await?;
    if report.failed > 0 {
        eprintln!("{name}: failures {:?}", report.sample_errors);
    }
    report.row.print();
    Ok(report.row)
}

fn mqtt_addr(system: &System) -> Result<SocketAddr> {
    system
        .server
        .mqtt_addr()
        .ok_or_else(|| anyhow::anyhow!("the server does not serve MQTT"))
}

fn amqp_addr(system: &System) -> Result<SocketAddr> {
    system
        .server
        .amqp_addr()
        .ok_or_else(|| anyhow::anyhow!("the server does not serve AMQP"))
}

/// The transports compared, HTTPS first (the baseline of the ratios).
const TRANSPORTS: [Transport; 5] = [
    Transport::Https,
    Transport::Mqtt,
    Transport::MqttWs,
    Transport::Amqp,
    Transport::AmqpWs,
];

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Mqtt => "MQTT over TLS",
        Transport::MqttWs => "MQTT over WebSocket",
        Transport::Amqp => "AMQP over TLS",
        Transport::AmqpWs => "AMQP over WebSocket",
        _ => "HTTPS",
    }
}

/// For registration ids.
fn transport_prefix(transport: Transport) -> &'static str {
    match transport {
        Transport::Mqtt => "mqtt",
        Transport::MqttWs => "mqttws",
        Transport::Amqp => "amqp",
        Transport::AmqpWs => "amqpws",
        _ => "https",
    }
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
    dps_benches::runtime()?.block_on(async move {
        let system = start_system().await?;
        println!(
            "dps on {} (HTTPS, MQTT and AMQP over WebSocket), {} (MQTT over TLS) and {} (AMQP over TLS); SQLite, 4 hubs on the in-process emulator; {} cores; {devices} devices per phase",
            system.server.device_addr().expect("device HTTPS listener"),
            mqtt_addr(&system)?,
            amqp_addr(&system)?,
            dps_benches::cores()
        );
        println!("(\"register only\": a tenant with synchronous register, whose answer is the final state: no poll)");
        print_header("devices");
        // Warm-up: code paths, the hub clients' connections, SQLite pages.
        let _ = swarm_phase(&system, "warm-up", plan("warm", 500, DeviceKind::Symmetric)?, concurrency, None).await?;
        // The same for every transport, through the synchronous tenant (its cache too).
        for transport in TRANSPORTS {
            let name = format!("warm-up, register only, {}", transport_name(transport));
            let prefix = format!("warm-{}", transport_prefix(transport));
            let _ = transport_phase(&system, &system.synchronous_scope, &name, transport, plan(&prefix, 200, DeviceKind::Symmetric)?, concurrency).await?;
        }

        let floor = floor_phase(devices, concurrency).await?;
        let (symmetric, _) = swarm_phase(
            &system,
            "symmetric key, individual (register+poll)",
            plan("sym", devices, DeviceKind::Symmetric)?,
            concurrency,
            None,
        )
        .await?;
        if std::env::var("DPS_BENCH_QUICK").is_ok() {
            println!("quick: {:.0}/s, floor {:.0}/s", symmetric.rate, floor.rate);
            return Ok(());
        }
        // Register + poll over each stream transport, in TRANSPORTS order.
        let mut streamed = Vec::new();
        for transport in &TRANSPORTS[1..] {
            let name = format!("symmetric key, {} (reg+poll)", transport_name(*transport));
            let devices = plan(transport_prefix(*transport), devices, DeviceKind::Symmetric)?;
            streamed.push(
                transport_phase(&system, &system.scope, &name, *transport, devices, concurrency)
                    .await?,
            );
        }
        let mut register_only = Vec::new();
        for transport in TRANSPORTS {
            let prefix = format!("sync-{}", transport_prefix(transport));
            register_only.push(
                transport_phase(
                    &system,
                    &system.synchronous_scope,
                    &format!("register only, {}", transport_name(transport)),
                    transport,
                    plan(&prefix, devices, DeviceKind::Symmetric)?,
                    concurrency,
                )
                .await?,
            );
        }
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
        let latency = system.server.device_latency().clone();
        let (register_before, poll_before) = (latency.register.snapshot(), latency.poll.snapshot());
        let (paced, _) = swarm_phase(
            &system,
            &format!("symmetric key at half rate ({half:.0}/s)"),
            plan("half", devices / 2, DeviceKind::Symmetric)?,
            concurrency,
            Some(half),
        )
        .await?;

        println!();
        let p99 = |row: &Row| row.ms(0.99);
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
        let server_register = latency.register.snapshot().since(&register_before);
        let server_poll = latency.poll.snapshot().since(&poll_before);
        let server_ms = |snapshot: &dps_service::pipeline::LatencySnapshot, q: f64| {
            snapshot.quantile(q).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        };
        let server_p99 = server_ms(&server_register, 0.99);
        println!(
            "p99 at half rate, server-side register: {server_p99:.2} ms (p50 {:.2} ms; poll p50 {:.2} ms, p99 {:.2} ms; 50 µs buckets)   target < 10 ms   {}",
            server_ms(&server_register, 0.5),
            server_ms(&server_poll, 0.5),
            server_ms(&server_poll, 0.99),
            verdict(server_p99 < 10.0)
        );
        println!(
            "p99 at half rate, client-observed (new TLS connection, register + poll): {:.2} ms",
            p99(&paced)
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
        let https_only = &register_only[0];
        let comparisons = TRANSPORTS[1..].iter().enumerate().flat_map(|(i, transport)| {
            let what = transport_name(*transport);
            [
                (what, "register+poll", &streamed[i], &symmetric),
                (what, "register only", &register_only[i + 1], https_only),
            ]
        });
        for (what, flow, row, https) in comparisons {
            let ratio = row.rate / https.rate;
            println!(
                "{what} / HTTPS, {flow}: {:.0} / {:.0} = {ratio:.2}   target >= 0.80 and >= 2000/s   {}",
                row.rate,
                https.rate,
                verdict(ratio >= 0.8 && row.rate >= 2000.0)
            );
        }
        let failures = [&symmetric, &group, &x509, &paced]
            .into_iter()
            .chain(&streamed)
            .chain(&register_only)
            .map(|row| row.failures)
            .sum::<u64>();
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
        println!("devices on the hub emulator: {}", system.hubs.device_count());
        system.server.shutdown().await;
        system.hubs.sim.shutdown().await;
        anyhow::Ok(())
    })
}
