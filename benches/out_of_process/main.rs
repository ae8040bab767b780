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
//!   new connection per device) over HTTPS, MQTT, MQTT over WebSocket, AMQP
//!   and AMQP over WebSocket,
//!   and X.509 (ECDSA P-256 leaf + intermediate, group enrollment), and
//!   HTTPS on a tenant with `synchronousRegister` (no poll): µs of
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
//!   `amqp`, `amqp-ws` (default all five)
//! * `DPS_BENCH_LARGE` adds one swarm of that many symmetric-key devices over
//!   HTTPS (issue 19, goal 4: failures, first vs last 10 % rate, the
//!   server's peak resident memory, the store's size); 0 (default) skips
//! * `DPS_BENCH_THROTTLED_DEVICES` devices through the 4 × S1 hubs (1200; 0
//!   skips), `DPS_BENCH_THROTTLE_SPEEDUP` their clock's speed-up (30)

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use dps_benches::procs::{self, Proc};
use dps_benches::table::{latency_histogram, print_cpu_header, record, CpuPhase};
use dps_benches::{env_or, verdict};
use dps_client::swarm::{Mix, PlanOptions, SwarmPlan};
use dps_client::TlsTrust;

mod setup;

use setup::{Setup, Tenancy, Transport, S1_HUBS};

/// Goal 1 of issue 19: server CPU per registration ≤ 1.5 × the floor.
const GOAL_RATIO: f64 = 1.5;
/// IoT Hub S1: 100 identity registry operations per minute per unit.
const S1_PER_SECOND: f64 = 100.0 / 60.0;

/// New TLS connections to the device listener, one small request each
/// (a 404), from this process; `identity` makes it the X.509 floor.
async fn floor(
    setup: &Setup,
    name: &str,
    count: u64,
    concurrency: usize,
    identity: Option<(String, String)>,
) -> Result<CpuPhase> {
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
            let mut latency = latency_histogram();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let begun = Instant::now();
                let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
                // A new client per request: a new connection, a full handshake.
                let response = trust.http_client(identity)?.get(&url).send().await?;
                ensure!(
                    response.status() == reqwest::StatusCode::NOT_FOUND,
                    "{}",
                    response.status()
                );
                let _ = response.bytes().await?;
                record(&mut latency, begun.elapsed());
            }
            anyhow::Ok(latency)
        });
    }
    let mut latency = latency_histogram();
    while let Some(done) = workers.join_next().await {
        latency.add(done??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let succeeded = latency.len();
    Ok(CpuPhase {
        name: name.to_owned(),
        count,
        succeeded,
        failed: count - succeeded,
        concurrency,
        rate: succeeded as f64 / elapsed,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        server_cpu: setup.server.cpu() - server_before,
        hub_cpu: setup.hubs.proc.cpu() - hub_before,
        client_cpu: procs::cpu_seconds("self").unwrap_or(0.0) - client_before,
        hub_calls: 0.0,
        bulk_calls: 0.0,
    })
}

/// What a swarm phase runs.
#[derive(Default)]
struct SwarmRun<'a> {
    name: String,
    transport: Transport,
    prefix: &'a str,
    count: u64,
    concurrency: usize,
    /// X.509 devices, their group created by the swarm itself.
    x509: bool,
    /// The tenant (and so the hubs) the devices belong to.
    tenancy: Tenancy,
    /// Write one CSV row per device here (`--latency-csv`).
    latency_csv: Option<PathBuf>,
}

/// `dps-device swarm` as its own process; the server's, the emulator's and
/// the swarm's CPU over the phase, the server's hub calls.
async fn swarm(setup: &Setup, run: SwarmRun<'_>) -> Result<CpuPhase> {
    let endpoint = match run.transport {
        Transport::Https | Transport::MqttWs | Transport::AmqpWs => setup.device,
        Transport::Mqtt => setup.mqtt,
        Transport::Amqp => setup.amqp,
    };
    let scope = match run.tenancy {
        Tenancy::Main => &setup.scope,
        Tenancy::Synchronous => &setup.sync_scope,
        Tenancy::S1 => &setup.s1_scope,
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
    if let Some(csv) = &run.latency_csv {
        args.extend(["--latency-csv".to_owned(), csv.display().to_string()]);
    }
    let hubs = if run.tenancy == Tenancy::S1 {
        &setup.s1
    } else {
        &setup.hubs
    };
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
    Ok(CpuPhase {
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

/// `count` symmetric-key devices over HTTPS in one swarm (issue 19, goal 4):
/// failures, the rate of the first and the last 10 % of devices to finish,
/// the server's largest resident memory over the run (sampled each second)
/// and the store's size. Returns the failures.
async fn large_phase(setup: &Setup, count: u64, concurrency: usize) -> Result<u64> {
    let pid = setup.server.pid().to_owned();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = procs::rss_bytes(&pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    let csv = setup.dir.join("large.csv");
    let phase = swarm(
        setup,
        SwarmRun {
            name: format!("{count} devices, https"),
            prefix: "large",
            count,
            concurrency,
            latency_csv: Some(csv.clone()),
            ..SwarmRun::default()
        },
    )
    .await?;
    sampler.abort();
    phase.print(None);
    let (first, last) =
        procs::first_and_last_tenth_rates(&std::fs::read_to_string(&csv)?).unwrap_or_default();
    let store = procs::disk_bytes(&setup.dir.join("dps.db"))
        + procs::disk_bytes(&setup.dir.join("dps.db-wal"));
    println!(
        "{count} devices: {} failed; first 10 % {first:.0}/s, last 10 % {last:.0}/s ({:+.1} %, target within 15 %); \
         server resident memory at most {:.0} MiB (sampled each second), {:.0} MiB at the end; store {:.0} MiB",
        phase.failed,
        (last / first - 1.0) * 100.0,
        procs::mib(peak.load(Ordering::Relaxed)),
        procs::mib(setup.server.rss().unwrap_or(0)),
        procs::mib(store)
    );
    Ok(phase.failed)
}

fn main() -> Result<()> {
    let devices: u64 = env_or("DPS_BENCH_DEVICES", 3000);
    let concurrency: usize = env_or("DPS_BENCH_CONCURRENCY", 48).max(1);
    let throttled: u64 = env_or("DPS_BENCH_THROTTLED_DEVICES", 1200);
    let speedup: f64 = env_or("DPS_BENCH_THROTTLE_SPEEDUP", 30.0);
    let transports = std::env::var("DPS_BENCH_TRANSPORTS")
        .unwrap_or_else(|_| "https,mqtt,mqtt-ws,amqp,amqp-ws".to_owned())
        .split(',')
        .map(|name| Transport::parse(name).with_context(|| format!("unknown transport {name:?}")))
        .collect::<Result<Vec<_>>>()?;
    let large: u64 = env_or("DPS_BENCH_LARGE", 0);
    let (one, eight) = ((devices / 10).max(1), (devices / 3).max(1));
    let mut seeded: Vec<(&str, u64, Tenancy)> = transports
        .iter()
        .map(|t| (t.arg(), devices, Tenancy::Main))
        .collect();
    seeded.extend([
        ("sync", devices, Tenancy::Synchronous),
        ("flight-1", one, Tenancy::Main),
        ("flight-8", eight, Tenancy::Main),
        ("s1", throttled, Tenancy::S1),
        ("large", large, Tenancy::Main),
    ]);

    dps_benches::runtime()?.block_on(async move {
        let setup = setup::start(&seeded).await?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "dps-server, dps-hub-sim (4 hubs; 4 more as S1 x {speedup}) and dps-device swarm as separate processes, \
             {} cores, load average {}; CPU from /proc/<pid>/stat; files in {}",
            dps_benches::cores(),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            setup.dir.display()
        );
        println!("srv/hub/gen µs: CPU of the server, the hub emulator, the load generator per registration (connection); ratio: srv ÷ floor; calls, bulk: hub calls per registration\n");
        print_cpu_header();
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
                tenancy: Tenancy::Main,
                latency_csv: None,
            };
            let phase = swarm(&setup, run).await?;
            phase.print(Some(floor_us));
            goal.push((phase.name.clone(), phase.per(phase.server_cpu), floor_us, phase.failed));
        }
        // Register without the poll (tenant `synchronousRegister`): what the
        // poll costs, and the ratio a tenant gets that turns it on.
        let sync = swarm(&setup, SwarmRun {
            name: "symmetric key, https, synchronous register".to_owned(),
            transport: Transport::Https,
            prefix: "sync",
            count: devices,
            concurrency,
            tenancy: Tenancy::Synchronous,
            ..Default::default()
        })
        .await?;
        sync.print(Some(floor_us));
        goal.push((sync.name.clone(), sync.per(sync.server_cpu), floor_us, sync.failed));
        let x509 = swarm(&setup, SwarmRun {
            name: "X.509 (ECDSA chain), https".to_owned(),
            transport: Transport::Https,
            prefix: "x509",
            count: (devices / 3).max(1),
            concurrency,
            x509: true,
            tenancy: Tenancy::Main,
            latency_csv: None,
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
                tenancy: Tenancy::Main,
                latency_csv: None,
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
                tenancy: Tenancy::S1,
                latency_csv: None,
            })
            .await?;
            phase.print(None);
            Some(phase)
        } else {
            None
        };

        let large_failures = match large {
            0 => 0,
            count => large_phase(&setup, count, concurrency).await?,
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
                "4 x S1: {} of {} assigned, {} failed; {:.2} registrations/s real-time equivalent ({:.0}/s at x{speedup}; \
                 the hubs allow {limit:.2} identity operations/s after a first minute of {}), p99 {:.0} ms, \
                 {:.3} hub calls per registration",
                s1.succeeded, s1.count, s1.failed, s1.rate / speedup, s1.rate,
                S1_HUBS.len() * 100,
                s1.p99_ms,
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
        let failures = failures + large_failures;
        ensure!(failures == 0, "{failures} registrations failed");
        anyhow::Ok(())
    })
}
