//! The official Azure IoT Node.js device SDK over AMQP (`Amqp`, port 5671)
//! and AMQP over WebSocket (`AmqpWs`, port 443) against our server,
//! unpatched (the MQTT scenario script with the AMQP transports): symmetric
//! key (individual and group-derived) and X.509 (individual, and a CA group
//! with leaf + intermediate), each ending with the identity and initial twin
//! on the hub emulator; refusals end the registration with an AMQP error
//! within seconds, over one connection (no reconnect loop). The synchronous
//! register answer over AMQP is in `mqtt_node` with every transport.
//!
//! TPM is not driven from Node: the SDK's TPM security client needs the
//! `tss.js` TPM stack and a TPM reachable over the Microsoft simulator
//! protocol, which the project's swtpm setup does not provide; TPM over AMQP
//! is covered with `dps-client` (tests/e2e/tpm_client.rs).

use std::time::Duration;

use anyhow::Result;
use dps_e2e::server::{SystemOptions, TestSystem};

use crate::mqtt_fixtures::{self as fixtures, Credential};
use crate::mqtt_node::{assert_assigned, provision_each_credential, register};

const TRANSPORTS: [&str; 2] = ["amqp", "amqpws"];

/// The admin listener's `/metrics` text.
async fn metrics(system: &TestSystem) -> Result<String> {
    let addr = system.server.admin_addr().expect("admin listener");
    Ok(reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?)
}

/// The value of the `dps_registrations_total` series of these labels.
fn registrations(text: &str, transport: &str, outcome: &str, code: &str) -> f64 {
    let series = format!(
        "dps_registrations_total{{transport=\"{transport}\",outcome=\"{outcome}\",code=\"{code}\"}} "
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// The device and the initial twin tag the fixtures set are on the hub.
fn assert_identity_and_twin(system: &TestSystem, device_id: &str) {
    fixtures::assert_on_hub(system, "hub-a.test", device_id);
    let twin = system
        .hubs
        .twin("hub-a.test", device_id)
        .unwrap_or_else(|| panic!("{device_id}: no twin"));
    let twin = serde_json::to_value(twin).expect("twin as JSON");
    assert_eq!(twin["tags"]["transport"], "mqtt", "{device_id}: {twin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_amqp_and_amqp_ws_provision_symmetric_key_and_x509_devices() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    // CAs first: the tenant view is cached from the first request on.
    let mut leaves = Vec::new();
    for transport in TRANSPORTS {
        let leaf = format!("node-{transport}-ca-leaf");
        let chain = fixtures::x509_ca_group(&system, &format!("{transport}-ca"), &leaf).await?;
        leaves.push((transport, leaf, chain));
    }
    // 202 with retry-after=1, then the first poll finds `assigned`.
    provision_each_credential(&system, &TRANSPORTS, 2500).await?;
    for transport in TRANSPORTS {
        assert_identity_and_twin(&system, &format!("node-{transport}-sym"));
    }
    for (transport, leaf, chain) in leaves {
        let (result, _) =
            tokio::task::block_in_place(|| register(&system, transport, &scope, &leaf, &chain))?;
        assert_assigned(&result, &leaf);
        fixtures::assert_on_hub(&system, "hub-a.test", &leaf);
    }
    // Counted under their own transport labels: four devices each.
    let text = metrics(&system).await?;
    for label in ["amqp", "amqp-ws"] {
        assert_eq!(
            registrations(&text, label, "assigned", "none"),
            4.0,
            "{label}"
        );
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_amqp_refusals_end_with_an_error_without_reconnecting() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let chain = fixtures::x509_ca_group(&system, "amqp-cn", "node-amqp-cn-leaf").await?;
    let key = fixtures::symmetric_individual(&system, "node-refused").await?;
    let disabled_key = fixtures::symmetric_individual(&system, "node-disabled").await?;
    fixtures::disable(&system, "node-disabled").await?;
    let gate = system
        .server
        .connections()
        .amqp
        .clone()
        .expect("AMQP is served");
    for transport in TRANSPORTS {
        let cases = [
            (
                "wrong key",
                scope.clone(),
                "node-refused",
                Credential::Key(dps_attestation::keys::generate_key()),
            ),
            (
                "unknown scope",
                fixtures::unknown_scope(),
                "node-refused",
                Credential::Key(key.clone()),
            ),
            (
                "unknown enrollment",
                scope.clone(),
                "node-nobody",
                Credential::Key(key.clone()),
            ),
            (
                "disabled enrollment",
                scope.clone(),
                "node-disabled",
                Credential::Key(disabled_key.clone()),
            ),
            (
                "CN is not the registration id",
                scope.clone(),
                "node-amqp-cn-other",
                chain.clone(),
            ),
        ];
        for (case, case_scope, id, credential) in cases {
            let connections = gate.stats().accepted_total;
            let (result, elapsed) = tokio::task::block_in_place(|| {
                register(&system, transport, &case_scope, id, &credential)
            })?;
            assert_eq!(result["ok"], false, "{transport} {case}: {result}");
            assert!(
                elapsed < Duration::from_secs(8),
                "{transport} {case}: took {elapsed:?}"
            );
            if case == "disabled enrollment" {
                // Answered like HTTPS: a `disabled` operation status, which
                // the SDK's polling state machine turns into an error.
                let message = result["message"].as_str().unwrap_or_default();
                assert!(message.contains("disabled"), "{transport} {case}: {result}");
            } else {
                // Rejected with the Azure error body HTTPS would send.
                assert_eq!(
                    result["condition"], "amqp:unauthorized-access",
                    "{transport} {case}: {result}"
                );
                let description = result["description"].as_str().unwrap_or_default();
                let azure: serde_json::Value = serde_json::from_str(description)
                    .unwrap_or_else(|_| panic!("{transport} {case}: {result}"));
                assert_eq!(azure["errorCode"], 401002, "{transport} {case}: {result}");
            }
            if transport == "amqp" {
                // One connection per attempt: the SDK did not reconnect.
                assert_eq!(
                    gate.stats().accepted_total - connections,
                    1,
                    "{transport} {case}"
                );
            }
            eprintln!(
                "node {transport} {case}: {} after {elapsed:?}",
                result["condition"]
            );
        }
    }
    assert!(system.hubs.device("hub-a.test", "node-disabled").is_none());
    // Four refusals with 401002 per transport, each under its own label.
    let text = metrics(&system).await?;
    for label in ["amqp", "amqp-ws"] {
        assert_eq!(
            registrations(&text, label, "refused", "401002"),
            4.0,
            "{label}"
        );
    }
    system.stop().await;
    Ok(())
}
