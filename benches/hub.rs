//! Hub client against the hub emulator over TLS on loopback: device creations
//! per second through `ensure_device`, with one shared keep-alive HTTP client
//! and a few concurrent tasks. Prints throughput and p50/p90/p99 latency.
//!
//! `cargo bench -p dps-benches --bench hub` (phase length: DPS_BENCH_SECONDS, default 6).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_attestation::sas::SymmetricKey;
use dps_hub::{
    ensure_device, DeviceAuth, DeviceProvisioning, HubClient, HubClientOptions, HubDirectory,
    TwinAction,
};
use dps_hub_sim::{HubSim, HubSimConfig};
use dps_model::{DeviceCapabilities, DeviceId, InitialTwin, LinkedHub};
use hdrhistogram::Histogram;

const HUB: &str = "hub-bench.example";

fn request(n: u64, twin: Option<&InitialTwin>) -> anyhow::Result<DeviceProvisioning> {
    Ok(DeviceProvisioning {
        device_id: DeviceId::new(format!("bench-{n}"))?,
        auth: DeviceAuth::SymmetricKey {
            primary: SymmetricKey::from_bytes(vec![1u8; 32]),
            secondary: SymmetricKey::from_bytes(vec![2u8; 32]),
        },
        capabilities: DeviceCapabilities::default(),
        initial_twin: twin.cloned(),
        twin_action: TwinAction::ApplyInitial,
    })
}

struct Phase<'a> {
    name: &'a str,
    tasks: usize,
    twin: Option<InitialTwin>,
}

async fn run_phase(
    hub: Arc<HubClient>,
    next_id: Arc<AtomicU64>,
    phase: &Phase<'_>,
    length: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + length;
    let mut workers = Vec::new();
    for _ in 0..phase.tasks {
        let (hub, next_id, twin) = (Arc::clone(&hub), Arc::clone(&next_id), phase.twin.clone());
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            while Instant::now() < deadline {
                let request = request(next_id.fetch_add(1, Ordering::Relaxed), twin.as_ref())?;
                let started = Instant::now();
                let done = ensure_device(hub.as_ref(), &request).await?;
                histogram.record(started.elapsed().as_micros().max(1) as u64)?;
                anyhow::ensure!(done.created, "device ids are fresh");
            }
            anyhow::Ok(histogram)
        }));
    }
    let started = Instant::now();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for worker in workers {
        total.add(worker.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{:<34} {:>3} tasks {:>7} ops {:>9.0} ops/s   p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
        phase.name,
        phase.tasks,
        total.len(),
        total.len() as f64 / elapsed,
        ms(0.50),
        ms(0.90),
        ms(0.99),
        total.max() as f64 / 1000.0,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let secs = std::env::var("DPS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let sim = HubSim::start(HubSimConfig::new("127.0.0.1:0".parse()?, &[HUB])).await?;
        let options = HubClientOptions::default()
            .trust_ca_pem(sim.ca_pem().unwrap_or_default())
            .resolve(HUB, sim.addr());
        let directory = HubDirectory::new(options)?;
        let hub = directory.get(&LinkedHub {
            host_name: HUB.to_owned(),
            connection_string: sim.connection_string(HUB).unwrap_or_default(),
            allocation_weight: 1,
            apply_allocation_policy: true,
            location: None,
        })?;
        let twin: InitialTwin = dps_model::from_json(
            br#"{"tags":{"site":"bench","rack":{"row":3}},"properties":{"desired":{"interval":30,"fw":"1.2.3"}}}"#,
        )?;
        let next_id = Arc::new(AtomicU64::new(0));
        println!("hub emulator on {} (TLS, HTTP/2 keep-alive, one shared client), {secs} s per phase", sim.addr());
        // Warm-up: connection, TLS session, token.
        run_phase(Arc::clone(&hub), Arc::clone(&next_id), &Phase { name: "warm-up", tasks: 1, twin: None }, Duration::from_millis(500)).await?;
        for phase in [
            Phase { name: "create identity (PUT device)", tasks: 1, twin: None },
            Phase { name: "create identity (PUT device)", tasks: 4, twin: None },
            Phase { name: "create identity (PUT device)", tasks: 16, twin: None },
            Phase { name: "create + initial twin (2 PUTs)", tasks: 4, twin: Some(twin.clone()) },
        ] {
            run_phase(Arc::clone(&hub), Arc::clone(&next_id), &phase, Duration::from_secs(secs)).await?;
        }
        println!("devices on the emulator: {}", sim.device_count(HUB));
        sim.shutdown().await;
        anyhow::Ok(())
    })
}
