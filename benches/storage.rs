//! SQLite store throughput and latency: bulk enrollment load, point reads of
//! enrollments with 100,000 and 1,000,000 stored, and committed
//! registration + billing writes under 64 concurrent writers (group commit).
//!
//! Run: `cargo bench -p dps-benches --bench storage`
//! * `DPS_BENCH_SCALE`: comma-separated enrollment counts to measure reads at
//!   (default `100000,1000000`; e.g. `DPS_BENCH_SCALE=20000` for a quick run).
//! * `DPS_BENCH_SECONDS`: seconds per measured phase (default 4).
//!
//! Targets (2-core machine): ≥ 20,000 point reads/s with 1,000,000
//! enrollments stored; ≥ 5,000 committed registration + billing writes/s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_model::{
    ETag, IdScope, IndividualEnrollment, OperationKind, OperationRecord, RegistrationId, Tenant,
};
use dps_storage::{SqliteOptions, SqliteStore, Store};
use hdrhistogram::Histogram;

const READ_CONCURRENCY: usize = 8;
const WRITE_CONCURRENCY: usize = 64;
const IMPORT_CHUNK: usize = 10_000;
const READ_TARGET: f64 = 20_000.0;
const WRITE_TARGET: f64 = 5_000.0;

fn main() -> anyhow::Result<()> {
    let sizes = scale()?;
    let seconds: u64 = std::env::var("DPS_BENCH_SECONDS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(4);
    let phase = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let all_met = runtime.block_on(run(&sizes, phase))?;
    if !all_met {
        println!("\nsome targets were missed");
    }
    Ok(())
}

fn scale() -> anyhow::Result<Vec<usize>> {
    let text = std::env::var("DPS_BENCH_SCALE").unwrap_or_else(|_| "100000,1000000".to_owned());
    let mut sizes = text
        .split(',')
        .map(|s| s.trim().replace('_', "").parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow::anyhow!("DPS_BENCH_SCALE={text:?}: {err}"))?;
    sizes.sort_unstable();
    sizes.dedup();
    anyhow::ensure!(
        sizes.first().is_some_and(|&n| n > 0),
        "DPS_BENCH_SCALE needs positive counts"
    );
    Ok(sizes)
}

async fn run(sizes: &[usize], phase: Duration) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).await?);
    let scope = store.create_tenant(tenant()?).await?.id_scope;
    let template = enrollment_template()?;
    println!(
        "SQLite store at {} (default options: WAL, synchronous=normal, {} read connections)",
        path.display(),
        SqliteOptions::default().read_connections
    );
    println!(
        "{:<52} {:>10}   {:>9}  {:>9}  {:>9}",
        "case", "rate", "p50", "p90", "p99"
    );

    let mut met = true;
    let mut loaded = 0;
    for &size in sizes {
        let started = Instant::now();
        while loaded < size {
            let n = IMPORT_CHUNK.min(size - loaded);
            let batch = (loaded..loaded + n)
                .map(|i| enrollment(&template, i))
                .collect::<anyhow::Result<Vec<_>>>()?;
            store.import_enrollments(&scope, batch).await?;
            loaded += n;
        }
        let added = size
            - sizes
                .iter()
                .copied()
                .filter(|&s| s < size)
                .max()
                .unwrap_or(0);
        report_rate(
            &format!("import enrollments (to {size}, batches of {IMPORT_CHUNK})"),
            added as f64 / started.elapsed().as_secs_f64(),
            None,
            None,
        );
        let (rate, hist) = reads(&store, &scope, size, phase).await?;
        let target = (size >= 1_000_000).then_some(READ_TARGET);
        met &= report_rate(
            &format!("point read, {size} stored, {READ_CONCURRENCY} readers"),
            rate,
            Some(&hist),
            target,
        );
    }

    let (rate, hist) = writes(&store, &scope, phase).await?;
    met &= report_rate(
        &format!("commit registration+billing, {WRITE_CONCURRENCY} writers"),
        rate,
        Some(&hist),
        Some(WRITE_TARGET),
    );
    let size = std::fs::metadata(&path)?.len();
    println!("database file: {:.1} MiB", size as f64 / (1024.0 * 1024.0));
    store.close().await;
    Ok(met)
}

/// Random point reads of existing enrollments from `READ_CONCURRENCY` tasks.
async fn reads(
    store: &Arc<SqliteStore>,
    scope: &IdScope,
    stored: usize,
    phase: Duration,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..READ_CONCURRENCY {
        let (store, scope, stop) = (Arc::clone(store), scope.clone(), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut hist = histogram();
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (worker as u64 + 1);
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let i = (xorshift(&mut rng) % stored as u64) as usize;
                let id = RegistrationId::new(registration_id(i))?;
                let started = Instant::now();
                let found = store.enrollment(&scope, &id).await?;
                hist.record(started.elapsed().as_nanos() as u64)?;
                anyhow::ensure!(found.is_some(), "enrollment {i} missing");
                count += 1;
            }
            anyhow::Ok((count, hist))
        });
    }
    collect(tasks, stop, phase).await
}

/// Registration + operation + billing commits from `WRITE_CONCURRENCY` tasks.
async fn writes(
    store: &Arc<SqliteStore>,
    scope: &IdScope,
    phase: Duration,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    let (record, operation) = dps_benches::system::registration_template()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..WRITE_CONCURRENCY {
        let (store, scope, stop) = (Arc::clone(store), scope.clone(), Arc::clone(&stop));
        let (record, operation) = (record.clone(), operation.clone());
        tasks.spawn(async move {
            let mut hist = histogram();
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("device-w{worker}-{count}");
                let mut record = record.clone();
                record.registration_id = RegistrationId::new(id.clone())?;
                record.etag = ETag::generate();
                let mut operation = operation.clone();
                operation.operation_id = format!("5.{worker:04}.{count:012}");
                operation.registration_id = record.registration_id.clone();
                let billing = OperationRecord::now(&scope, OperationKind::Registration, Some(id));
                let started = Instant::now();
                store
                    .commit_registration(&scope, record, operation, Some(billing))
                    .await?;
                hist.record(started.elapsed().as_nanos() as u64)?;
                count += 1;
            }
            anyhow::Ok((count, hist))
        });
    }
    collect(tasks, stop, phase).await
}

/// Let the tasks run for `phase`, stop them, merge their counts and histograms.
/// Also prints the operations per CPU-second of the whole process (benchmark
/// client included), a figure other load on the machine does not distort.
async fn collect(
    mut tasks: tokio::task::JoinSet<anyhow::Result<(u64, Histogram<u64>)>>,
    stop: Arc<AtomicBool>,
    phase: Duration,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    let started = Instant::now();
    let cpu_before = process_cpu_seconds();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut merged = histogram();
    while let Some(done) = tasks.join_next().await {
        let (count, hist) = done??;
        total += count;
        merged.add(&hist)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (cpu_before, process_cpu_seconds()) {
        let cpu = after - before;
        println!(
            "    ({:.2} CPU-s over {elapsed:.1} s wall = {:.2} cores busy; {:.0} ops per CPU-second)",
            cpu,
            cpu / elapsed,
            total as f64 / cpu.max(1e-9)
        );
    }
    Ok((total as f64 / elapsed, merged))
}

/// User + system CPU time of this process so far (Linux; `None` elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn report_rate(name: &str, rate: f64, hist: Option<&Histogram<u64>>, target: Option<f64>) -> bool {
    let percentile = |q| hist.map_or_else(|| "-".to_owned(), |h| fmt_ns(h.value_at_quantile(q)));
    let met = target.is_none_or(|t| rate >= t);
    println!(
        "{name:<52} {rate:>8.0}/s   {:>9}  {:>9}  {:>9}   {}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        match target {
            Some(t) if met => format!("target {t:.0}/s met"),
            Some(t) => format!("TARGET {t:.0}/s MISSED"),
            None => String::new(),
        }
    );
    met
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

fn registration_id(i: usize) -> String {
    format!("device-{i:08}")
}

fn tenant() -> anyhow::Result<Tenant> {
    Ok(dps_model::from_json(
        br#"{"name":"bench","idScope":"0ne00BE4C11","serviceHostName":"bench.example",
            "etag":"x","created":"2025-01-01T00:00:00Z"}"#,
    )?)
}

/// A typical symmetric-key enrollment with an initial twin (~600 bytes of JSON).
fn enrollment_template() -> anyhow::Result<IndividualEnrollment> {
    Ok(IndividualEnrollment::from_json(
        br#"{"registrationId":"template","deviceId":"template",
            "attestation":{"type":"symmetricKey","symmetricKey":{
                "primaryKey":"cHJpbWFyeWtleXByaW1hcnlrZXlwcmltYXJ5a2V5cHJpbWFyeWtleQ==",
                "secondaryKey":"c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5a2V5c2Vjbw=="}},
            "provisioningStatus":"enabled","allocationPolicy":"hashed",
            "iotHubs":["hub-a.example","hub-b.example"],
            "capabilities":{"iotEdge":false},
            "reprovisionPolicy":{"updateHubAssignment":true,"migrateDeviceData":true},
            "initialTwin":{"tags":{"site":"plant-7","line":"3"},
                "properties":{"desired":{"telemetryInterval":30,"firmware":"1.4.2"}}}}"#,
    )?)
}

fn enrollment(template: &IndividualEnrollment, i: usize) -> anyhow::Result<IndividualEnrollment> {
    let mut e = template.clone();
    e.registration_id = RegistrationId::new(registration_id(i))?;
    e.device_id = Some(dps_model::DeviceId::new(registration_id(i))?);
    Ok(e)
}
