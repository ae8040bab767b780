//! The AMQP endpoint's per-device limits, with raw connections: a device
//! holds at most `max_connections_per_registration` (2) verified connections
//! (a newer one closes the oldest), and a connection whose credentials fail
//! holds none of those places and is closed once idle past the SASL deadline.

use std::time::Duration;

use anyhow::{Context as _, Result};
use dps_e2e::server::{SystemOptions, TestSystem};

use crate::amqp_raw::Raw;
use crate::mqtt_fixtures as fixtures;

/// A raw connection of `id` authenticated with `key` and a sender link attached.
async fn attached(system: &TestSystem, id: &str, key: &str) -> Result<Raw> {
    let scope = system.scope().to_string();
    let mut raw = Raw::open(system).await?;
    raw.plain(&scope, id, key).await.context("SASL")?;
    raw.attach_sender(&format!("{scope}/registrations/{id}"))
        .await
        .context("attach")?;
    Ok(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keeps_two_connections_and_failed_credentials_none_for_long() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.device.amqp.sasl_timeout_ms = 1000,
        ..SystemOptions::default()
    })
    .await?;
    let key = fixtures::symmetric_individual(&system, "amqp-capped").await?;
    let mut connections = Vec::new();
    for _ in 0..3 {
        connections.push(attached(&system, "amqp-capped", &key).await?);
    }
    // The third verified connection closed the oldest: newest wins.
    assert!(
        connections[0]
            .closed_within(Duration::from_secs(3))
            .await
            .is_some(),
        "the oldest connection stayed open"
    );
    // The two others stay, idle past the SASL deadline: they are verified.
    for raw in &mut connections[1..] {
        assert!(raw
            .closed_within(Duration::from_millis(1500))
            .await
            .is_none());
    }

    // A wrong key: SASL passes (it only collects), the attach leaves the
    // connection unverified, and it is closed once idle.
    let mut refused = attached(
        &system,
        "amqp-capped",
        &dps_attestation::keys::generate_key(),
    )
    .await?;
    let started = std::time::Instant::now();
    assert!(
        refused
            .closed_within(Duration::from_secs(4))
            .await
            .is_some(),
        "an unverified connection stayed open"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // It took no place from the device's own connections.
    for raw in &mut connections[1..] {
        assert!(raw
            .closed_within(Duration::from_millis(200))
            .await
            .is_none());
    }
    system.stop().await;
    Ok(())
}
