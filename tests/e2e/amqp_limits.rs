//! The AMQP endpoint's per-device limits, with raw connections: a device
//! holds at most `max_connections_per_registration` (2) verified connections
//! (a newer one closes the oldest), and a connection whose credentials fail
//! holds none of those places and is closed once idle past the SASL deadline;
//! a connection attaching more than `max_links` links is closed while
//! another device's connection still provisions.

use std::time::Duration;

use anyhow::{Context as _, Result};
use dps_e2e::server::{SystemOptions, TestSystem};
use fe2o3_amqp::types::definitions::Role;

use crate::amqp_raw::{client, Raw};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_link_cap_is_closed_and_others_provision() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.device.amqp.max_links = 2,
        ..SystemOptions::default()
    })
    .await?;
    let greedy_key = fixtures::symmetric_individual(&system, "amqp-greedy").await?;
    let healthy_key = fixtures::symmetric_individual(&system, "amqp-healthy").await?;
    let address = format!("{}/registrations/amqp-greedy", system.scope());
    // A healthy device's connection, open before and after the abuse.
    let mut neighbour = attached(&system, "amqp-healthy", &healthy_key).await?;

    // Within the cap of 2: the device's sender and receiver links, as
    // every SDK attaches them.
    let mut greedy = attached(&system, "amqp-greedy", &greedy_key).await?;
    greedy
        .attach_link(1, Role::Receiver, &address)
        .await
        .context("link 2")?;
    assert!(greedy
        .closed_within(Duration::from_millis(300))
        .await
        .is_none());
    // The receiver detached and attached again: one direction each still,
    // but a third attach on the connection, over the cap — it is closed.
    greedy.send_detach(1).await?;
    greedy.send_attach(2, Role::Receiver, &address).await?;
    assert!(
        greedy.closed_within(Duration::from_secs(3)).await.is_some(),
        "a connection attaching more than max_links links stayed open"
    );

    // Only that connection: the neighbour stays, and a device provisions.
    assert!(neighbour
        .closed_within(Duration::from_millis(200))
        .await
        .is_none());
    let registered = client(&system, "amqp-healthy", &healthy_key)?
        .register()
        .await?;
    assert_eq!(registered.device_id, "amqp-healthy");
    system.stop().await;
    Ok(())
}
