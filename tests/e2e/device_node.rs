//! The official Azure IoT Node.js device SDK over HTTPS against our server:
//! every attestation type, disabled enrollments, reprovisioning and custom
//! allocation, each ending with the device checked on the hub emulator.

use std::time::Duration;

use anyhow::Result;
use dps_attestation::keys::{derive_device_key, generate_key};
use dps_attestation::sas::SymmetricKey;
use dps_e2e::node::{run, NodeScript};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::*;
use serde_json::{json, Value};

use dps_e2e::certs;

/// Registers one device with the SDK's HTTP transport; prints the result or the error.
const REGISTER: &str = r#"
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const env = process.env;
let security;
if (env.DEVICE_KEY) {
  const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
  security = new SymmetricKeySecurityClient(env.REG_ID, env.DEVICE_KEY);
} else {
  const { X509Security } = require('azure-iot-security-x509');
  security = new X509Security(env.REG_ID, { cert: env.CERT_PEM, key: env.KEY_PEM });
}
const client = ProvisioningDeviceClient.create(env.DPS_HOST, env.ID_SCOPE, new Http(), security);
if (env.PAYLOAD) client.setProvisioningPayload(JSON.parse(env.PAYLOAD));
const started = Date.now();
client.register((err, result) => {
  const ms = Date.now() - started;
  if (err) {
    console.log(JSON.stringify({ ok: false, ms, name: err.name || err.constructor.name, message: String(err.message),
      status: err.response ? err.response.statusCode : undefined, result: err.result }));
  } else {
    console.log(JSON.stringify({ ok: true, ms, result }));
  }
  process.exit(0);
});
"#;

enum Credential {
    Key(String),
    Certificate { chain_pem: String, key_pem: String },
}

fn register(
    system: &TestSystem,
    registration_id: &str,
    credential: &Credential,
    payload: Option<Value>,
) -> Result<Value> {
    let mut env = system.node_env();
    env.push(("REG_ID".to_owned(), registration_id.to_owned()));
    match credential {
        Credential::Key(key) => env.push(("DEVICE_KEY".to_owned(), key.clone())),
        Credential::Certificate { chain_pem, key_pem } => {
            env.push(("CERT_PEM".to_owned(), chain_pem.clone()));
            env.push(("KEY_PEM".to_owned(), key_pem.clone()));
        }
    }
    if let Some(payload) = payload {
        env.push(("PAYLOAD".to_owned(), payload.to_string()));
    }
    let output = run(&NodeScript {
        source: REGISTER,
        env,
        timeout: Duration::from_secs(60),
    })?;
    Ok(output.result)
}

fn symmetric_enrollment(id: &str, key: &str) -> IndividualEnrollment {
    IndividualEnrollment::from_json(
        json!({
            "registrationId": id,
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": generate_key()}},
            "initialTwin": {"tags": {"site": "lab"}, "properties": {"desired": {"interval": 30}}}
        })
        .to_string()
        .as_bytes(),
    )
    .expect("valid enrollment")
}

async fn put(system: &TestSystem, enrollment: IndividualEnrollment) -> IndividualEnrollment {
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await
        .expect("stored")
        .record
}

fn assert_assigned(result: &Value, hub: &str, device_id: &str) {
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["result"]["assignedHub"], hub, "{result}");
    assert_eq!(result["result"]["deviceId"], device_id, "{result}");
    assert_eq!(result["result"]["status"], "assigned", "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_key_individual_enrollment_is_provisioned_on_the_first_poll() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = generate_key();
    put(&system, symmetric_enrollment("node-sym-1", &key)).await;

    let result = tokio::task::block_in_place(|| {
        register(&system, "node-sym-1", &Credential::Key(key.clone()), None)
    })?;
    assert_assigned(&result, "hub-a.test", "node-sym-1");
    assert_eq!(result["result"]["substatus"], "initialAssignment");
    // Register answers 202 with Retry-After 1: the first poll (1 s later) finds `assigned`.
    let ms = result["ms"].as_u64().unwrap();
    assert!(ms < 1900, "took {ms} ms: more than one polling interval");
    eprintln!("node HTTP symmetric key: register() to assigned in {ms} ms");

    let device = system
        .hubs
        .device("hub-a.test", "node-sym-1")
        .expect("device on the hub");
    let auth = device.authentication.expect("authentication");
    assert_eq!(
        auth.symmetric_key.unwrap().primary_key.as_deref(),
        Some(key.as_str())
    );
    let twin = system.hubs.twin("hub-a.test", "node-sym-1").expect("twin");
    assert_eq!(twin.tags.unwrap()["site"], "lab");
    assert_eq!(twin.properties.unwrap().desired.unwrap()["interval"], 30);

    let record = system
        .server
        .store()
        .registration(system.scope(), &RegistrationId::new("node-sym-1")?)
        .await?
        .expect("registration record");
    assert_eq!(record.status, RegistrationStatus::Assigned);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_key_group_device_uses_its_derived_key() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let group_key = generate_key();
    let group = EnrollmentGroup::from_json(
        json!({"enrollmentGroupId": "node-group", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": group_key, "secondaryKey": generate_key()}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment_group(system.scope(), group, Precondition::None)
        .await?;
    let device_key =
        derive_device_key(&SymmetricKey::from_base64(&group_key)?, "node-grp-dev-7").to_base64();
    let result = tokio::task::block_in_place(|| {
        register(
            &system,
            "node-grp-dev-7",
            &Credential::Key(device_key.clone()),
            None,
        )
    })?;
    assert_assigned(&result, "hub-a.test", "node-grp-dev-7");
    let device = system
        .hubs
        .device("hub-a.test", "node-grp-dev-7")
        .expect("device");
    assert_eq!(
        device
            .authentication
            .unwrap()
            .symmetric_key
            .unwrap()
            .primary_key
            .as_deref(),
        Some(device_key.as_str())
    );
    // A key derived for another id does not work for this one.
    let wrong = tokio::task::block_in_place(|| {
        register(
            &system,
            "node-grp-dev-8",
            &Credential::Key(device_key.clone()),
            None,
        )
    })?;
    assert_eq!(wrong["ok"], false, "{wrong}");
    assert_eq!(wrong["status"], 401, "{wrong}");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_individual_enrollment_with_a_self_signed_certificate() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let device = certs::self_signed("node-x509-ind", false);
    let enrollment = IndividualEnrollment::from_json(
        json!({"registrationId": "node-x509-ind", "attestation": {"type": "x509",
            "x509": {"clientCertificates": {"primary": {"certificate": device.pem()}}}}})
        .to_string()
        .as_bytes(),
    )?;
    put(&system, enrollment).await;
    let credential = Credential::Certificate {
        chain_pem: device.pem(),
        key_pem: device.key_pem(),
    };
    let result =
        tokio::task::block_in_place(|| register(&system, "node-x509-ind", &credential, None))?;
    assert_assigned(&result, "hub-a.test", "node-x509-ind");
    let hub_device = system
        .hubs
        .device("hub-a.test", "node-x509-ind")
        .expect("device");
    let auth = hub_device.authentication.unwrap();
    let thumbprint = auth.x509_thumbprint.unwrap().primary_thumbprint.unwrap();
    assert_eq!(thumbprint.len(), 64, "SHA-256 thumbprint: {thumbprint}");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_group_through_a_verified_ca_and_an_intermediate() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let root = certs::self_signed("node-root-ca", true);
    let intermediate = certs::signed_by("node-intermediate", true, &root);
    let leaf = certs::signed_by("node-x509-grp-1", false, &intermediate);
    system.add_verified_ca("root", root.pem()).await?;
    let group = EnrollmentGroup::from_json(
        json!({"enrollmentGroupId": "x509-group", "attestation": {"type": "x509",
            "x509": {"caReferences": {"primary": "root"}}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment_group(system.scope(), group, Precondition::None)
        .await?;
    // The tenant view is cached briefly; a fresh system reads it on first use.
    let credential = Credential::Certificate {
        chain_pem: format!("{}{}", leaf.pem(), intermediate.pem()),
        key_pem: leaf.key_pem(),
    };
    let result =
        tokio::task::block_in_place(|| register(&system, "node-x509-grp-1", &credential, None))?;
    assert_assigned(&result, "hub-a.test", "node-x509-grp-1");
    assert!(system
        .hubs
        .device("hub-a.test", "node-x509-grp-1")
        .is_some());
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_enrollment_is_refused_cleanly() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = generate_key();
    let mut enrollment = symmetric_enrollment("node-disabled", &key);
    enrollment.provisioning_status = ProvisioningStatus::Disabled;
    put(&system, enrollment).await;
    let result = tokio::task::block_in_place(|| {
        register(&system, "node-disabled", &Credential::Key(key), None)
    })?;
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        result["message"].as_str().unwrap().contains("disabled"),
        "{result}"
    );
    assert!(system.hubs.device("hub-a.test", "node-disabled").is_none());
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprovisioning_follows_each_policy() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-b.test"],
        ..SystemOptions::default()
    })
    .await?;
    // (updateHubAssignment, migrateDeviceData, expected hub, expected substatus, twin tag expected)
    let cases = [
        (
            true,
            true,
            "hub-b.test",
            "deviceDataMigrated",
            Some("moved-with-device"),
        ),
        (true, false, "hub-b.test", "deviceDataReset", None),
        (
            false,
            true,
            "hub-a.test",
            // Node sends api-version 2019-03-31, older than the
            // `reprovisionedToInitialAssignment` value (2019-04-15).
            "initialAssignment",
            Some("moved-with-device"),
        ),
    ];
    for (i, (update, migrate, hub, substatus, tag)) in cases.into_iter().enumerate() {
        let id = format!("node-reprov-{i}");
        let key = generate_key();
        let mut enrollment = symmetric_enrollment(&id, &key);
        enrollment.allocation_policy = Some(AllocationPolicy::Static);
        enrollment.iot_hubs = Some(vec!["hub-a.test".to_owned()]);
        enrollment.reprovision_policy = Some(ReprovisionPolicy {
            update_hub_assignment: update,
            migrate_device_data: migrate,
        });
        let stored = put(&system, enrollment).await;
        let first = tokio::task::block_in_place(|| {
            register(&system, &id, &Credential::Key(key.clone()), None)
        })?;
        assert_assigned(&first, "hub-a.test", &id);
        // Data set on the first hub after provisioning.
        system
            .set_twin_tag("hub-a.test", &id, "moved", json!("moved-with-device"))
            .await?;

        let mut moved = stored.clone();
        moved.iot_hubs = Some(vec!["hub-b.test".to_owned()]);
        put(&system, moved).await;
        let second = tokio::task::block_in_place(|| {
            register(&system, &id, &Credential::Key(key.clone()), None)
        })?;
        assert_assigned(&second, hub, &id);
        assert_eq!(
            second["result"]["substatus"], substatus,
            "case {i}: {second}"
        );
        let twin = system.hubs.twin(hub, &id).expect("twin on the target hub");
        let tags = twin.tags.unwrap_or_default();
        assert_eq!(
            tags.get("moved").and_then(Value::as_str),
            tag,
            "case {i}: {tags:?}"
        );
        if hub == "hub-b.test" {
            assert!(
                system.hubs.device("hub-a.test", &id).is_none(),
                "case {i}: left on the old hub"
            );
        }
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_allocation_webhook_decides_hub_twin_and_payload() -> Result<()> {
    use axum::routing::post;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let app = axum::Router::new().route(
        "/allocate",
        post(move |axum::Json(request): axum::Json<Value>| {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send(request.clone());
                axum::Json(json!({
                    "iotHubHostName": "hub-b.test",
                    "initialTwin": {"tags": {"from": "webhook"}, "properties": {"desired": {"mode": "custom"}}},
                    "payload": {"echo": request["deviceRuntimeContext"]["payload"]}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let webhook = format!("http://{}/allocate?code=secret", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The operator allows this loopback webhook (the default refuses it).
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-b.test"],
        configure: &|config| {
            config.egress.allowed_networks = vec!["127.0.0.0/8".to_owned()];
            config.egress.allow_http_networks = vec!["127.0.0.0/8".to_owned()];
        },
    })
    .await?;
    let key = generate_key();
    let mut enrollment = symmetric_enrollment("node-custom", &key);
    enrollment.allocation_policy = Some(AllocationPolicy::Custom);
    enrollment.custom_allocation_definition = Some(CustomAllocationDefinition {
        webhook_url: webhook,
        api_version: "2021-10-01".to_owned(),
    });
    put(&system, enrollment).await;
    let payload = json!({"site": {"nested": [1, 2, 3]}});
    let result = tokio::task::block_in_place(|| {
        register(
            &system,
            "node-custom",
            &Credential::Key(key),
            Some(payload.clone()),
        )
    })?;
    assert_assigned(&result, "hub-b.test", "node-custom");
    assert_eq!(
        result["result"]["payload"],
        json!({"echo": payload}),
        "{result}"
    );
    let request = seen_rx.recv().await.expect("webhook called");
    assert_eq!(
        request["deviceRuntimeContext"]["registrationId"],
        "node-custom"
    );
    assert_eq!(
        request["individualEnrollment"]["registrationId"],
        "node-custom"
    );
    assert_eq!(request["linkedHubs"], json!(["hub-a.test", "hub-b.test"]));
    let twin = system.hubs.twin("hub-b.test", "node-custom").expect("twin");
    assert_eq!(twin.tags.unwrap()["from"], "webhook");
    system.stop().await;
    Ok(())
}
