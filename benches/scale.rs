//! Data scale (issue 19, goal 4): N enrollments and N registration records
//! in SQLite, written straight into the store through the `dps-storage` API
//! (enrollments in batches of 10,000; records as 64 concurrent committed
//! writes, which the single writer groups into transactions), then:
//!
//! 1. a registration's store lookups — `enrollment` then `registration` (the
//!    device's previous record), the two point reads a registration makes
//!    (tenant and groups come from the server's cache), timed as one — from
//!    one caller and from 8 at once, through the store API in this process
//!    (target p99 < 1 ms for the pair);
//! 2. the real `dps-server` started as its own process on that database,
//!    and `GET /enrollments/{id}` and `GET /registrations/{id}` of random
//!    seeded ids over the service API from keep-alive clients (target p99 <
//!    5 ms), with the server's resident memory and CPU per request;
//! 3. the store's size on disk.
//!
//! Run: `cargo bench -p dps-benches --bench scale` (it first runs `cargo
//! build --release -p dps-server …`; `DPS_BENCH_BIN_DIR` to use binaries
//! elsewhere). Knobs:
//! * `DPS_BENCH_SCALE_COUNT` enrollments and as many records (default
//!   100,000; 1,000,000 for the figure)
//! * `DPS_BENCH_LOOKUPS` store lookups per caller count (default 20,000)
//! * `DPS_BENCH_GETS` service API GETs per route (default 20,000)
//! * `DPS_BENCH_CONCURRENCY` keep-alive clients (default 8)

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use dps_benches::procs::{self, Proc};
use dps_benches::system;
use dps_benches::table::{latency_histogram, print_header, record, Meter, Row};
use dps_benches::{env_or, verdict, xorshift};
use dps_client::service::SERVICE_API_VERSION;
use dps_client::TlsTrust;
use dps_model::{ETag, IdScope, OperationKind, RegistrationId};
use dps_storage::{SqliteOptions, SqliteStore, Store};

const SERVICE_HOST: &str = "127.0.0.2";
const LOOKUP_TARGET_MS: f64 = 1.0;
const GET_TARGET_MS: f64 = 5.0;
/// Concurrent committers while seeding records (the writer groups them).
const SEED_WRITERS: u64 = 64;

fn id(index: u64) -> String {
    format!("scale-{index:08}")
}

/// Commit a registration record (with its operation and billing row, as a
/// registration does) for each of the `count` enrollments.
async fn seed_records(store: &Arc<SqliteStore>, scope: &IdScope, count: u64) -> Result<f64> {
    let (template, operation) = system::registration_template()?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SEED_WRITERS {
        let (store, scope, next) = (store.clone(), scope.clone(), next.clone());
        let (template, operation) = (template.clone(), operation.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let mut record = template.clone();
                record.registration_id = RegistrationId::new(id(i))?;
                record.device_id = Some(dps_model::DeviceId::new(id(i))?);
                record.etag = ETag::generate();
                let mut operation = operation.clone();
                operation.operation_id = format!("5.{i:016}.scale");
                operation.registration_id = record.registration_id.clone();
                let billing = dps_model::OperationRecord::now(
                    &scope,
                    OperationKind::Registration,
                    Some(id(i)),
                );
                store
                    .commit_registration(&scope, record, operation, Some(billing))
                    .await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `lookups` random pairs of the reads a registration makes (its
/// enrollment, then the device's previous record), split over `callers`;
/// each sample is the pair.
async fn lookups(
    store: &Arc<SqliteStore>,
    scope: &IdScope,
    count: u64,
    lookups: u64,
    callers: u64,
) -> Result<Row> {
    let meter = Meter::start();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.spawn(async move {
            let mut latency = latency_histogram();
            let mut random = 0x2545_f491_4f6c_dd1d_u64 ^ (caller + 1);
            for _ in 0..lookups / callers {
                let registration_id = RegistrationId::new(id(xorshift(&mut random) % count))?;
                let started = Instant::now();
                let enrollment = store.enrollment(&scope, &registration_id).await?;
                let previous = store.registration(&scope, &registration_id).await?;
                record(&mut latency, started.elapsed());
                ensure!(
                    enrollment.is_some() && previous.is_some(),
                    "{registration_id} missing"
                );
            }
            anyhow::Ok(latency)
        });
    }
    let mut latency = latency_histogram();
    while let Some(done) = tasks.join_next().await {
        latency.add(done??)?;
    }
    let row = Row::new(
        format!("store: enrollment + registration, {callers} caller(s)"),
        callers as usize,
        latency,
        0,
        &meter,
    );
    row.print();
    Ok(row)
}

/// `gets` GETs of `route/{random id}` spread over the clients.
async fn gets(
    base: &str,
    token: &str,
    clients: &[reqwest::Client],
    route: &str,
    count: u64,
    gets: u64,
    warm_up: bool,
) -> Result<Row> {
    let next = Arc::new(AtomicU64::new(0));
    let meter = Meter::start();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, client) in clients.iter().enumerate() {
        let (client, next) = (client.clone(), next.clone());
        let (prefix, token) = (format!("{base}/{route}"), token.to_owned());
        tasks.spawn(async move {
            let mut latency = latency_histogram();
            let mut random = 0x9e37_79b9_7f4a_7c15_u64 ^ (worker as u64 + 1);
            while next.fetch_add(1, Ordering::Relaxed) < gets {
                let url = format!(
                    "{prefix}/{}?api-version={SERVICE_API_VERSION}",
                    id(xorshift(&mut random) % count)
                );
                let started = Instant::now();
                let response = client
                    .get(&url)
                    .header("authorization", &token)
                    .send()
                    .await?;
                let status = response.status();
                let _ = response.bytes().await?;
                ensure!(status == reqwest::StatusCode::OK, "{url}: {status}");
                record(&mut latency, started.elapsed());
            }
            anyhow::Ok(latency)
        });
    }
    let mut latency = latency_histogram();
    while let Some(done) = tasks.join_next().await {
        latency.add(done??)?;
    }
    let name = match warm_up {
        true => format!("warm-up: GET /{route}/{{id}} (connections opened)"),
        false => format!("GET /{route}/{{id}}"),
    };
    let row = Row::new(name, clients.len(), latency, 0, &meter);
    row.print();
    Ok(row)
}

fn main() -> Result<()> {
    let count: u64 = env_or("DPS_BENCH_SCALE_COUNT", 100_000).max(1);
    let lookup_count: u64 = env_or("DPS_BENCH_LOOKUPS", 20_000);
    let get_count: u64 = env_or("DPS_BENCH_GETS", 20_000);
    let concurrency: usize = env_or("DPS_BENCH_CONCURRENCY", 8).max(1);
    dps_benches::runtime()?.block_on(async move {
        let bin = procs::binaries_dir()?;
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("dps.db");
        let store = Arc::new(SqliteStore::open(&db, SqliteOptions::default()).await?);
        let tenant = store
            .create_tenant(system::tenant("scale-bench", SERVICE_HOST, None))
            .await?;
        let scope = tenant.id_scope.clone();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "SQLite, {count} enrollments + {count} registration records; {} cores, load average {}",
            dps_benches::cores(),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        let enrollments = system::import_typical(store.as_ref(), &scope, count, id).await?;
        println!(
            "seeded {count} enrollments in {enrollments:.1} s ({:.0}/s, batches of {})",
            count as f64 / enrollments.max(1e-9),
            system::IMPORT_CHUNK
        );
        let records = seed_records(&store, &scope, count).await?;
        println!(
            "seeded {count} registration records (+ operation + billing row each) in {records:.1} s ({:.0}/s, {SEED_WRITERS} committers)",
            count as f64 / records.max(1e-9)
        );
        println!();
        print_header("lookups");
        let single = lookups(&store, &scope, count, lookup_count, 1).await?;
        let eight = lookups(&store, &scope, count, lookup_count, 8).await?;
        drop(store);

        // The server on the same database, as its own process.
        let lo = IpAddr::from([127, 0, 0, 1]);
        let (device, admin) = (procs::free_port(lo)?, procs::free_port(lo)?);
        let service = procs::free_port(IpAddr::from([127, 0, 0, 2]))?;
        let data_dir = dir.path().join("data");
        let places = procs::ServerPlaces { data_dir: &data_dir, db: &db, device, service, admin };
        let config = procs::server_toml(&places, "[device.mqtt]\nenabled = false\n");
        let config_file = dir.path().join("dps.toml");
        std::fs::write(&config_file, config)?;
        let server: Proc =
            procs::start_server(&bin, &config_file, &dir.path().join("server.log"), admin).await?;
        let rss_started = server.rss().unwrap_or(0);
        let token = system::owner_token(&tenant, SERVICE_HOST)?;
        let trust = TlsTrust::new(false, &[std::fs::read_to_string(data_dir.join("tls").join("ca.pem"))?])?;
        let clients = (0..concurrency)
            .map(|_| system::keep_alive_client(&trust))
            .collect::<Result<Vec<_>>>()?;
        let base = format!("https://{service}");
        // Opens every connection and warms the caches (not reported).
        gets(&base, &token, &clients, "enrollments", count, (concurrency * 50) as u64, true).await?;
        let cpu_before = server.cpu();
        let enrollment_gets = gets(&base, &token, &clients, "enrollments", count, get_count, false).await?;
        let registration_gets = gets(&base, &token, &clients, "registrations", count, get_count, false).await?;
        let cpu_per_get = (server.cpu() - cpu_before) * 1e6 / (2 * get_count).max(1) as f64;
        let rss = server.rss().unwrap_or(0);
        server.stop().await;

        println!();
        for (row, target) in [
            (&single, LOOKUP_TARGET_MS),
            (&eight, LOOKUP_TARGET_MS),
            (&enrollment_gets, GET_TARGET_MS),
            (&registration_gets, GET_TARGET_MS),
        ] {
            let p99 = row.ms(0.99);
            println!("{:<56} p99 {p99:>6.3} ms   target < {target} ms   {}", row.name, verdict(p99 < target));
        }
        let size = procs::disk_bytes(&db)
            + procs::disk_bytes(&dir.path().join("dps.db-wal"))
            + procs::disk_bytes(&dir.path().join("dps.db-shm"));
        println!(
            "store on disk {:.1} MiB ({:.0} bytes per enrollment + record); server resident memory {:.0} MiB after start, \
             {:.0} MiB after the GETs; {cpu_per_get:.0} µs of server CPU per GET",
            procs::mib(size),
            size as f64 / count as f64,
            procs::mib(rss_started),
            procs::mib(rss)
        );
        anyhow::Ok(())
    })
}
