//! Registrations/s with 1, 2 and 3 dps replicas sharing ONE store — a
//! PostgreSQL schema, then a SQLite file — and enrollment point lookups with
//! 1,000,000 enrollments stored in PostgreSQL.
//!
//! Each replica is a whole in-process server (its own listeners, TLS
//! identity, caches and store connections) on the same storage URL, as
//! replicas behind a load balancer are; one hub emulator serves four hubs.
//! Devices (symmetric-key individual enrollments) register and poll over
//! HTTPS, each with a new TLS connection, spread round-robin over the
//! replicas. Every configuration starts fresh replicas, warms them up, then
//! measures new devices.
//!
//! What the figures mean on one machine: the replicas share the machine's
//! cores with each other, with the device clients and with PostgreSQL, so
//! more replicas cannot add CPU. The figures show what sharing one store
//! costs (or gains: more writer connections, more parallel commits), not the
//! scale-out of replicas on separate machines.
//!
//! SQLite: several processes (here, stores) may open one file in WAL mode,
//! but SQLite admits one writer at a time: each replica's writer waits for
//! the file lock (`busy_timeout`) while another commits. The bench runs 1, 2
//! and 3 replicas on SQLite too and prints what happens, failures included.
//!
//! Run: `cargo bench -p dps-benches --bench replicas`
//! * `DPS_BENCH_DEVICES` devices per measured run (default 4000)
//! * `DPS_BENCH_CONCURRENCY` devices in flight over all replicas (default 48)
//! * `DPS_BENCH_REPLICAS` most replicas (default 3)
//! * `DPS_BENCH_LOOKUP_ENROLLMENTS` enrollments stored for the PostgreSQL
//!   lookups (default 1,000,000; seeding takes about a minute; 0 skips them)
//! * `DPS_BENCH_SECONDS` seconds of lookups (default 5)
//! * `DPS_TEST_POSTGRES_URL` the PostgreSQL server (default
//!   `postgres://postgres@127.0.0.1:5432/test`); without one the PostgreSQL
//!   part is reported as not run and the SQLite part still runs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use dps_benches::devices::{self, DeviceLoop};
use dps_benches::system::{self, Hubs};
use dps_benches::table::{latency_histogram, print_header, record, Meter, Row};
use dps_benches::{env_or, xorshift};
use dps_client::swarm::{DeviceKind, Mix, PlanOptions, SwarmPlan};
use dps_model::{IdScope, RegistrationId};
use dps_service::server::RunningServer;
use dps_storage::postgres::scratch::ScratchSchema;
use dps_storage::{PostgresOptions, PostgresStore, Store};

const HUBS: [&str; 4] = [
    "hub-0.replicas.test",
    "hub-1.replicas.test",
    "hub-2.replicas.test",
    "hub-3.replicas.test",
];
/// Concurrent readers of the lookup phase (as in the storage bench).
const LOOKUP_READERS: usize = 8;
/// Devices of the warm-up before each measured run.
const WARM_UP_DEVICES: u64 = 300;

struct Settings {
    devices: u64,
    concurrency: usize,
    replicas: usize,
    lookup_enrollments: u64,
    lookup_time: Duration,
}

/// One backend's rows, by replica count.
struct Scaling {
    backend: &'static str,
    rows: Vec<(usize, Row)>,
}

fn main() -> Result<()> {
    let settings = Settings {
        devices: env_or("DPS_BENCH_DEVICES", 4000),
        concurrency: env_or("DPS_BENCH_CONCURRENCY", 48),
        replicas: env_or("DPS_BENCH_REPLICAS", 3).max(1),
        lookup_enrollments: env_or("DPS_BENCH_LOOKUP_ENROLLMENTS", 1_000_000),
        lookup_time: Duration::from_secs(env_or("DPS_BENCH_SECONDS", 5)),
    };
    dps_benches::runtime()?.block_on(run(&settings))
}

async fn run(settings: &Settings) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hubs = Hubs::start(dir.path(), &HUBS).await?;
    println!(
        "dps replicas in-process sharing one store; {} hubs on the in-process emulator; {} cores; \
         {} devices per run (symmetric key, HTTPS register+poll, new TLS connection each), {} in flight",
        HUBS.len(),
        dps_benches::cores(),
        settings.devices,
        settings.concurrency
    );
    println!(
        "(all replicas share this machine's cores: more replicas cannot add CPU here; \
         \"cores\" counts this process only, not the PostgreSQL server)\n"
    );
    let mut scalings = Vec::new();

    match ScratchSchema::create().await {
        Some(schema) => {
            println!(
                "PostgreSQL: schema {} on {}",
                schema.name(),
                redacted_server()
            );
            print_header("devices");
            scalings.push(scaling("PostgreSQL", schema.url(), &hubs, dir.path(), settings).await?);
            drop(schema);
            if settings.lookup_enrollments > 0 {
                lookups(settings).await?;
            }
        }
        None => println!(
            "PostgreSQL part NOT RUN: no server at {} (set DPS_TEST_POSTGRES_URL)",
            redacted_server()
        ),
    }

    let sqlite = dir.path().join("shared.db");
    println!(
        "\nSQLite: one file shared by every replica ({})",
        sqlite.display()
    );
    print_header("devices");
    let url = format!("sqlite://{}", sqlite.display());
    scalings.push(scaling("SQLite", &url, &hubs, dir.path(), settings).await?);

    println!("\nregistrations/s by replica count (and relative to 1 replica)");
    for scaling in &scalings {
        let base = scaling.rows.first().map_or(0.0, |(_, row)| row.rate);
        let cells: Vec<String> = scaling
            .rows
            .iter()
            .map(|(n, row)| {
                let failed = if row.failures > 0 {
                    format!(", {} FAILED", row.failures)
                } else {
                    String::new()
                };
                format!(
                    "{n}: {:.0}/s (x{:.2}{failed})",
                    row.rate,
                    row.rate / base.max(1e-9)
                )
            })
            .collect();
        println!("  {:<11} {}", scaling.backend, cells.join("   "));
    }
    println!("devices on the hub emulator: {}", hubs.device_count());
    hubs.sim.shutdown().await;
    Ok(())
}

fn redacted_server() -> String {
    let url = ScratchSchema::server_url();
    // Only a password would be secret: keep what follows the credentials.
    match url.split_once('@') {
        Some((scheme_and_user, rest)) => {
            let user = scheme_and_user
                .split(':')
                .take(2)
                .collect::<Vec<_>>()
                .join(":");
            format!("{user}@{rest}")
        }
        None => url,
    }
}

/// 1..=settings.replicas replicas on `storage_url`, fresh replicas each time.
async fn scaling(
    backend: &'static str,
    storage_url: &str,
    hubs: &Hubs,
    dir: &Path,
    settings: &Settings,
) -> Result<Scaling> {
    let mut scope: Option<IdScope> = None;
    let mut rows = Vec::new();
    for count in 1..=settings.replicas {
        let replicas = start_replicas(backend, storage_url, hubs, dir, count).await?;
        let store = &replicas[0].store();
        let scope = match &scope {
            Some(scope) => scope.clone(),
            None => {
                let tenant = system::tenant("replicas", "127.0.0.2", Some(hubs));
                let created = store.create_tenant(tenant).await?.id_scope;
                scope.insert(created).clone()
            }
        };
        let label = backend.to_ascii_lowercase();
        let warm_up = plan(&format!("{label}{count}-warm"), WARM_UP_DEVICES)?;
        let measured = plan(&format!("{label}{count}"), settings.devices)?;
        system::import_devices(store.as_ref(), &scope, &warm_up.devices).await?;
        system::import_devices(store.as_ref(), &scope, &measured.devices).await?;

        let mut config = DeviceLoop::new(
            replicas
                .iter()
                .map(|r| r.device_addr().expect("device HTTPS listener").to_string())
                .collect(),
            scope.to_string(),
            replicas.iter().map(|r| r.trust_pem().to_owned()).collect(),
        );
        config.concurrency = settings.concurrency;
        let name = format!("{backend}, {count} replica(s): warm-up");
        let warm = devices::provision(&config, &name, Arc::new(warm_up.devices)).await?;
        warm.row.print();
        let name = format!("{backend}, {count} replica(s)");
        let report = devices::provision(&config, &name, Arc::new(measured.devices)).await?;
        report.row.print();
        println!("    per replica: {:?}", report.per_endpoint);
        if report.failed > 0 {
            println!("    failures, e.g.: {:?}", report.sample_errors.first());
        }
        rows.push((count, report.row));
        for replica in replicas {
            replica.shutdown().await;
        }
    }
    Ok(Scaling { backend, rows })
}

/// Start `count` replicas one after the other (the first applies the schema).
async fn start_replicas(
    backend: &str,
    storage_url: &str,
    hubs: &Hubs,
    dir: &Path,
    count: usize,
) -> Result<Vec<RunningServer>> {
    let mut replicas = Vec::with_capacity(count);
    for index in 0..count {
        let data_dir = dir.join(format!("{backend}-{count}-replica-{index}"));
        let mut config = system::server_config(&data_dir, Some(hubs));
        config.storage_url = Some(storage_url.to_owned());
        // Each replica on an address of its own, as on separate hosts.
        let octet = 10 + u8::try_from(index)?;
        config.device.listen = system::loopback(octet);
        config.tls.dev_names.push(format!("127.0.0.{octet}"));
        let server = dps_service::server::start(config)
            .await
            .with_context(|| format!("starting {backend} replica {index}"))?;
        replicas.push(server);
    }
    Ok(replicas)
}

fn plan(prefix: &str, count: u64) -> Result<SwarmPlan> {
    Ok(SwarmPlan::prepare(PlanOptions::new(
        prefix,
        count,
        Mix::only(DeviceKind::Symmetric),
    ))?)
}

/// Point lookups (`store.enrollment`) of random enrollments among
/// `settings.lookup_enrollments` in a fresh PostgreSQL schema.
async fn lookups(settings: &Settings) -> Result<()> {
    let Some(schema) = ScratchSchema::create().await else {
        println!("PostgreSQL lookups NOT RUN: no server");
        return Ok(());
    };
    let options = PostgresOptions {
        max_connections: LOOKUP_READERS as u32,
        ..PostgresOptions::default()
    };
    let store = Arc::new(PostgresStore::connect(schema.url(), options).await?);
    let tenant = system::tenant("lookups", "127.0.0.2", None);
    let scope = store.create_tenant(tenant).await?.id_scope;
    let stored = settings.lookup_enrollments;
    let seconds = system::import_typical(store.as_ref(), &scope, stored, lookup_id).await?;
    println!(
        "\nPostgreSQL lookups: seeded {stored} enrollments in {seconds:.1} s ({:.0}/s, store import in batches of {})",
        stored as f64 / seconds.max(1e-9),
        system::IMPORT_CHUNK
    );
    print_header("lookups");
    let stop = Arc::new(AtomicBool::new(false));
    let meter = Meter::start();
    let mut readers = tokio::task::JoinSet::new();
    for reader in 0..LOOKUP_READERS {
        let (store, scope, stop) = (store.clone(), scope.clone(), stop.clone());
        readers.spawn(async move {
            let mut latency = latency_histogram();
            let mut random = 0x9e37_79b9_7f4a_7c15_u64 ^ (reader as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                let id = RegistrationId::new(lookup_id(xorshift(&mut random) % stored))?;
                let started = Instant::now();
                let found = store.enrollment(&scope, &id).await?;
                record(&mut latency, started.elapsed());
                anyhow::ensure!(found.is_some(), "enrollment {id} missing");
            }
            anyhow::Ok(latency)
        });
    }
    tokio::time::sleep(settings.lookup_time).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = latency_histogram();
    while let Some(done) = readers.join_next().await {
        latency.add(&done??)?;
    }
    let name = format!("store.enrollment, {stored} stored (PostgreSQL)");
    Row::new(name, LOOKUP_READERS, latency, 0, &meter).print();
    store.close().await;
    Ok(())
}

fn lookup_id(index: u64) -> String {
    format!("lookup-{index:08}")
}
