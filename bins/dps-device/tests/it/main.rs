//! The `dps-device` binary against a real dps server with the hub emulator.

use std::process::{Command, Output};

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_client::swarm::{DeviceKind, Mix, PlanOptions, SwarmPlan};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::{IndividualEnrollment, Precondition};
use serde_json::{json, Value};

mod issuance;
mod transports;

/// Run the binary to its end.
async fn dps_device_raw(args: Vec<String>) -> Result<Output> {
    Ok(tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_dps-device"))
            .args(&args)
            .output()
    })
    .await??)
}

/// Run the binary; its exit success and stdout parsed as JSON.
async fn dps_device(args: Vec<String>) -> Result<(bool, Value)> {
    let output = dps_device_raw(args).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(&stdout).map_err(|e| {
        anyhow::anyhow!(
            "{e}: stdout {stdout}, stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok((output.status.success(), value))
}

fn common(system: &TestSystem) -> Vec<String> {
    vec![
        "--endpoint".into(),
        system.device_host.clone(),
        "--id-scope".into(),
        system.scope().to_string(),
        "--ca".into(),
        system.ca_file.display().to_string(),
        "--json".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_prints_the_assignment_or_the_error_class() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = generate_key();
    let enrollment = IndividualEnrollment::from_json(
        json!({"registrationId": "cli-dev", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": key}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await?;

    let mut args = vec!["register".to_owned()];
    args.extend(common(&system));
    args.extend(["--registration-id".into(), "cli-dev".into()]);
    let (ok, out) = dps_device([args.clone(), vec!["--key".into(), key.clone()]].concat()).await?;
    assert!(ok, "{out}");
    assert_eq!(out["status"], "assigned");
    assert_eq!(out["assignedHub"], "hub-a.test");
    assert_eq!(out["deviceId"], "cli-dev");
    assert_eq!(out["substatus"], "initialAssignment");
    assert_eq!(
        out["hubConnectionString"],
        format!("HostName=hub-a.test;DeviceId=cli-dev;SharedAccessKey={key}")
    );

    let (ok, out) = dps_device([args, vec!["--key".into(), generate_key()]].concat()).await?;
    assert!(!ok);
    assert_eq!(out["status"], "error");
    assert_eq!(out["class"], "authentication");
    assert_eq!(out["errorCode"], 401002);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_provisions_every_device_and_reports() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-b.test"],
        ..SystemOptions::default()
    })
    .await?;
    // The binary derives each device's key from the seed key and its id, so
    // the enrollments can be made here from the same plan.
    let seed = generate_key();
    let mut options = PlanOptions::new("cli", 60, Mix::only(DeviceKind::Symmetric));
    options.seed_key = Some(seed.clone());
    let enrollments = SwarmPlan::prepare(options)?
        .individual_enrollments()
        .iter()
        .map(|e| IndividualEnrollment::from_json(e.to_string().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    system
        .server
        .store()
        .import_enrollments(system.scope(), enrollments)
        .await?;

    let mut args = vec!["swarm".to_owned()];
    args.extend(common(&system));
    args.extend(
        [
            "--count",
            "60",
            "--concurrency",
            "6",
            "--prefix",
            "cli",
            "--seed-key",
            &seed,
            "--poll-interval-ms",
            "0",
            "--quiet",
        ]
        .map(str::to_owned),
    );
    let (ok, out) = dps_device(args).await?;
    assert!(ok, "{out}");
    assert_eq!(out["succeeded"], 60, "{out}");
    assert_eq!(out["failed"], 0, "{out}");
    let per_hub = out["perHub"].as_object().expect("perHub");
    assert_eq!(per_hub.values().filter_map(Value::as_u64).sum::<u64>(), 60);
    assert!(out["registrationsPerSecond"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(out["latencyMs"]["p99"].as_f64().unwrap_or(0.0) > 0.0);
    system.stop().await;
    Ok(())
}
