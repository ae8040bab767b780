//! The official Azure IoT Python device SDK (`azure-iot-device` 2.14.0,
//! paho-mqtt underneath) over MQTT (8883) and MQTT over WebSocket (443)
//! against our server, unpatched: symmetric key and X.509, each ending with
//! the device on the hub emulator; refusals end the process with an error
//! within seconds; and the synchronous register answer.

use std::time::Duration;

use anyhow::Result;
use dps_e2e::python::{run, PythonScript};
use dps_e2e::server::{SystemOptions, TestSystem};
use serde_json::Value;

use crate::mqtt_fixtures::{self as fixtures, Credential};

/// Registers one device (`WEBSOCKETS=1` for MQTT over WebSocket); prints the
/// result or the error as one JSON line.
const REGISTER: &str = r#"
import json, os, time
from azure.iot.device import ProvisioningDeviceClient, X509

env = os.environ
options = dict(
    provisioning_host=env["DPS_HOST"],
    registration_id=env["REG_ID"],
    id_scope=env["ID_SCOPE"],
    websockets=env.get("WEBSOCKETS") == "1",
    server_verification_cert=open(env["CA_FILE"]).read(),
)
if "DEVICE_KEY" in env:
    client = ProvisioningDeviceClient.create_from_symmetric_key(symmetric_key=env["DEVICE_KEY"], **options)
else:
    x509 = X509(cert_file=env["CERT_FILE"], key_file=env["KEY_FILE"])
    client = ProvisioningDeviceClient.create_from_x509_certificate(x509=x509, **options)
started = time.monotonic()
try:
    result = client.register()
    ms = int((time.monotonic() - started) * 1000)
    state = result.registration_state
    print(json.dumps({"ok": True, "ms": ms, "status": result.status,
        "deviceId": state.device_id if state else None,
        "assignedHub": state.assigned_hub if state else None,
        "substatus": state.sub_status if state else None}))
except Exception as err:
    ms = int((time.monotonic() - started) * 1000)
    print(json.dumps({"ok": False, "ms": ms, "name": type(err).__name__, "message": str(err),
        "cause": repr(err.__cause__)}))
finally:
    try:
        client.shutdown()
    except Exception:
        pass
"#;

fn register(
    system: &TestSystem,
    websockets: bool,
    scope: &str,
    registration_id: &str,
    credential: &Credential,
) -> Result<(Value, Duration)> {
    let mut env = vec![
        ("DPS_HOST".to_owned(), system.device_host.clone()),
        ("ID_SCOPE".to_owned(), scope.to_owned()),
        ("REG_ID".to_owned(), registration_id.to_owned()),
        ("CA_FILE".to_owned(), system.ca_file.display().to_string()),
        (
            "WEBSOCKETS".to_owned(),
            if websockets { "1" } else { "0" }.to_owned(),
        ),
    ];
    // The PEM files live until the process ends.
    let files = match credential {
        Credential::Key(key) => {
            env.push(("DEVICE_KEY".to_owned(), key.clone()));
            None
        }
        Credential::Certificate { chain_pem, key_pem } => {
            let cert = tempfile::NamedTempFile::new_in(system.dir.path())?;
            let key = tempfile::NamedTempFile::new_in(system.dir.path())?;
            std::fs::write(cert.path(), chain_pem)?;
            std::fs::write(key.path(), key_pem)?;
            env.push(("CERT_FILE".to_owned(), cert.path().display().to_string()));
            env.push(("KEY_FILE".to_owned(), key.path().display().to_string()));
            Some((cert, key))
        }
    };
    let output = run(&PythonScript {
        source: REGISTER,
        env,
        timeout: Duration::from_secs(45),
    })?;
    drop(files);
    Ok((output.result, output.elapsed))
}

fn assert_assigned(result: &Value, device_id: &str) {
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["status"], "assigned", "{result}");
    assert_eq!(result["assignedHub"], "hub-a.test", "{result}");
    assert_eq!(result["deviceId"], device_id, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mqtt_and_websocket_provision_symmetric_key_and_x509_devices() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    for (websockets, name) in [(false, "mqtt"), (true, "ws")] {
        let id = format!("py-{name}-sym");
        let key = fixtures::symmetric_individual(&system, &id).await?;
        let (result, _) = tokio::task::block_in_place(|| {
            register(&system, websockets, &scope, &id, &Credential::Key(key))
        })?;
        assert_assigned(&result, &id);
        assert_eq!(result["substatus"], "initialAssignment", "{result}");
        eprintln!(
            "python {name} symmetric key: register() to assigned in {} ms",
            result["ms"]
        );
        fixtures::assert_on_hub(&system, "hub-a.test", &id);

        let id = format!("py-{name}-x509");
        let credential = fixtures::x509_individual(&system, &id).await?;
        let (result, _) = tokio::task::block_in_place(|| {
            register(&system, websockets, &scope, &id, &credential)
        })?;
        assert_assigned(&result, &id);
        eprintln!(
            "python {name} X.509: register() to assigned in {} ms",
            result["ms"]
        );
        fixtures::assert_on_hub(&system, "hub-a.test", &id);
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_refusals_end_with_an_error_without_reconnecting() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let key = fixtures::symmetric_individual(&system, "py-refused").await?;
    let disabled_key = fixtures::symmetric_individual(&system, "py-disabled").await?;
    fixtures::disable(&system, "py-disabled").await?;
    for (websockets, name) in [(false, "mqtt"), (true, "ws")] {
        let cases = [
            (
                "wrong token",
                scope.clone(),
                "py-refused",
                dps_attestation::keys::generate_key(),
            ),
            (
                "unknown scope",
                fixtures::unknown_scope(),
                "py-refused",
                key.clone(),
            ),
            (
                "unknown enrollment",
                scope.clone(),
                "py-nobody",
                key.clone(),
            ),
            (
                "disabled enrollment",
                scope.clone(),
                "py-disabled",
                disabled_key.clone(),
            ),
        ];
        for (case, case_scope, id, key) in cases {
            let (result, elapsed) = tokio::task::block_in_place(|| {
                register(&system, websockets, &case_scope, id, &Credential::Key(key))
            })?;
            assert_eq!(result["ok"], false, "{name} {case}: {result}");
            assert!(
                elapsed < Duration::from_secs(10),
                "{name} {case}: took {elapsed:?}"
            );
            assert_eq!(result["name"], "ClientError", "{name} {case}: {result}");
            if case != "disabled enrollment" {
                // Answered `res/401` on the reply topic, as over HTTPS.
                let cause = result["cause"].as_str().unwrap_or_default();
                assert!(cause.contains("status code 401"), "{name} {case}: {result}");
            }
            eprintln!("python {name} {case}: {} after {elapsed:?}", result["name"]);
        }
    }
    assert!(system.hubs.device("hub-a.test", "py-disabled").is_none());
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_accepts_the_synchronous_register_answer() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    fixtures::synchronous_register(&system).await?;
    let scope = system.scope().to_string();
    for (websockets, name) in [(false, "mqtt"), (true, "ws")] {
        let id = format!("py-sync-{name}");
        let key = fixtures::symmetric_individual(&system, &id).await?;
        let (result, _) = tokio::task::block_in_place(|| {
            register(&system, websockets, &scope, &id, &Credential::Key(key))
        })?;
        assert_assigned(&result, &id);
        let ms = result["ms"].as_u64().unwrap_or(u64::MAX);
        // No 2 s wait before a first poll: the register answer was final.
        assert!(ms < 1500, "{name}: {ms} ms");
        eprintln!("python {name} synchronous register: assigned in {ms} ms");
        fixtures::assert_on_hub(&system, "hub-a.test", &id);
    }
    system.stop().await;
    Ok(())
}
