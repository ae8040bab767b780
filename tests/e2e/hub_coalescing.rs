//! Hub write coalescing and throttled hubs, measured on the real server with
//! `dps-client` swarms: registry calls per registration at 1, 8 and 48
//! devices in flight, and a swarm against hubs throttled like 4 × S1 units
//! (zero failures, and the rate the hubs allow, with coalescing and with the
//! per-device writes dps made before). Figures are printed (`--nocapture`)
//! and recorded in BENCHMARKING.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use dps_client::swarm::{self, DeviceKind, PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress};
use dps_client::TlsTrust;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_hub::{
    ensure_device, DeviceAuth, DeviceProvisioning, HubClient, HubClientOptions, TwinAction,
};
use dps_hub_sim::{HubSim, HubSimConfig, HubSpec, HubTier, Throttling};
use dps_model::{DeviceCapabilities, DeviceId, IndividualEnrollment};

const HUBS: [&str; 4] = ["hub-0.test", "hub-1.test", "hub-2.test", "hub-3.test"];

/// Emulated seconds per real second on the throttled hubs: one S1 unit's
/// 1.67 operations a second become 50, so the test takes seconds.
const SPEEDUP: f64 = 30.0;

/// How much allowance each hub's bucket holds (emulated): a few seconds, so
/// the limit binds from the start instead of after a minute's allowance.
const BURST: Duration = Duration::from_secs(5);

/// 4 × S1 units: one unit on each of four hubs.
fn four_s1_units() -> Throttling {
    Throttling {
        speedup: SPEEDUP,
        burst: BURST,
        ..Throttling::new(HubTier::S1, 1)
    }
}

fn swarm_config(system: &TestSystem, concurrency: usize) -> Result<SwarmConfig> {
    let mut config = SwarmConfig::new(
        system.device_host.clone(),
        system.scope().to_string(),
        TlsTrust::new(false, &[system.server.trust_pem()])?,
    );
    config.concurrency = concurrency;
    config.poll_interval = Some(Duration::ZERO);
    config.timeout = Duration::from_secs(60);
    Ok(config)
}

/// Enroll `count` symmetric-key devices named after `prefix` and register them
/// with `concurrency` in flight.
async fn swarm_of(
    system: &TestSystem,
    prefix: &str,
    count: u64,
    concurrency: usize,
) -> Result<swarm::SwarmReport> {
    let plan = enroll(system, prefix, count).await?;
    run_plan(system, &plan, concurrency).await
}

/// Enroll `count` symmetric-key devices named after `prefix`.
async fn enroll(system: &TestSystem, prefix: &str, count: u64) -> Result<Arc<SwarmPlan>> {
    let plan = SwarmPlan::prepare(PlanOptions::new(
        prefix,
        count,
        swarm::Mix::only(DeviceKind::Symmetric),
    ))?;
    let enrollments = plan
        .individual_enrollments()
        .iter()
        .map(|e| IndividualEnrollment::from_json(e.to_string().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    system
        .server
        .store()
        .import_enrollments(system.scope(), enrollments)
        .await?;
    Ok(Arc::new(plan))
}

/// Register the devices of `plan` (again) with `concurrency` in flight.
async fn run_plan(
    system: &TestSystem,
    plan: &Arc<SwarmPlan>,
    concurrency: usize,
) -> Result<swarm::SwarmReport> {
    let config = swarm_config(system, concurrency)?;
    Ok(swarm::run(
        &config,
        Arc::clone(plan),
        Arc::new(SwarmProgress::default()),
    )
    .await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_calls_per_registration_fall_as_devices_share_bulk_calls() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &HUBS[..1],
        ..SystemOptions::default()
    })
    .await?;
    let hub = HUBS[0];
    let count = 96u64;
    let mut figures = Vec::new();
    for concurrency in [1usize, 8, 48] {
        let calls_before = system.hubs.request_count(hub);
        let ops_before = system.hubs.registry_operation_count(hub);
        let report = swarm_of(&system, &format!("c{concurrency}"), count, concurrency).await?;
        assert_eq!(report.failed(), 0, "{:?}", report.sample_errors);
        let calls = (system.hubs.request_count(hub) - calls_before) as f64 / count as f64;
        let ops = (system.hubs.registry_operation_count(hub) - ops_before) as f64 / count as f64;
        eprintln!(
            "hub coalescing: {concurrency:>2} in flight: {calls:.3} registry calls and {ops:.3} \
             registry operations per registration ({count} devices)"
        );
        // Every registration is one bulk entry; never more than one call each.
        assert_eq!(ops, 1.0);
        assert!(calls <= 1.0, "{calls}");
        figures.push(calls);
    }
    assert_eq!(figures[0], 1.0, "a lone device gets its own call at once");
    assert!(figures[2] < 0.6, "48 in flight share calls: {figures:?}");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_through_four_throttled_s1_units_has_no_failures() -> Result<()> {
    let count = 120u64;
    let concurrency = 48;
    let allowed = HubTier::S1.registry_ops_per_second(1) * HUBS.len() as f64;

    // With coalescing: the real server, devices from dps-client.
    let system = TestSystem::start_throttled(
        SystemOptions {
            hubs: &HUBS,
            ..SystemOptions::default()
        },
        Some(four_s1_units()),
    )
    .await?;
    let plan = enroll(&system, "thr", count).await?;
    // New devices, then the same devices registering again (same hub: the
    // identity is rewritten, the twin kept).
    for round in ["new devices", "re-registrations"] {
        let calls_before: u64 = HUBS.iter().map(|h| system.hubs.request_count(h)).sum();
        let throttled_before: u64 = HUBS.iter().map(|h| system.hubs.throttled_count(h)).sum();
        let report = run_plan(&system, &plan, concurrency).await?;
        let throttled = HUBS
            .iter()
            .map(|h| system.hubs.throttled_count(h))
            .sum::<u64>()
            - throttled_before;
        let calls = HUBS
            .iter()
            .map(|h| system.hubs.request_count(h))
            .sum::<u64>()
            - calls_before;
        let rate = report.succeeded as f64 / report.elapsed.as_secs_f64();
        eprintln!(
            "hub coalescing: 4 x S1 (x{SPEEDUP} clock), {concurrency} in flight, coalesced, \
             {round}: {}/{count} assigned, {} failed, {rate:.1}/s = {:.2}/s in real time \
             (limit {allowed:.2} registry operations/s), {calls} hub calls, {throttled} answered 429",
            report.succeeded,
            report.failed(),
            rate / SPEEDUP,
        );
        assert_eq!(report.failed(), 0, "{:?}", report.sample_errors);
        assert!(throttled > 0, "the hubs did throttle");
        // One registry operation per registration: never faster than the
        // limit plus the hubs' bursts allow.
        let burst_ops = allowed * BURST.as_secs_f64();
        let ceiling = allowed * SPEEDUP * 1.25 + burst_ops / report.elapsed.as_secs_f64();
        assert!(rate <= ceiling, "{rate} > {ceiling}");
    }
    system.stop().await;

    // Without coalescing: the per-device writes the pipeline made before
    // (`ensure_device`, one identity PUT each), 48 in flight, through the
    // hub client with the server's default 10 s retry deadline.
    let sim = HubSim::start(HubSimConfig {
        hubs: HUBS
            .iter()
            .map(|h| HubSpec::new(*h).throttled(four_s1_units()))
            .collect(),
        ..HubSimConfig::new("127.0.0.1:0".parse()?, &[])
    })
    .await?;
    let mut options = HubClientOptions::default().trust_ca_pem(sim.ca_pem().unwrap_or_default());
    for hub in HUBS {
        options = options.resolve(hub, sim.addr());
    }
    let clients: Vec<Arc<HubClient>> = HUBS
        .iter()
        .map(|h| {
            HubClient::from_connection_string(
                &sim.connection_string(h).unwrap_or_default(),
                &options,
            )
            .map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    for round in ["new devices", "re-registrations"] {
        per_device_round(&sim, &clients, round, count, concurrency).await?;
    }
    sim.shutdown().await;
    Ok(())
}

/// The per-device writes of `count` devices, `concurrency` in flight.
async fn per_device_round(
    sim: &dps_hub_sim::RunningHubSim,
    clients: &[Arc<HubClient>],
    round: &str,
    count: u64,
    concurrency: usize,
) -> Result<()> {
    let calls_before: u64 = HUBS.iter().map(|h| sim.request_count(h)).sum();
    let throttled_before: u64 = HUBS.iter().map(|h| sim.throttled_count(h)).sum();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let hub = Arc::clone(&clients[i as usize % clients.len()]);
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let _slot = gate.acquire_owned().await;
                let key = dps_attestation::sas::SymmetricKey::from_bytes(vec![7; 32]);
                let request = DeviceProvisioning {
                    device_id: DeviceId::new(format!("per-device-{i}")).expect("valid id"),
                    auth: DeviceAuth::SymmetricKey {
                        primary: key.clone(),
                        secondary: key,
                    },
                    capabilities: DeviceCapabilities::default(),
                    initial_twin: None,
                    twin_action: TwinAction::ApplyInitial,
                };
                ensure_device(hub.as_ref(), &request).await.is_ok()
            })
        })
        .collect();
    let mut ok = 0u64;
    for task in tasks {
        ok += u64::from(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throttled = HUBS.iter().map(|h| sim.throttled_count(h)).sum::<u64>() - throttled_before;
    let calls = HUBS.iter().map(|h| sim.request_count(h)).sum::<u64>() - calls_before;
    let rate = ok as f64 / elapsed;
    eprintln!(
        "hub coalescing: 4 x S1 (x{SPEEDUP} clock), {concurrency} in flight, per-device writes, \
         {round}: {ok}/{count} written, {} failed, {rate:.1}/s = {:.2}/s in real time, \
         {calls} hub calls, {throttled} answered 429",
        count - ok,
        rate / SPEEDUP,
    );
    Ok(())
}
