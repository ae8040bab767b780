//! The official Azure IoT Node.js device SDK over MQTT (`Mqtt`, port 8883)
//! and MQTT over WebSocket (`MqttWs`, port 443) against our server, unpatched:
//! symmetric key (individual and group) and X.509, each ending with the
//! device on the hub emulator; refusals end the process with an error within
//! seconds; and the synchronous register answer (also over AMQP and HTTPS).

use std::time::Duration;

use anyhow::Result;
use dps_e2e::node::{run, NodeScript};
use dps_e2e::server::{SystemOptions, TestSystem};
use serde_json::Value;

use crate::mqtt_fixtures::{self as fixtures, Credential};

/// Registers one device with the transport named in `TRANSPORT`
/// (`mqtt`, `mqttws`, `amqp`, `amqpws` or `http`); prints the result or the
/// error (an AMQP rejection is a bare AMQP error: its condition and
/// description are printed too).
const REGISTER: &str = r#"
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const env = process.env;
let transport;
if (env.TRANSPORT === 'http') {
  const { Http } = require('azure-iot-provisioning-device-http');
  transport = new Http();
} else if (env.TRANSPORT.startsWith('amqp')) {
  const { Amqp, AmqpWs } = require('azure-iot-provisioning-device-amqp');
  transport = env.TRANSPORT === 'amqpws' ? new AmqpWs() : new Amqp();
} else {
  const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
  transport = env.TRANSPORT === 'mqttws' ? new MqttWs() : new Mqtt();
}
let security;
if (env.DEVICE_KEY) {
  const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
  security = new SymmetricKeySecurityClient(env.REG_ID, env.DEVICE_KEY);
} else {
  const { X509Security } = require('azure-iot-security-x509');
  security = new X509Security(env.REG_ID, { cert: env.CERT_PEM, key: env.KEY_PEM });
}
const client = ProvisioningDeviceClient.create(env.DPS_HOST, env.ID_SCOPE, transport, security);
const started = Date.now();
client.register((err, result) => {
  const ms = Date.now() - started;
  if (err) {
    console.log(JSON.stringify({ ok: false, ms, name: err.name || err.constructor.name, message: String(err.message),
      condition: err.condition, description: err.description }));
  } else {
    console.log(JSON.stringify({ ok: true, ms, result }));
  }
  process.exit(0);
});
"#;

/// Run the scenario; the child gets 30 s.
pub(crate) fn register(
    system: &TestSystem,
    transport: &str,
    scope: &str,
    registration_id: &str,
    credential: &Credential,
) -> Result<(Value, Duration)> {
    let mut env = system.node_env();
    env.retain(|(k, _)| k != "ID_SCOPE");
    env.push(("ID_SCOPE".to_owned(), scope.to_owned()));
    env.push(("TRANSPORT".to_owned(), transport.to_owned()));
    env.push(("REG_ID".to_owned(), registration_id.to_owned()));
    match credential {
        Credential::Key(key) => env.push(("DEVICE_KEY".to_owned(), key.clone())),
        Credential::Certificate { chain_pem, key_pem } => {
            env.push(("CERT_PEM".to_owned(), chain_pem.clone()));
            env.push(("KEY_PEM".to_owned(), key_pem.clone()));
        }
    }
    let output = run(&NodeScript {
        source: REGISTER,
        env,
        timeout: Duration::from_secs(30),
    })?;
    Ok((output.result, output.elapsed))
}

pub(crate) fn assert_assigned(result: &Value, device_id: &str) {
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["result"]["assignedHub"], "hub-a.test", "{result}");
    assert_eq!(result["result"]["deviceId"], device_id, "{result}");
    assert_eq!(result["result"]["status"], "assigned", "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mqtt_and_mqtt_ws_provision_symmetric_key_and_x509_devices() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    provision_each_credential(&system, &["mqtt", "mqttws"], 1900).await?;
    system.stop().await;
    Ok(())
}

/// Over each of `transports`: a symmetric-key device (individual, assigned
/// within `max_ms`: 202 with retry-after=1, then the first poll finds
/// `assigned`), a group-derived one and an X.509 one (self-signed), each
/// checked on the hub (`node-{transport}-sym`, `-grp`, `-x509`).
pub(crate) async fn provision_each_credential(
    system: &TestSystem,
    transports: &[&str],
    max_ms: u64,
) -> Result<()> {
    let scope = system.scope().to_string();
    let transports = transports.iter().copied();
    let mut group_keys = Vec::new();
    for transport in transports.clone() {
        let device = format!("node-{transport}-grp");
        group_keys.push(
            fixtures::symmetric_group(system, &format!("node-{transport}-group"), &device).await?,
        );
    }
    for (transport, group_key) in transports.zip(group_keys) {
        let id = format!("node-{transport}-sym");
        let key = fixtures::symmetric_individual(system, &id).await?;
        let (result, _) = tokio::task::block_in_place(|| {
            register(system, transport, &scope, &id, &Credential::Key(key))
        })?;
        assert_assigned(&result, &id);
        assert_eq!(result["result"]["substatus"], "initialAssignment");
        let ms = result["ms"].as_u64().unwrap_or(u64::MAX);
        assert!(ms < max_ms, "{transport}: {ms} ms");
        eprintln!("node {transport} symmetric key: register() to assigned in {ms} ms");
        fixtures::assert_on_hub(system, "hub-a.test", &id);

        let id = format!("node-{transport}-grp");
        let (result, _) = tokio::task::block_in_place(|| {
            register(system, transport, &scope, &id, &Credential::Key(group_key))
        })?;
        assert_assigned(&result, &id);
        fixtures::assert_on_hub(system, "hub-a.test", &id);

        let id = format!("node-{transport}-x509");
        let credential = fixtures::x509_individual(system, &id).await?;
        let (result, _) =
            tokio::task::block_in_place(|| register(system, transport, &scope, &id, &credential))?;
        assert_assigned(&result, &id);
        eprintln!(
            "node {transport} X.509: register() to assigned in {} ms",
            result["ms"]
        );
        let device = system
            .hubs
            .device("hub-a.test", &id)
            .expect("X.509 device on the hub");
        assert!(device
            .authentication
            .and_then(|a| a.x509_thumbprint)
            .is_some());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mqtt_refusals_end_with_an_error_without_reconnecting() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "node-refused").await?;
    let disabled_key = fixtures::symmetric_individual(&system, "node-disabled").await?;
    fixtures::disable(&system, "node-disabled").await?;
    for transport in ["mqtt", "mqttws"] {
        let cases = [
            (
                "wrong token",
                scope.clone(),
                "node-refused",
                dps_attestation::keys::generate_key(),
            ),
            (
                "unknown scope",
                fixtures::unknown_scope(),
                "node-refused",
                key.clone(),
            ),
            (
                "unknown enrollment",
                scope.clone(),
                "node-nobody",
                key.clone(),
            ),
            (
                "disabled enrollment",
                scope.clone(),
                "node-disabled",
                disabled_key.clone(),
            ),
        ];
        for (case, case_scope, id, key) in cases {
            let (result, elapsed) = tokio::task::block_in_place(|| {
                register(&system, transport, &case_scope, id, &Credential::Key(key))
            })?;
            assert_eq!(result["ok"], false, "{transport} {case}: {result}");
            assert!(
                elapsed < Duration::from_secs(8),
                "{transport} {case}: took {elapsed:?}"
            );
            let message = result["message"].as_str().unwrap_or_default().to_owned();
            if case == "disabled enrollment" {
                assert!(message.contains("disabled"), "{transport} {case}: {result}");
            } else {
                // Answered `res/401` on the reply topic, as over HTTPS.
                assert_eq!(
                    result["name"], "UnauthorizedError",
                    "{transport} {case}: {result}"
                );
            }
            eprintln!(
                "node {transport} {case}: {} after {elapsed:?}",
                result["name"]
            );
        }
    }
    assert!(system.hubs.device("hub-a.test", "node-disabled").is_none());
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_accepts_the_synchronous_register_answer_over_every_transport() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    fixtures::synchronous_register(&system).await?;
    let scope = system.scope().to_string();
    for transport in ["mqtt", "mqttws", "amqp", "amqpws", "http"] {
        let id = format!("node-sync-{transport}");
        let key = fixtures::symmetric_individual(&system, &id).await?;
        let (result, _) = tokio::task::block_in_place(|| {
            register(&system, transport, &scope, &id, &Credential::Key(key))
        })?;
        assert_assigned(&result, &id);
        let ms = result["ms"].as_u64().unwrap_or(u64::MAX);
        // `200 assigned` straight from the register: no poll, no wait.
        assert!(ms < 900, "{transport}: {ms} ms");
        eprintln!("node {transport} synchronous register: assigned in {ms} ms");
        fixtures::assert_on_hub(&system, "hub-a.test", &id);
    }
    system.stop().await;
    Ok(())
}
