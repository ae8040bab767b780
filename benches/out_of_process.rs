//! Server CPU per registration, out of process: the real `dps-server`, the
//! hub emulator (`dps-hub-sim`) and the load generator (`dps-device swarm`)
//! each run as their own process on loopback, and the CPU time of each is
//! read from `/proc/<pid>/stat` before and after every phase — so the
//! emulator's and the devices' work is never counted as the server's.
//!
//! One run prints:
//! * the floor: a new TLS connection carrying one small request (`GET` of an
//!   unknown path, a 404 with a small JSON body) to the server's own device
//!   listener, at the same concurrency, driven from this process; once
//!   without and once with a client certificate (the X.509 floor);
//! * symmetric-key registrations (individual enrollments, register + poll, a
//!   new connection per device) over HTTPS, MQTT and MQTT over WebSocket,
//!   and X.509 (ECDSA P-256 leaf + intermediate, group enrollment): µs of
//!   server CPU per registration, its ratio to the floor (issue 19, goal 1:
//!   ≤ 1.5×), the emulator's and the load generator's CPU per registration;
//! * hub calls per registration (from the server's `/metrics`, every call to
//!   a hub whatever its kind, and the bulk registry calls among them) at 1,
//!   8 and the configured devices in flight;
//! * registrations through hubs throttled like 4 × S1 units (a second
//!   emulator process with `--tier S1`, its clock sped up; the rate is
//!   divided back to real time).
//!
//! Enrollments are written straight into the SQLite store before the server
//! starts (not over HTTP); the X.509 group, whose CA the swarm makes, by the
//! swarm's `--create-enrollments` (one service API call in that phase).
//!
//! Run: `cargo bench -p dps-benches --bench out_of_process` (it first runs
//! `cargo build --release` of the three binaries; `DPS_BENCH_BIN_DIR` to use
//! binaries elsewhere). Knobs:
//! * `DPS_BENCH_DEVICES` devices per transport phase (default 3000; X.509
//!   and the 8-in-flight phase use a third, 1 in flight a tenth)
//! * `DPS_BENCH_CONCURRENCY` devices (and floor connections) in flight (48)
//! * `DPS_BENCH_TRANSPORTS` comma-separated, of `https`, `mqtt`, `mqtt-ws`,
//!   `amqp` (default the first three; `amqp` once `dps-device` speaks it)
//! * `DPS_BENCH_THROTTLED_DEVICES` devices through the 4 × S1 hubs (1200; 0
//!   skips), `DPS_BENCH_THROTTLE_SPEEDUP` their clock's speed-up (30)

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use dps_benches::procs::{self, HubSimProc, Proc};
use dps_benches::{env_or, verdict};
use dps_client::swarm::{Mix, PlanOptions, SwarmPlan};
use dps_client::TlsTrust;
use dps_model::{IndividualEnrollment, LinkedHub, Tenant};
use dps_storage::{SqliteOptions, SqliteStore, Store};

const HUBS: [&str; 4] = [
    "hub-0.oop.test",
    "hub-1.oop.test",
    "hub-2.oop.test",
    "hub-3.oop.test",
];
const S1_HUBS: [&str; 4] = [
    "s1-0.oop.test",
    "s1-1.oop.test",
    "s1-2.oop.test",
    "s1-3.oop.test",
];
/// The main tenant's service host: the service listener's address.
const SERVICE_HOST: &str = "127.0.0.2";
/// Goal 1 of issue 19: server CPU per registration ≤ 1.5 × the floor.
const GOAL_RATIO: f64 = 1.5;
/// IoT Hub S1: 100 identity registry operations per minute per unit.
const S1_PER_SECOND: f64 = 100.0 / 60.0;

/// A device transport the swarm speaks, and where the server serves it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Https,
    Mqtt,
    MqttWs,
    /// Served by dps-server; `dps-device swarm --transport amqp` is the hook.
    Amqp,
}

impl Transport {
    fn parse(name: &str) -> Option<Transport> {
        match name.trim() {
            "https" => Some(Transport::Https),
            "mqtt" => Some(Transport::Mqtt),
            "mqtt-ws" => Some(Transport::MqttWs),
            "amqp" => Some(Transport::Amqp),
            _ => None,
        }
    }

    /// The value of `dps-device swarm --transport`.
    fn arg(self) -> &'static str {
        match self {
            Transport::Https => "https",
            Transport::Mqtt => "mqtt",
            Transport::MqttWs => "mqtt-ws",
            Transport::Amqp => "amqp",
        }
    }
}

/// The processes and what the phases need to reach them.
struct Setup {
    dir: PathBuf,
    bin: PathBuf,
    server: Proc,
    hubs: HubSimProc,
    s1: HubSimProc,
    device: SocketAddr,
    mqtt: SocketAddr,
    amqp: SocketAddr,
    service: SocketAddr,
    admin: SocketAddr,
    /// The server's development CA (PEM file).
    server_ca: PathBuf,
    scope: String,
    s1_scope: String,
    owner_connection_string: String,
    seed_key: String,
}

/// One measured phase.
struct Phase {
    name: String,
    count: u64,
    succeeded: u64,
    failed: u64,
    concurrency: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu: f64,
    hub_cpu: f64,
    client_cpu: f64,
    hub_calls: f64,
    bulk_calls: f64,
}

impl Phase {
    fn per(&self, seconds: f64) -> f64 {
        seconds * 1e6 / self.succeeded.max(1) as f64
    }

    fn print(&self, floor: Option<f64>) {
        let server = self.per(self.server_cpu);
        let ratio = floor.map_or_else(|| "-".to_owned(), |f| format!("{:.2}", server / f));
        println!(
            "{:<34} {:>6} {:>4} {:>7.0} {:>7.1} {:>7.1} {:>8.0} {:>6} {:>7.0} {:>7.0} {:>6.3} {:>6.3} {:>5}",
            self.name,
            self.count,
            self.concurrency,
            self.rate,
            self.p50_ms,
            self.p99_ms,
            server,
            ratio,
            self.per(self.hub_cpu),
            self.per(self.client_cpu),
            self.hub_calls / self.succeeded.max(1) as f64,
            self.bulk_calls / self.succeeded.max(1) as f64,
            self.failed
        );
    }
}

fn print_header() {
    println!(
        "{:<34} {:>6} {:>4} {:>7} {:>7} {:>7} {:>8} {:>6} {:>7} {:>7} {:>6} {:>6} {:>5}",
        "phase",
        "count",
        "conc",
        "per s",
        "p50 ms",
        "p99 ms",
        "srv µs",
        "ratio",
        "hub µs",
        "gen µs",
        "calls",
        "bulk",
        "fail"
    );
}

/// The individual symmetric-key enrollments of a swarm of `count` devices
/// under `prefix`, keys derived from `seed_key` as `dps-device swarm
/// --seed-key` derives them.
fn swarm_enrollments(
    prefix: &str,
    count: u64,
    seed_key: &str,
) -> Result<Vec<IndividualEnrollment>> {
    let mut options = PlanOptions::new(
        prefix,
        count,
        Mix::only(dps_client::swarm::DeviceKind::Symmetric),
    );
    options.seed_key = Some(seed_key.to_owned());
    let plan = SwarmPlan::prepare(options)?;
    plan.individual_enrollments()
        .iter()
        .map(|e| Ok(IndividualEnrollment::from_json(e.to_string().as_bytes())?))
        .collect()
}

fn tenant(name: &str, host: &str, hubs: &HubSimProc) -> Result<Tenant> {
    let mut tenant = Tenant::new(name, host)?;
    tenant.linked_hubs = hubs
        .hubs
        .iter()
        .map(|(host, cs)| LinkedHub::new(host.clone(), cs.clone()))
        .collect();
    Ok(tenant)
}

/// Start both emulators, seed the store, write the configuration, start
/// the server. `phases` are (enrollment prefix, device count, on the S1
/// tenant); the AMQP listener is configured only when asked for.
async fn start(phases: &[(&str, u64, bool)], amqp_enabled: bool) -> Result<Setup> {
    let dir = tempfile::tempdir()?.keep();
    let bin = procs::binaries_dir()?;
    let hubs = HubSimProc::start(&bin, &dir, "hub-sim", &HUBS, None).await?;
    let speedup: f64 = env_or("DPS_BENCH_THROTTLE_SPEEDUP", 30.0);
    let s1 =
        HubSimProc::start(&bin, &dir, "hub-sim-s1", &S1_HUBS, Some(("S1", 1, speedup))).await?;

    let db = dir.join("dps.db");
    let seed_key = dps_attestation::keys::generate_key();
    let (scope, s1_scope, owner_connection_string) = {
        let store = SqliteStore::open(&db, SqliteOptions::default()).await?;
        let main = store
            .create_tenant(tenant("oop-bench", SERVICE_HOST, &hubs)?)
            .await?;
        let throttled = store
            .create_tenant(tenant("oop-s1", "s1.localhost", &s1)?)
            .await?;
        for (prefix, count, on_s1) in phases {
            let scope = if *on_s1 {
                &throttled.id_scope
            } else {
                &main.id_scope
            };
            for chunk in swarm_enrollments(prefix, *count, &seed_key)?.chunks(10_000) {
                store.import_enrollments(scope, chunk.to_vec()).await?;
            }
        }
        let owner = main
            .connection_string(dps_benches::system::OWNER_POLICY)
            .context("owner policy")?;
        (
            main.id_scope.to_string(),
            throttled.id_scope.to_string(),
            owner,
        )
    };

    let lo = IpAddr::from([127, 0, 0, 1]);
    let (device, mqtt, amqp, admin) = (
        procs::free_port(lo)?,
        procs::free_port(lo)?,
        procs::free_port(lo)?,
        procs::free_port(lo)?,
    );
    let service = procs::free_port(IpAddr::from([127, 0, 0, 2]))?;
    // Only when asked for: a server without AMQP refuses the section.
    let amqp_section = if amqp_enabled {
        format!("[device.amqp]\nlisten = \"{amqp}\"\n")
    } else {
        String::new()
    };
    let resolve: String = [(&hubs, &HUBS), (&s1, &S1_HUBS)]
        .iter()
        .flat_map(|(sim, names)| {
            names
                .iter()
                .map(move |host| format!("\"{host}\" = \"{}\"\n", sim.addr))
        })
        .collect();
    let extra = format!(
        "[device.mqtt]\nenabled = true\nlisten = \"{mqtt}\"\nwebsocket = true\n\n{amqp_section}\n\
         [hubs]\ntrusted_ca_files = [\"{}\", \"{}\"]\n\n[hubs.resolve]\n{resolve}",
        hubs.ca_file.display(),
        s1.ca_file.display()
    );
    let data_dir = dir.join("data");
    let places = procs::ServerPlaces {
        data_dir: &data_dir,
        db: &db,
        device,
        service,
        admin,
    };
    let config = procs::server_toml(&places, &extra);
    let config_file = dir.join("dps.toml");
    std::fs::write(&config_file, config)?;
    let server = procs::start_server(&bin, &config_file, &dir.join("server.log"), admin).await?;
    Ok(Setup {
        server_ca: dir.join("data").join("tls").join("ca.pem"),
        dir,
        bin,
        server,
        hubs,
        s1,
        device,
        mqtt,
        amqp,
        service,
        admin,
        scope,
        s1_scope,
        owner_connection_string,
        seed_key,
    })
}

/// New TLS connections to the device listener, one small request each
/// (a 404), from this process; `identity` makes it the X.509 floor.
async fn floor(
    setup: &Setup,
    name: &str,
    count: u64,
    concurrency: usize,
    identity: Option<(String, String)>,
) -> Result<Phase> {
    let trust = TlsTrust::new(false, &[std::fs::read_to_string(&setup.server_ca)?])?;
    let url = format!("https://{}/floor", setup.device);
    let next = Arc::new(AtomicU64::new(0));
    let (server_before, hub_before) = (setup.server.cpu(), setup.hubs.proc.cpu());
    let client_before = procs::cpu_seconds("self").unwrap_or(0.0);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (trust, next, url, identity) =
            (trust.clone(), next.clone(), url.clone(), identity.clone());
        workers.spawn(async move {
            let mut done = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
                // A new client per request: a new connection, a full handshake.
                let response = trust.http_client(identity)?.get(&url).send().await?;
                ensure!(
                    response.status() == reqwest::StatusCode::NOT_FOUND,
                    "{}",
                    response.status()
                );
                let _ = response.bytes().await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut succeeded = 0;
    while let Some(done) = workers.join_next().await {
        succeeded += done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Phase {
        name: name.to_owned(),
        count,
        succeeded,
        failed: count - succeeded,
        concurrency,
        rate: succeeded as f64 / elapsed,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        server_cpu: setup.server.cpu() - server_before,
        hub_cpu: setup.hubs.proc.cpu() - hub_before,
        client_cpu: procs::cpu_seconds("self").unwrap_or(0.0) - client_before,
        hub_calls: 0.0,
        bulk_calls: 0.0,
    })
}

/// What a swarm phase runs.
struct SwarmRun<'a> {
    name: String,
    transport: Transport,
    prefix: &'a str,
    count: u64,
    concurrency: usize,
    /// X.509 devices, their group created by the swarm itself.
    x509: bool,
    /// Through the S1 hubs' tenant.
    s1: bool,
}

/// `dps-device swarm` as its own process; the server's, the emulator's and
/// the swarm's CPU over the phase, the server's hub calls.
async fn swarm(setup: &Setup, run: SwarmRun<'_>) -> Result<Phase> {
    let endpoint = match run.transport {
        Transport::Https | Transport::MqttWs => setup.device,
        Transport::Mqtt => setup.mqtt,
        Transport::Amqp => setup.amqp,
    };
    let scope = if run.s1 {
        &setup.s1_scope
    } else {
        &setup.scope
    };
    let mut args: Vec<String> = [
        "swarm",
        "--quiet",
        "--json",
        "--poll-interval-ms",
        "0",
        "--timeout",
        "60",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend([
        "--endpoint".to_owned(),
        endpoint.to_string(),
        "--transport".to_owned(),
        run.transport.arg().to_owned(),
        "--id-scope".to_owned(),
        scope.clone(),
        "--count".to_owned(),
        run.count.to_string(),
        "--concurrency".to_owned(),
        run.concurrency.to_string(),
        "--prefix".to_owned(),
        run.prefix.to_owned(),
        "--seed-key".to_owned(),
        setup.seed_key.clone(),
        "--ca".to_owned(),
        setup.server_ca.display().to_string(),
    ]);
    if run.x509 {
        args.extend([
            "--mix".to_owned(),
            "x509=100".to_owned(),
            "--create-enrollments".to_owned(),
            "--service-connection-string".to_owned(),
            setup.owner_connection_string.clone(),
            "--service-endpoint".to_owned(),
            setup.service.to_string(),
        ]);
    }
    let hubs = if run.s1 { &setup.s1 } else { &setup.hubs };
    let output = setup.dir.join(format!("swarm-{}.json", run.prefix));
    let (server_before, hub_before) = (setup.server.cpu(), hubs.proc.cpu());
    let (calls_before, bulk_before) = procs::hub_calls(setup.admin).await?;
    let child = Proc::spawn(&setup.bin.join("dps-device"), &args, &output)?;
    let (_, client_cpu) = child.wait_sampling().await?;
    let (server_cpu, hub_cpu) = (
        setup.server.cpu() - server_before,
        hubs.proc.cpu() - hub_before,
    );
    let (calls, bulk) = procs::hub_calls(setup.admin).await?;
    let text = std::fs::read_to_string(&output)?;
    let json_start = text
        .find('{')
        .with_context(|| format!("no report from the swarm: {text}"))?;
    let report: serde_json::Value = serde_json::from_str(&text[json_start..])
        .with_context(|| format!("the swarm's report: {text}"))?;
    let number = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    if number("/failed") > 0.0 {
        eprintln!("{}: failures {}", run.name, report["sampleErrors"]);
    }
    Ok(Phase {
        name: run.name,
        count: run.count,
        succeeded: number("/succeeded") as u64,
        failed: number("/failed") as u64,
        concurrency: run.concurrency,
        rate: number("/registrationsPerSecond"),
        p50_ms: number("/latencyMs/p50"),
        p99_ms: number("/latencyMs/p99"),
        server_cpu,
        hub_cpu,
        client_cpu,
        hub_calls: calls - calls_before,
        bulk_calls: bulk - bulk_before,
    })
}

fn main() -> Result<()> {
    let devices: u64 = env_or("DPS_BENCH_DEVICES", 3000);
    let concurrency: usize = env_or("DPS_BENCH_CONCURRENCY", 48).max(1);
    let throttled: u64 = env_or("DPS_BENCH_THROTTLED_DEVICES", 1200);
    let speedup: f64 = env_or("DPS_BENCH_THROTTLE_SPEEDUP", 30.0);
    let transports = std::env::var("DPS_BENCH_TRANSPORTS")
        .unwrap_or_else(|_| "https,mqtt,mqtt-ws".to_owned())
        .split(',')
        .map(|name| Transport::parse(name).with_context(|| format!("unknown transport {name:?}")))
        .collect::<Result<Vec<_>>>()?;
    let (one, eight) = ((devices / 10).max(1), (devices / 3).max(1));
    let mut seeded: Vec<(&str, u64, bool)> = transports
        .iter()
        .map(|t| (t.arg(), devices, false))
        .collect();
    seeded.extend([
        ("flight-1", one, false),
        ("flight-8", eight, false),
        ("s1", throttled, true),
    ]);

    dps_benches::runtime()?.block_on(async move {
        let setup = start(&seeded, transports.contains(&Transport::Amqp)).await?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "dps-server, dps-hub-sim (4 hubs; 4 more as S1 x {speedup}) and dps-device swarm as separate processes, \
             {} cores, load average {}; CPU from /proc/<pid>/stat; files in {}",
            dps_benches::cores(),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            setup.dir.display()
        );
        println!("srv/hub/gen µs: CPU of the server, the hub emulator, the load generator per registration (connection); ratio: srv ÷ floor; calls, bulk: hub calls per registration\n");
        print_header();
        let https_floor = floor(&setup, "floor: TLS + 1 request (404)", devices, concurrency, None).await?;
        https_floor.print(None);
        let floor_us = https_floor.per(https_floor.server_cpu);
        let x509_identity = {
            let mut options = PlanOptions::new("floor", 1, Mix::only(dps_client::swarm::DeviceKind::X509));
            options.seed_key = Some(setup.seed_key.clone());
            let plan = SwarmPlan::prepare(options)?;
            plan.ca().context("the X.509 CA")?.issue("floor-x509")?
        };
        let x509_floor = floor(&setup, "floor: TLS + client cert + 1 request", devices / 3, concurrency, Some(x509_identity)).await?;
        x509_floor.print(None);
        let x509_floor_us = x509_floor.per(x509_floor.server_cpu);

        let mut goal = Vec::new();
        for transport in &transports {
            let run = SwarmRun {
                name: format!("symmetric key, {}", transport.arg()),
                transport: *transport,
                prefix: transport.arg(),
                count: devices,
                concurrency,
                x509: false,
                s1: false,
            };
            let phase = swarm(&setup, run).await?;
            phase.print(Some(floor_us));
            goal.push((phase.name.clone(), phase.per(phase.server_cpu), floor_us, phase.failed));
        }
        let x509 = swarm(&setup, SwarmRun {
            name: "X.509 (ECDSA chain), https".to_owned(),
            transport: Transport::Https,
            prefix: "x509",
            count: (devices / 3).max(1),
            concurrency,
            x509: true,
            s1: false,
        })
        .await?;
        x509.print(Some(x509_floor_us));
        goal.push((x509.name.clone(), x509.per(x509.server_cpu), x509_floor_us, x509.failed));

        for (prefix, count, in_flight) in [("flight-1", one, 1), ("flight-8", eight, 8)] {
            let phase = swarm(&setup, SwarmRun {
                name: format!("symmetric key, https, {in_flight} in flight"),
                transport: Transport::Https,
                prefix,
                count,
                concurrency: in_flight,
                x509: false,
                s1: false,
            })
            .await?;
            phase.print(Some(floor_us));
        }

        let s1 = if throttled > 0 {
            let phase = swarm(&setup, SwarmRun {
                name: format!("4 x S1 hubs (clock x{speedup})"),
                transport: Transport::Https,
                prefix: "s1",
                count: throttled,
                concurrency,
                x509: false,
                s1: true,
            })
            .await?;
            phase.print(None);
            Some(phase)
        } else {
            None
        };

        println!("\nissue 19, goal 1: server CPU per registration <= {GOAL_RATIO} x the floor");
        let mut failures = 0;
        for (name, us, floor, failed) in &goal {
            let ratio = us / floor;
            println!("  {name:<32} {us:>7.0} µs / {floor:>5.0} µs = {ratio:.2}   {}", verdict(ratio <= GOAL_RATIO));
            failures += failed;
        }
        if let Some(s1) = &s1 {
            let limit = S1_HUBS.len() as f64 * S1_PER_SECOND;
            println!(
                "4 x S1: {} of {} assigned, {} failed; {:.2} registrations/s in real time ({:.0}/s at x{speedup}; \
                 the hubs allow {limit:.2} identity operations/s after a first minute of {}), p99 {:.1} s, \
                 {:.3} hub calls per registration",
                s1.succeeded, s1.count, s1.failed, s1.rate / speedup, s1.rate,
                S1_HUBS.len() * 100,
                s1.p99_ms / 1000.0,
                s1.hub_calls / s1.succeeded.max(1) as f64
            );
            failures += s1.failed;
        }
        let store = procs::disk_bytes(&setup.dir.join("dps.db"))
            + procs::disk_bytes(&setup.dir.join("dps.db-wal"));
        println!(
            "server resident memory {:.0} MiB; store {:.1} MiB",
            procs::mib(setup.server.rss().unwrap_or(0)),
            procs::mib(store)
        );
        let Setup { server, hubs, s1, dir, .. } = setup;
        server.stop().await;
        hubs.proc.stop().await;
        s1.proc.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        ensure!(failures == 0, "{failures} registrations failed");
        anyhow::Ok(())
    })
}
