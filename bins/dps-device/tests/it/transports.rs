//! `--transport`, the per-device exports, `--cleanup` and the Retry-After
//! hint, through the binary against a real server with its real service API.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::tenant::OWNER_POLICY;
use dps_model::{IndividualEnrollment, Precondition};
use dps_storage::PageRequest;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use serde_json::json;

use crate::{common, dps_device, dps_device_raw};

pub(crate) fn swarm_args(
    system: &TestSystem,
    transport: &str,
    prefix: &str,
    count: u64,
) -> Vec<String> {
    let mut args = vec!["swarm".to_owned()];
    args.extend(common(system));
    args.extend(
        [
            "--transport",
            transport,
            "--prefix",
            prefix,
            "--count",
            &count.to_string(),
            "--concurrency",
            "4",
            "--create-enrollments",
            "--cleanup",
            "--service-endpoint",
            &system.service_host,
            "--service-connection-string",
            &system
                .tenant
                .connection_string(OWNER_POLICY)
                .expect("the test tenant has an owner policy"),
            "--quiet",
        ]
        .map(str::to_owned),
    );
    args
}

/// Nothing the swarm created is left: no enrollment, no group, no record.
async fn assert_clean(system: &TestSystem) -> Result<()> {
    let store = &system.server.store();
    let enrollments = store
        .list_enrollments(system.scope(), &PageRequest::first(100))
        .await?;
    assert!(enrollments.items.is_empty(), "{:?}", enrollments.items);
    let groups = store
        .list_enrollment_groups(system.scope(), &PageRequest::first(100))
        .await?;
    assert!(groups.items.is_empty(), "{:?}", groups.items);
    assert_eq!(store.count_registrations(system.scope()).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_swarm_exports_every_device_and_cleans_up() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-b.test"],
        ..SystemOptions::default()
    })
    .await?;
    let csv = system.dir.path().join("swarm.csv");
    let log = system.dir.path().join("swarm.hlog");
    let mut args = swarm_args(&system, "mqtt", "mq", 12);
    args.extend(
        [
            "--mix",
            "symmetric=1,group=1,x509=1",
            "--poll-interval-ms",
            "0",
            "--latency-csv",
            csv.to_str().context("UTF-8 path")?,
            "--histogram-log",
            log.to_str().context("UTF-8 path")?,
        ]
        .map(str::to_owned),
    );
    let (ok, out) = dps_device(args).await?;
    assert!(ok, "{out}");
    assert_eq!(out["succeeded"], 12, "{out}");
    assert_eq!(
        out["perKind"],
        json!({"symmetric": 4, "group": 4, "x509": 4})
    );
    // Polling at once: no Retry-After hint.
    assert_eq!(out["hints"], json!([]));

    // One row per device, in plan order, each assigned to a linked hub.
    let text = std::fs::read_to_string(&csv)?;
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 12, "{text}");
    let ids: BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(rows[2][0], "mq-x509-0000002");
    for row in &rows {
        assert_eq!(row[2], "assigned", "{row:?}");
        assert!(row[3] == "hub-a.test" || row[3] == "hub-b.test", "{row:?}");
        assert!(row[6].parse::<f64>()? > 0.0, "{row:?}");
    }

    // The HdrHistogram log holds every device's latency.
    let bytes = std::fs::read(&log)?;
    let mut deserializer = Deserializer::new();
    let mut recorded = 0;
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(interval) = entry.map_err(|e| anyhow::anyhow!("{e:?}"))? {
            let encoded = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                interval.encoded_histogram(),
            )?;
            let histogram: hdrhistogram::Histogram<u64> = deserializer
                .deserialize(&mut encoded.as_slice())
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            recorded += histogram.len();
        }
    }
    assert_eq!(recorded, 12);

    assert_clean(&system).await?;
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_swarm_that_waits_for_retry_after_says_so() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    // No --poll-interval-ms: each device waits the server's Retry-After (1 s).
    let (ok, out) = dps_device(swarm_args(&system, "mqtt-ws", "ws", 4)).await?;
    assert!(ok, "{out}");
    assert_eq!(out["succeeded"], 4, "{out}");
    assert!(
        out["latencyMs"]["p50"].as_f64().unwrap_or(0.0) >= 1000.0,
        "{out}"
    );
    let hint = out["hints"][0].as_str().context("a hint")?;
    assert!(hint.contains("--poll-interval-ms 0"), "{hint}");
    assert_clean(&system).await?;
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_speaks_every_transport() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = generate_key();
    for id in ["t-https", "t-mqtt", "t-mqtt-ws", "t-amqp", "t-amqp-ws"] {
        let enrollment = IndividualEnrollment::from_json(
            json!({"registrationId": id, "attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": key}}})
            .to_string()
            .as_bytes(),
        )?;
        system
            .server
            .store()
            .put_enrollment(system.scope(), enrollment, Precondition::None)
            .await?;
    }
    for transport in ["https", "mqtt", "mqtt-ws", "amqp", "amqp-ws"] {
        let id = format!("t-{transport}");
        let mut args = vec!["register".to_owned()];
        args.extend(common(&system));
        args.extend(
            [
                "--transport",
                transport,
                "--registration-id",
                &id,
                "--key",
                &key,
            ]
            .map(str::to_owned),
        );
        let (ok, out) = dps_device(args).await?;
        assert!(ok, "{transport}: {out}");
        assert_eq!(out["deviceId"], id.as_str(), "{out}");
        assert_eq!(out["assignedHub"], "hub-a.test", "{out}");
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_swarms_provision_every_kind_and_clean_up() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    for (transport, prefix) in [("amqp", "aq"), ("amqp-ws", "aw")] {
        let mut args = swarm_args(&system, transport, prefix, 9);
        args.extend(
            [
                "--mix",
                "symmetric=1,group=1,x509=1",
                "--poll-interval-ms",
                "0",
            ]
            .map(str::to_owned),
        );
        let (ok, out) = dps_device(args).await?;
        assert!(ok, "{transport}: {out}");
        assert_eq!(out["succeeded"], 9, "{transport}: {out}");
        assert_eq!(
            out["perKind"],
            json!({"symmetric": 3, "group": 3, "x509": 3}),
            "{transport}"
        );
        assert_clean(&system).await?;
    }
    system.stop().await;
    Ok(())
}

/// The README's old swarm example sent the service API to the device port:
/// the error names the status and code as numbers, without Rust's `Some(…)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_api_refusal_reads_cleanly() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let mut args = swarm_args(&system, "https", "wrong", 1);
    let endpoint = args
        .iter()
        .position(|a| a == "--service-endpoint")
        .context("flag")?;
    args[endpoint + 1] = system.device_host.clone();
    let output = dps_device_raw(args).await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("creating the enrollments"), "{stderr}");
    assert!(stderr.contains("service error (404"), "{stderr}");
    assert!(!stderr.contains("Some("), "{stderr}");
    system.stop().await;
    Ok(())
}
