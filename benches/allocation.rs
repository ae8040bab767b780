//! Allocation throughput and latency for each built-in policy.
//!
//! `cargo bench -p dps-benches --bench allocation`
//!
//! * hashed, 50 linked hubs: the bare choice (`HashedPolicy::choose`) and the
//!   whole engine path (`AllocationRequest::new` + `Allocator::allocate`),
//!   one thread;
//! * geoLatency, 50 hubs in 10 locations, a 10-region CIDR table;
//! * static;
//! * custom: a keep-alive HTTP/1.1 webhook on 127.0.0.1 (written here, so
//!   the figure is the client's cost plus loopback), one request in flight
//!   and 32 in flight.
//!
//! Throughput comes from an untimed loop; latency percentiles from a second
//! pass that times every call (adds ~20 ns per call to the fast policies).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_allocation::{
    AllocationRequest, Allocator, AllocatorConfig, DeviceContext, HashedPolicy, HubTable,
    LatencyTable, WebhookConfig,
};
use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, IndividualEnrollment, LinkedHub, RegistrationId};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HUBS: usize = 50;
const IDS: usize = 100_000;

fn main() -> anyhow::Result<()> {
    println!("dps-allocation benchmark: {HUBS} linked hubs, {IDS} distinct registration ids, one thread unless noted");
    println!(
        "{:<34} {:>10} {:>12} {:>9} {:>9} {:>9}",
        "policy", "calls", "calls/s", "p50", "p90", "p99"
    );

    let linked = linked_hubs();
    let hubs = HubTable::new(&linked)?;
    let ids: Vec<RegistrationId> = (0..IDS)
        .map(|i| RegistrationId::new(format!("device-{i:06}")))
        .collect::<Result<_, _>>()?;
    let ips: Vec<IpAddr> = (0..IDS)
        .map(|i| {
            IpAddr::V4(Ipv4Addr::new(
                10,
                (i % 10) as u8,
                (i / 256 % 256) as u8,
                (i % 256) as u8,
            ))
        })
        .collect();

    bench_hashed_choose(&hubs, &ids);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let allocator = Allocator::new(AllocatorConfig {
        latency: Arc::new(latency_table()),
        ..loopback_webhook_config()?
    })?;
    let hashed = enrollment("")?;
    let geo = enrollment(r#","allocationPolicy":"geoLatency""#)?;
    let fixed = enrollment(r#","allocationPolicy":"static","iotHubs":["hub-17.example.net"]"#)?;
    for (name, enrollment, rounds) in [
        ("hashed (engine path)", &hashed, 2_000_000),
        ("geoLatency (engine path)", &geo, 1_000_000),
        ("static (engine path)", &fixed, 3_000_000),
    ] {
        let report = runtime.block_on(engine_path(
            &allocator, &hubs, enrollment, &ids, &ips, rounds,
        ))?;
        report.print(name);
    }

    let webhook_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let port = webhook_runtime.block_on(start_webhook())?;
    let url = format!("http://127.0.0.1:{port}/api/allocate?code=bench");
    let custom = Arc::new(enrollment(&format!(
        r#","allocationPolicy":"custom","customAllocationDefinition":{{"webhookUrl":"{url}","apiVersion":"2021-10-01"}}"#
    ))?);
    let report = runtime.block_on(engine_path(&allocator, &hubs, &custom, &ids, &ips, 20_000))?;
    report.print("custom webhook, 1 in flight");

    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // A fresh engine: the first one's pooled connections belong to the
    // current-thread runtime, which is not driven from here on.
    let report = client_runtime.block_on(concurrent_custom(
        Arc::new(Allocator::new(loopback_webhook_config()?)?),
        Arc::new(hubs),
        custom,
        Arc::new(ids),
        32,
        Duration::from_secs(4),
    ))?;
    report.print("custom webhook, 32 in flight");
    println!("(custom: client and webhook each on one tokio worker of this 2-core machine)");
    Ok(())
}

fn linked_hubs() -> Vec<LinkedHub> {
    (0..HUBS)
        .map(|i| LinkedHub {
            host_name: format!("hub-{i}.example.net"),
            connection_string: String::new(),
            allocation_weight: 1 + (i as u32 % 4) * 100,
            apply_allocation_policy: true,
            location: Some(format!("location-{}", i % 10)),
        })
        .collect()
}

/// Ten device regions (10.r.0.0/16), each 5..50 ms from every location.
fn latency_table() -> LatencyTable {
    let mut table = LatencyTable::new().with_default_region("region-0");
    for region in 0..10u8 {
        let name = format!("region-{region}");
        let range = format!("10.{region}.0.0/16").parse().expect("valid CIDR");
        table = table.with_range(range, &name);
        for location in 0..10u8 {
            let ms = 5 + 5 * u64::from((region + location) % 10);
            table = table.with_round_trip(
                &name,
                &format!("location-{location}"),
                Duration::from_millis(ms),
            );
        }
    }
    table
}

fn enrollment(extra: &str) -> anyhow::Result<IndividualEnrollment> {
    let body = format!(
        r#"{{"registrationId":"device-000000","attestation":{{"type":"symmetricKey"}}{extra}}}"#
    );
    Ok(IndividualEnrollment::from_json(body.as_bytes())?)
}

struct Report {
    calls: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Report {
    fn print(&self, name: &str) {
        let rate = self.calls as f64 / self.elapsed.as_secs_f64();
        println!(
            "{:<34} {:>10} {:>12.0} {:>9} {:>9} {:>9}",
            name,
            self.calls,
            rate,
            show(self.latency.value_at_quantile(0.50)),
            show(self.latency.value_at_quantile(0.90)),
            show(self.latency.value_at_quantile(0.99)),
        );
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn show(nanos: u64) -> String {
    if nanos < 10_000 {
        format!("{nanos} ns")
    } else if nanos < 10_000_000 {
        format!("{:.1} µs", nanos as f64 / 1e3)
    } else {
        format!("{:.1} ms", nanos as f64 / 1e6)
    }
}

fn bench_hashed_choose(hubs: &HubTable, ids: &[RegistrationId]) {
    let all = hubs.all();
    let mut sink = 0usize;
    for id in ids.iter().take(10_000) {
        sink += HashedPolicy::choose(id.as_str(), hubs, all).map_or(0, |i| i.get());
    }
    let rounds = 3_000_000u64;
    let start = Instant::now();
    for i in 0..rounds {
        let id = &ids[i as usize % ids.len()];
        sink += HashedPolicy::choose(id.as_str(), hubs, all).map_or(0, |i| i.get());
    }
    let elapsed = start.elapsed();
    let mut latency = histogram();
    for id in ids {
        let start = Instant::now();
        sink += HashedPolicy::choose(id.as_str(), hubs, all).map_or(0, |i| i.get());
        latency.saturating_record(start.elapsed().as_nanos() as u64);
    }
    std::hint::black_box(sink);
    Report {
        calls: rounds,
        elapsed,
        latency,
    }
    .print("hashed (HashedPolicy::choose)");
}

/// The whole engine path per call: candidates, request, dispatch, answer.
async fn engine_path(
    allocator: &Allocator,
    hubs: &HubTable,
    enrollment: &IndividualEnrollment,
    ids: &[RegistrationId],
    ips: &[IpAddr],
    rounds: u64,
) -> anyhow::Result<Report> {
    let one = |i: usize| {
        let request = AllocationRequest::new(
            &ids[i % ids.len()],
            EnrollmentRef::Individual(enrollment),
            hubs,
            AllocationPolicy::Hashed,
        )
        .map(|r| {
            r.with_device(DeviceContext {
                source_ip: Some(ips[i % ips.len()]),
                ..DeviceContext::default()
            })
        });
        async move { allocator.allocate(&request?).await }
    };
    for i in 0..(rounds / 100).max(10) as usize {
        one(i).await?;
    }
    let start = Instant::now();
    let mut hub_bytes = 0usize;
    for i in 0..rounds as usize {
        hub_bytes += one(i).await?.hub_host_name.len();
    }
    let elapsed = start.elapsed();
    let mut latency = histogram();
    for i in 0..(rounds as usize).min(IDS) {
        let start = Instant::now();
        hub_bytes += one(i).await?.hub_host_name.len();
        latency.saturating_record(start.elapsed().as_nanos() as u64);
    }
    std::hint::black_box(hub_bytes);
    Ok(Report {
        calls: rounds,
        elapsed,
        latency,
    })
}

async fn concurrent_custom(
    allocator: Arc<Allocator>,
    hubs: Arc<HubTable>,
    enrollment: Arc<IndividualEnrollment>,
    ids: Arc<Vec<RegistrationId>>,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let (allocator, hubs, enrollment, ids) = (
            allocator.clone(),
            hubs.clone(),
            enrollment.clone(),
            ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut i = worker;
            while Instant::now() < deadline {
                let request = AllocationRequest::new(
                    &ids[i % ids.len()],
                    EnrollmentRef::Individual(&enrollment),
                    &hubs,
                    AllocationPolicy::Hashed,
                )?;
                let started = Instant::now();
                allocator.allocate(&request).await?;
                latency.saturating_record(started.elapsed().as_nanos() as u64);
                i += in_flight;
            }
            anyhow::Ok(latency)
        }));
    }
    let mut latency = histogram();
    for task in tasks {
        latency.add(task.await??)?;
    }
    Ok(Report {
        calls: latency.len(),
        elapsed: start.elapsed(),
        latency,
    })
}

/// A minimal keep-alive HTTP/1.1 server answering every POST with a hub.
/// The bench's webhook is on loopback over http, which the egress policy
/// refuses unless the operator allows it.
fn loopback_webhook_config() -> anyhow::Result<AllocatorConfig> {
    let loopback: dps_allocation::latency::Cidr = "127.0.0.0/8".parse()?;
    Ok(AllocatorConfig {
        webhook: WebhookConfig {
            egress: dps_allocation::egress::EgressPolicy::default()
                .allow_network(loopback)
                .allow_http(loopback),
            ..WebhookConfig::default()
        },
        ..AllocatorConfig::default()
    })
}

async fn start_webhook() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream));
        }
    });
    Ok(port)
}

async fn serve_connection(mut stream: TcpStream) -> std::io::Result<()> {
    const BODY: &str = r#"{"iotHubHostName":"hub-7.example.net","payload":{"bench":true}}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.set_nodelay(true)?;
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 8192];
    loop {
        // Read one request: head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = find(&buffer, b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let length = content_length(&buffer[..head_end]);
        while buffer.len() < head_end + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        buffer.drain(..head_end + length);
        stream.write_all(response.as_bytes()).await?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}
