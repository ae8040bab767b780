//! Lowest-latency allocation (`geoLatency`) through the real server: the
//! operator's latency table places a device by its source address (loopback
//! devices are in `127.0.0.0/8`) and sends it to the hub whose `location` is
//! nearest; changing the hubs' locations or the table moves new devices. The
//! live prober measures the emulator's hubs through `hubs.resolve`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_client::Credential;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::{AllocationPolicy, Precondition};
use dps_service::config::{LatencyRange, LatencyRoundTrip, LatencyTableSettings};
use dps_service::ServiceConfig;
use serde_json::json;

use crate::client_credentials::{client, put_group};

const HUBS: &[&str] = &["hub-a.test", "hub-b.test", "hub-c.test"];

/// Loopback devices are in region `lab`. Devices of unknown address would be
/// in `elsewhere`, nearest to `west`: a device landing by the `lab` row shows
/// the server placed it by its source address.
fn table(round_trips: &[(&str, u64)]) -> LatencyTableSettings {
    LatencyTableSettings {
        default_region: Some("elsewhere".to_owned()),
        ranges: vec![
            LatencyRange {
                cidr: "127.0.0.0/8".to_owned(),
                region: "lab".to_owned(),
            },
            LatencyRange {
                cidr: "10.0.0.0/8".to_owned(),
                region: "elsewhere".to_owned(),
            },
        ],
        round_trips: round_trips
            .iter()
            .map(|&(location, ms)| LatencyRoundTrip {
                region: "lab".to_owned(),
                location: location.to_owned(),
                ms,
            })
            .chain([LatencyRoundTrip {
                region: "elsewhere".to_owned(),
                location: "west".to_owned(),
                ms: 1,
            }])
            .collect(),
    }
}

fn configure(config: &mut ServiceConfig) {
    let geo = &mut config.allocation.geo_latency;
    geo.table = table(&[("north", 40), ("east", 10), ("west", 80)]);
    geo.probe.interval_ms = 200;
}

/// Give the linked hubs these locations (same order as [`HUBS`]) and make
/// `geoLatency` the tenant's default policy.
async fn set_locations(system: &TestSystem, locations: [&str; 3]) -> Result<()> {
    let mut tenant = system
        .server
        .store()
        .tenant(system.scope())
        .await?
        .context("tenant")?;
    tenant.default_allocation_policy = AllocationPolicy::GeoLatency;
    for hub in &mut tenant.linked_hubs {
        let i = HUBS
            .iter()
            .position(|h| *h == hub.host_name)
            .context("hub")?;
        hub.location = Some(locations[i].to_owned());
    }
    system
        .server
        .store()
        .replace_tenant(tenant, Precondition::None)
        .await?;
    Ok(())
}

/// Register `count` new devices of the group and return their hubs.
async fn register(
    system: &TestSystem,
    group_key: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<String>> {
    let mut hubs = Vec::new();
    for n in 0..count {
        let id = format!("{prefix}-{n}");
        let registration = client(system, &id, Credential::group_key(group_key, &id)?)
            .poll_interval(Duration::from_millis(50))
            .build()?
            .register()
            .await?;
        ensure!(
            system
                .hubs
                .device(&registration.assigned_hub, &id)
                .is_some(),
            "{id} is not on {}",
            registration.assigned_hub
        );
        hubs.push(registration.assigned_hub);
    }
    Ok(hubs)
}

#[tokio::test]
async fn devices_land_on_the_hub_the_latency_table_says_is_nearest() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: HUBS,
        configure: &configure,
    })
    .await?;
    let group_key = generate_key();
    put_group(
        &system,
        json!({"enrollmentGroupId": "geo", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": group_key, "secondaryKey": generate_key()}}}),
    )
    .await;

    // hub-b is `east`, 10 ms from the lab: every device goes there (hashed
    // would spread five devices over three hubs).
    set_locations(&system, ["north", "east", "west"]).await?;
    assert_eq!(
        register(&system, &group_key, "geo-east", 5).await?,
        vec!["hub-b.test"; 5]
    );

    // Move `east` to hub-c. The registration path reads the tenant through
    // a 2-second cache; a write straight to the store is seen after it.
    set_locations(&system, ["north", "west", "east"]).await?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        register(&system, &group_key, "geo-moved", 3).await?,
        vec!["hub-c.test"; 3]
    );

    // A new table where `north` (hub-a) is nearest, within the tie
    // tolerance of nothing else.
    let mut system = system;
    system.config.allocation.geo_latency.table = table(&[("north", 3), ("east", 30), ("west", 80)]);
    let system = system.restart().await?;
    assert_eq!(
        register(&system, &group_key, "geo-north", 3).await?,
        vec!["hub-a.test"; 3]
    );
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_live_prober_measures_the_emulator_hubs_through_resolve() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: HUBS,
        configure: &configure,
    })
    .await?;
    let live = system
        .server
        .live_latency()
        .cloned()
        .context("probing is on by default")?;
    // The tenant was created after the server started: the next round
    // (200 ms later) reads it from storage.
    let deadline = Instant::now() + Duration::from_secs(10);
    while HUBS.iter().any(|hub| live.get(hub).is_none()) {
        ensure!(
            Instant::now() < deadline,
            "no measurements: {:?}",
            HUBS.iter().map(|h| live.get(h)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for hub in HUBS {
        let rtt = live.get(hub).context("measured")?;
        ensure!(rtt < Duration::from_secs(1), "{hub}: {rtt:?}");
    }

    // Unlinking a hub drops it from the probes within a round.
    let mut tenant = system.tenant.clone();
    tenant.linked_hubs.retain(|h| h.host_name != "hub-c.test");
    system
        .server
        .store()
        .replace_tenant(tenant, Precondition::None)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.get("hub-c.test").is_some() {
        ensure!(Instant::now() < deadline, "hub-c.test still probed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(live.get("hub-a.test").is_some());

    // Probing off: no live source.
    let mut system = system;
    system.config.allocation.geo_latency.probe.enabled = false;
    let system = system.restart().await?;
    ensure!(system.server.live_latency().is_none());
    system.stop().await;
    Ok(())
}
