//! `enrollment-group …`, `compute-device-key`, `registration …` and device
//! tokens, with devices that really provision through the group.

use std::time::Duration;

use anyhow::Result;
use dps_attestation::keys::derive_device_key;
use dps_attestation::sas::SymmetricKey;
use dps_client::{Credential, ProvisioningClient};
use serde_json::{json, Value};

use crate::support::{assert_failed, System, HUB};

async fn provision(system: &System, registration_id: &str, key: &str) -> Result<()> {
    let registration = ProvisioningClient::builder(
        system
            .server
            .device_addr()
            .expect("device HTTPS listener")
            .to_string(),
        system.tenant.id_scope.as_str(),
        registration_id,
    )
    .credential(Credential::symmetric_key(key)?)
    .trust_ca_pem(system.server.trust_pem().to_owned())
    .system_roots(false)
    .poll_interval(Duration::ZERO)
    .build()?
    .register()
    .await?;
    assert_eq!(registration.assigned_hub, HUB);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_its_derived_keys_and_its_registration_records() -> Result<()> {
    let system = System::start().await?;
    let group = system
        .admin(&[
            "--json",
            "enrollment-group",
            "create",
            "--enrollment-id",
            "fleet",
            "--initial-twin-properties",
            r#"{"interval":30}"#,
        ])
        .await?
        .json()?;
    assert_eq!(group["enrollmentGroupId"], "fleet");
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The device key, from the key given or read from the group: the same
    // derivation the service verifies.
    let expected =
        derive_device_key(&SymmetricKey::from_base64(&group_key)?, "sensor-1").to_base64();
    let from_key = system
        .admin(&[
            "compute-device-key",
            "--key",
            &group_key,
            "--registration-id",
            "sensor-1",
        ])
        .await?;
    assert_eq!(from_key.stdout.trim(), expected);
    let from_group = system
        .admin(&[
            "--json",
            "compute-device-key",
            "--enrollment-id",
            "fleet",
            "--registration-id",
            "sensor-1",
        ])
        .await?
        .json()?;
    assert_eq!(
        from_group,
        json!({"registrationId": "sensor-1", "key": expected})
    );

    // Devices provision with derived keys; their records list per group.
    provision(&system, "sensor-1", &expected).await?;
    let key_2 = derive_device_key(&SymmetricKey::from_base64(&group_key)?, "sensor-2").to_base64();
    provision(&system, "sensor-2", &key_2).await?;
    let records = system
        .admin(&[
            "--json",
            "registration",
            "list",
            "--group-id",
            "fleet",
            "--page-size",
            "1",
        ])
        .await?
        .json()?;
    let records = records.as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 2, "two pages of one");
    assert!(records
        .iter()
        .all(|r| r["status"] == "assigned" && r["assignedHub"] == HUB));
    let table = system
        .admin(&["registration", "list", "--group-id", "fleet"])
        .await?;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("REGISTRATION ID  DEVICE ID  STATUS"),
        "{}",
        table.stdout
    );
    assert!(lines[1].starts_with("sensor-1") && lines[1].contains("assigned"));
    assert!(
        lines[2].starts_with("sensor-2") && lines[2].contains(HUB),
        "{}",
        table.stdout
    );

    // One record; deleting it needs its current etag when one is given.
    let record = system
        .admin(&[
            "--json",
            "registration",
            "show",
            "--registration-id",
            "sensor-1",
        ])
        .await?
        .json()?;
    assert_eq!(record["deviceId"], "sensor-1");
    let stale = system
        .admin(&[
            "registration",
            "delete",
            "--registration-id",
            "sensor-1",
            "--etag",
            "stale",
        ])
        .await?;
    assert_failed(&stale, &["error 412001 (HTTP 412)"]);
    let etag = record["etag"].as_str().unwrap_or_default();
    let deleted = system
        .admin(&[
            "registration",
            "delete",
            "--registration-id",
            "sensor-1",
            "--etag",
            etag,
        ])
        .await?;
    assert!(deleted.success, "{}", deleted.stderr);
    let gone = system
        .admin(&["registration", "show", "--registration-id", "sensor-1"])
        .await?;
    assert_failed(&gone, &["error 404202"]);

    // A device token minted from the group key registers over raw HTTPS.
    let token = system
        .admin(&[
            "token",
            "--registration-id",
            "sensor-3",
            "--id-scope",
            system.tenant.id_scope.as_str(),
            "--group-key",
            &group_key,
        ])
        .await?;
    assert!(token.success, "{}", token.stderr);
    let answer = register_raw(&system, "sensor-3", token.stdout.trim()).await?;
    assert_eq!(answer["status"], "assigning", "{answer}");

    // Update, list, delete the group.
    let updated = system
        .admin(&[
            "--json",
            "enrollment-group",
            "update",
            "--enrollment-id",
            "fleet",
            "--provisioning-status",
            "disabled",
        ])
        .await?
        .json()?;
    assert_eq!(updated["provisioningStatus"], "disabled");
    assert_eq!(
        updated["initialTwin"]["properties"]["desired"]["interval"],
        30
    );
    let listed = system.admin(&["enrollment-group", "list"]).await?;
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(
        lines[0].starts_with("GROUP ID  ATTESTATION   PROVISIONING"),
        "{}",
        listed.stdout
    );
    assert!(
        lines[1].starts_with("fleet     symmetricKey  disabled"),
        "{}",
        listed.stdout
    );
    let stale = system
        .admin(&[
            "enrollment-group",
            "delete",
            "--enrollment-id",
            "fleet",
            "--etag",
            "stale",
        ])
        .await?;
    assert_failed(&stale, &["412001", "etag did not match"]);
    let deleted = system
        .admin(&[
            "--json",
            "enrollment-group",
            "delete",
            "--enrollment-id",
            "fleet",
        ])
        .await?
        .json()?;
    assert_eq!(
        deleted,
        json!({"deleted": "enrollment group", "id": "fleet"})
    );
    // Records made through a deleted group are still listed.
    let records = system
        .admin(&["--json", "registration", "list", "--group-id", "fleet"])
        .await?
        .json()?;
    assert_eq!(records.as_array().map(Vec::len), Some(2));
    Ok(())
}

/// `PUT /{scope}/registrations/{id}/register` with a token, as a device SDK sends it.
async fn register_raw(system: &System, registration_id: &str, token: &str) -> Result<Value> {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            system.server.trust_pem().as_bytes(),
        )?)
        .build()?;
    let url = format!(
        "https://{}/{}/registrations/{registration_id}/register?api-version=2021-06-01",
        system.server.device_addr().expect("device HTTPS listener"),
        system.tenant.id_scope
    );
    let answer = http
        .put(url)
        .header("authorization", token)
        .json(&json!({"registrationId": registration_id}))
        .send()
        .await?;
    Ok(answer.json().await?)
}
