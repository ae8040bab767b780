//! The lowest-latency policy, the configured table and the live prober.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dps_allocation::latency::{LatencyTableConfig, Layered, ProbeTarget, ProberConfig};
use dps_allocation::{
    AllocationRequest, DeviceContext, GeoLatencyPolicy, HashedPolicy, HubTable, LatencyTable,
    LiveLatency, LiveProber, Policy,
};
use dps_model::enrollment::EnrollmentRef;
use dps_model::AllocationPolicy;
use tokio::net::TcpListener;

use crate::support::{individual, located, reg};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn world() -> HubTable {
    HubTable::new(&[
        located("us-1.net", "westus"),
        located("us-2.net", "eastus"),
        located("eu-1.net", "westeurope"),
        located("eu-2.net", "WestEurope"),
        located("asia.net", "japaneast"),
    ])
    .unwrap()
}

fn table() -> LatencyTable {
    let config: LatencyTableConfig = serde_json::from_value(serde_json::json!({
        "default_region": "europe",
        "ranges": [
            { "cidr": "10.0.0.0/8", "region": "us" },
            { "cidr": "10.9.0.0/16", "region": "asia" },
            { "cidr": "2001:db8::/32", "region": "asia" }
        ],
        "round_trips": [
            { "region": "us", "location": "westus", "ms": 20 },
            { "region": "us", "location": "eastus", "ms": 70 },
            { "region": "us", "location": "westeurope", "ms": 140 },
            { "region": "europe", "location": "westeurope", "ms": 15 },
            { "region": "europe", "location": "eastus", "ms": 90 },
            { "region": "asia", "location": "japaneast", "ms": 10 },
            { "region": "asia", "location": "westus", "ms": 110 }
        ]
    }))
    .unwrap();
    LatencyTable::from_config(&config).unwrap()
}

async fn choose(
    policy: &GeoLatencyPolicy,
    hubs: &HubTable,
    id: &str,
    source: Option<IpAddr>,
) -> String {
    let enrollment = individual("");
    let id = reg(id);
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&enrollment),
        hubs,
        AllocationPolicy::GeoLatency,
    )
    .unwrap()
    .with_device(DeviceContext {
        source_ip: source,
        ..DeviceContext::default()
    });
    policy.allocate(&request).await.unwrap().hub_host_name
}

#[tokio::test]
async fn the_table_picks_the_nearest_hub_for_the_device_region() {
    let hubs = world();
    let policy = GeoLatencyPolicy::new(Arc::new(table()));
    assert_eq!(
        choose(&policy, &hubs, "dev-1", Some(ip("10.1.2.3"))).await,
        "us-1.net"
    );
    // The longer prefix wins over 10.0.0.0/8.
    assert_eq!(
        choose(&policy, &hubs, "dev-1", Some(ip("10.9.2.3"))).await,
        "asia.net"
    );
    assert_eq!(
        choose(&policy, &hubs, "dev-1", Some(ip("2001:db8::7"))).await,
        "asia.net"
    );
    assert_eq!(
        choose(&policy, &hubs, "dev-1", Some(ip("::ffff:10.1.0.1"))).await,
        "us-1.net"
    );
}

#[tokio::test]
async fn equal_latencies_are_broken_by_the_hashed_policy() {
    // Outside every range → default region "europe": eu-1 and eu-2 (locations
    // differ only in case) both have 15 ms.
    let hubs = world();
    let policy = GeoLatencyPolicy::new(Arc::new(table()));
    let tied = {
        let mut set = dps_allocation::HubSet::EMPTY;
        set.insert(hubs.find("eu-1.net").unwrap());
        set.insert(hubs.find("eu-2.net").unwrap());
        set
    };
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..64 {
        let id = format!("device-{i}");
        let got = choose(&policy, &hubs, &id, Some(ip("192.0.2.1"))).await;
        let hashed = HashedPolicy::choose(&id, &hubs, tied).unwrap();
        assert_eq!(got, hubs.get(hashed).host_name());
        seen.insert(got);
    }
    assert_eq!(seen.len(), 2, "both tied hubs get devices: {seen:?}");
}

#[tokio::test]
async fn without_any_latency_every_hub_ties() {
    let hubs = world();
    let policy = GeoLatencyPolicy::default();
    for i in 0..32 {
        let id = format!("device-{i}");
        let got = choose(&policy, &hubs, &id, None).await;
        let hashed = HashedPolicy::choose(&id, &hubs, hubs.all()).unwrap();
        assert_eq!(got, hubs.get(hashed).host_name());
    }
}

#[tokio::test]
async fn unknown_hubs_rank_behind_known_ones_and_tolerance_widens_ties() {
    let hubs = world();
    // Only us-2 (eastus) is known for europe besides west europe; drop the
    // west europe row by using a region that knows just eastus.
    let only_east = LatencyTable::new()
        .with_default_region("far")
        .with_round_trip("far", "eastus", Duration::from_millis(300));
    let policy = GeoLatencyPolicy::new(Arc::new(only_east));
    assert_eq!(choose(&policy, &hubs, "dev-1", None).await, "us-2.net");

    let near = LatencyTable::new()
        .with_default_region("r")
        .with_round_trip("r", "westus", Duration::from_millis(20))
        .with_round_trip("r", "eastus", Duration::from_millis(24))
        .with_round_trip("r", "westeurope", Duration::from_millis(80));
    let exact = GeoLatencyPolicy::new(Arc::new(near.clone()));
    let loose = GeoLatencyPolicy::new(Arc::new(near)).with_tie_tolerance(Duration::from_millis(5));
    let fastest = exact.fastest(None, &hubs, hubs.all());
    assert_eq!(hubs.names(fastest), ["us-1.net"]);
    let fastest = loose.fastest(None, &hubs, hubs.all());
    assert_eq!(hubs.names(fastest), ["us-1.net", "us-2.net"]);
}

#[test]
fn a_bad_cidr_in_the_configuration_is_named() {
    let config: LatencyTableConfig = serde_json::from_value(serde_json::json!({
        "ranges": [ { "cidr": "10.0.0.0/40", "region": "us" } ]
    }))
    .unwrap();
    let err = LatencyTable::from_config(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid CIDR range \"10.0.0.0/40\": prefix longer than the address"
    );
}

#[tokio::test]
async fn the_prober_measures_listening_hubs_and_forgets_unreachable_ones() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    // A port with nothing listening: bind, note it, close it.
    let down_addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let accept = tokio::spawn(async move {
        loop {
            if up.accept().await.is_err() {
                break;
            }
        }
    });

    let latency = Arc::new(LiveLatency::new());
    let prober = LiveProber::new(
        latency.clone(),
        ProberConfig {
            interval: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(500),
            smoothing: 0.5,
        },
    );
    // Pretend the unreachable hub was measured earlier: a failed probe must
    // drop the stale value.
    latency.record("down.net", Duration::from_millis(1), 1.0);
    prober.set_targets(vec![
        ProbeTarget {
            hub_host_name: "Up.net".into(),
            address: up_addr.to_string(),
        },
        ProbeTarget {
            hub_host_name: "down.net".into(),
            address: down_addr.to_string(),
        },
    ]);
    prober.probe_once().await;
    let measured = latency
        .get("up.net")
        .expect("the listening hub was measured");
    assert!(measured < Duration::from_millis(500), "{measured:?}");
    assert_eq!(latency.get("down.net"), None);

    // The policy prefers the measured hub over the unreachable one, for
    // every device.
    let hubs = HubTable::new(&[located("down.net", "x"), located("up.net", "y")]).unwrap();
    let policy = GeoLatencyPolicy::new(latency.clone());
    for i in 0..16 {
        assert_eq!(
            choose(&policy, &hubs, &format!("d-{i}"), None).await,
            "up.net"
        );
    }

    // Dropping a target forgets it.
    prober.set_targets(vec![]);
    assert_eq!(latency.get("up.net"), None);
    accept.abort();
}

#[tokio::test]
async fn the_spawned_prober_keeps_measuring_until_dropped() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = up.local_addr().unwrap();
    let accept = tokio::spawn(async move { while up.accept().await.is_ok() {} });
    let latency = Arc::new(LiveLatency::new());
    let prober = LiveProber::new(
        latency.clone(),
        ProberConfig {
            interval: Duration::from_millis(20),
            ..ProberConfig::default()
        },
    );
    prober.set_targets(vec![ProbeTarget {
        hub_host_name: "hub.net".into(),
        address: addr.to_string(),
    }]);
    let handle = prober.clone().spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while latency.get("hub.net").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no measurement within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(handle);
    // After the task stops, a forgotten value is not written back.
    tokio::time::sleep(Duration::from_millis(30)).await;
    latency.forget("hub.net");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(latency.get("hub.net"), None);
    accept.abort();
}

#[tokio::test]
async fn live_values_are_smoothed_and_the_table_is_asked_first() {
    let latency = Arc::new(LiveLatency::new());
    latency.record("hub.net", Duration::from_millis(100), 0.5);
    latency.record("hub.net", Duration::from_millis(50), 0.5);
    assert_eq!(latency.get("HUB.net"), Some(Duration::from_millis(75)));

    // Table says eu is nearest for this device; live says us is nearer.
    let hubs =
        HubTable::new(&[located("us.net", "westus"), located("eu.net", "westeurope")]).unwrap();
    let live = Arc::new(LiveLatency::new());
    live.record("us.net", Duration::from_millis(5), 1.0);
    live.record("eu.net", Duration::from_millis(50), 1.0);
    let table = LatencyTable::new()
        .with_range("10.0.0.0/8".parse().unwrap(), "europe")
        .with_round_trip("europe", "westeurope", Duration::from_millis(10))
        .with_round_trip("europe", "westus", Duration::from_millis(150));
    let layered = GeoLatencyPolicy::new(Arc::new(Layered {
        first: table,
        then: live,
    }));
    // A device the table places: the table decides.
    assert_eq!(
        choose(&layered, &hubs, "dev-1", Some(ip("10.0.0.1"))).await,
        "eu.net"
    );
    // A device the table does not place (no default region): live decides.
    assert_eq!(
        choose(&layered, &hubs, "dev-1", Some(ip("192.0.2.1"))).await,
        "us.net"
    );
}

#[tokio::test]
async fn a_layer_answers_for_the_whole_candidate_set() {
    // The table knows only the eu hub for this device (a long round trip);
    // live probes know both, the us hub much faster. Mixing the two would
    // pick us on the strength of a figure of another kind: the table's
    // answer stands, and the hub it does not know ranks behind.
    let hubs =
        HubTable::new(&[located("us.net", "westus"), located("eu.net", "westeurope")]).unwrap();
    let live = Arc::new(LiveLatency::new());
    live.record("us.net", Duration::from_millis(1), 1.0);
    live.record("eu.net", Duration::from_millis(2), 1.0);
    let table = LatencyTable::new()
        .with_range("10.0.0.0/8".parse().unwrap(), "europe")
        .with_round_trip("europe", "westeurope", Duration::from_millis(120));
    let layered = GeoLatencyPolicy::new(Arc::new(Layered {
        first: table,
        then: live,
    }));
    for n in 0..20 {
        assert_eq!(
            choose(&layered, &hubs, &format!("dev-{n}"), Some(ip("10.0.0.1"))).await,
            "eu.net"
        );
    }
}
