//! `enrollment create|show|list|update|delete`, from flags and from a JSON
//! file, in tables and JSON, with etags.

use anyhow::Result;
use serde_json::{json, Value};

use crate::support::{arg, assert_failed, System, HUB};

/// The FIELD/VALUE rows of a `show` table.
fn fields(table: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    assert!(
        lines.next().unwrap_or_default().starts_with("FIELD"),
        "{table}"
    );
    lines
        .map(|line| {
            let (field, value) = line.split_once(' ').unwrap_or((line, ""));
            (field.to_owned(), value.trim().to_owned())
        })
        .collect()
}

fn field<'a>(rows: &'a [(String, String)], name: &str) -> Option<&'a str> {
    rows.iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_goes_through_create_show_list_update_and_delete() -> Result<()> {
    let system = System::start().await?;

    // From flags: the service generates the keys and answers them once.
    let created = system
        .admin(&[
            "--json",
            "enrollment",
            "create",
            "--enrollment-id",
            "dev-1",
            "--device-id",
            "dev-1-on-hub",
            "--iot-hubs",
            HUB,
            "--initial-twin-tags",
            r#"{"site":"plant-4"}"#,
            "--reprovision-policy",
            "reprovisionandresetdata",
        ])
        .await?
        .json()?;
    assert_eq!(created["registrationId"], "dev-1");
    assert_eq!(created["deviceId"], "dev-1-on-hub");
    assert_eq!(created["iotHubs"], json!([HUB]));
    assert_eq!(created["initialTwin"]["tags"]["site"], "plant-4");
    assert_eq!(created["reprovisionPolicy"]["migrateDeviceData"], false);
    let key = created["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a generated key")
        .to_owned();
    assert_eq!(key.len(), 88);

    // From a JSON file: an X.509 enrollment, disabled.
    let device = rcgen::generate_simple_self_signed(vec!["dev-x509".to_owned()])?;
    let file = system.write(
        "x509.json",
        &json!({"registrationId": "dev-x509", "provisioningStatus": "disabled",
            "attestation": {"type": "x509", "x509": {"clientCertificates":
                {"primary": {"certificate": device.cert.pem()}}}}})
        .to_string(),
    )?;
    let created = system
        .admin(&["--json", "enrollment", "create", "--file", arg(&file)])
        .await?
        .json()?;
    let info = &created["attestation"]["x509"]["clientCertificates"]["primary"]["info"];
    assert!(
        info["sha256Thumbprint"]
            .as_str()
            .is_some_and(|t| t.len() == 64),
        "{created}"
    );
    assert_eq!(created["provisioningStatus"], "disabled");

    // Show: a table of fields; keys only with --show-keys.
    let shown = system
        .admin(&["enrollment", "show", "--enrollment-id", "dev-1"])
        .await?;
    assert!(shown.success, "{}", shown.stderr);
    let rows = fields(&shown.stdout);
    assert_eq!(field(&rows, "registrationId"), Some("dev-1"));
    assert_eq!(field(&rows, "attestation.type"), Some("symmetricKey"));
    assert_eq!(field(&rows, "initialTwin.tags.site"), Some("plant-4"));
    assert_eq!(field(&rows, "attestation.symmetricKey.primaryKey"), None);
    let etag = field(&rows, "etag").expect("an etag").to_owned();
    let with_keys = system
        .admin(&[
            "--json",
            "enrollment",
            "show",
            "--enrollment-id",
            "dev-1",
            "--show-keys",
        ])
        .await?
        .json()?;
    assert_eq!(
        with_keys["attestation"]["symmetricKey"]["primaryKey"],
        key.as_str()
    );

    // List: one table row per enrollment, columns aligned under the header.
    let listed = system.admin(&["enrollment", "list"]).await?;
    assert!(listed.success, "{}", listed.stderr);
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", listed.stdout);
    assert!(lines[0].starts_with("REGISTRATION ID  DEVICE ID     ATTESTATION"));
    let status_at = lines[0].find("PROVISIONING").unwrap_or_default();
    assert!(lines[1].starts_with("dev-1 ") && lines[1][status_at..].starts_with("enabled"));
    assert!(lines[2].starts_with("dev-x509 ") && lines[2][status_at..].starts_with("disabled"));
    assert!(lines[1].contains("symmetricKey") && lines[2].contains("x509"));

    // Update with the etag just read: one field changes, the rest stays.
    let updated = system
        .admin(&[
            "--json",
            "enrollment",
            "update",
            "--enrollment-id",
            "dev-1",
            "--provisioning-status",
            "disabled",
            "--etag",
            &etag,
        ])
        .await?
        .json()?;
    assert_eq!(updated["provisioningStatus"], "disabled");
    assert_eq!(updated["initialTwin"]["tags"]["site"], "plant-4");
    assert_eq!(
        updated["attestation"]["symmetricKey"]["primaryKey"],
        key.as_str()
    );
    let new_etag = updated["etag"].as_str().unwrap_or_default().to_owned();
    assert_ne!(new_etag, etag);

    // The same etag again is stale now: 412, said so, nothing written.
    let conflict = system
        .admin(&[
            "enrollment",
            "update",
            "--enrollment-id",
            "dev-1",
            "--provisioning-status",
            "enabled",
            "--etag",
            &etag,
        ])
        .await?;
    assert_failed(
        &conflict,
        &["error 412001 (HTTP 412)", "etag did not match", "--etag"],
    );
    assert!(conflict.stdout.is_empty());
    let unchanged = show(&system, "dev-1").await?;
    assert_eq!(unchanged["provisioningStatus"], "disabled");
    assert_eq!(unchanged["etag"], new_etag.as_str());

    // Without --etag the update reads the current one itself.
    let updated = system
        .admin(&[
            "--json",
            "enrollment",
            "update",
            "--enrollment-id",
            "dev-1",
            "--provisioning-status",
            "enabled",
        ])
        .await?
        .json()?;
    assert_eq!(updated["provisioningStatus"], "enabled");

    // Update from a file replaces the record (the id comes from the flag).
    let replacement = system.write(
        "replacement.json",
        &json!({"attestation": {"type": "symmetricKey"},
            "initialTwin": {"tags": {"site": "plant-9"}}})
        .to_string(),
    )?;
    let replaced = system
        .admin(&[
            "--json",
            "enrollment",
            "update",
            "--enrollment-id",
            "dev-1",
            "--file",
            arg(&replacement),
        ])
        .await?
        .json()?;
    assert_eq!(replaced["initialTwin"]["tags"]["site"], "plant-9");
    assert_eq!(replaced["deviceId"], Value::Null);
    // An omitted key keeps the stored one.
    assert_eq!(
        replaced["attestation"]["symmetricKey"]["primaryKey"],
        key.as_str()
    );

    // Delete: a stale etag is refused, the current one deletes.
    let stale = system
        .admin(&[
            "enrollment",
            "delete",
            "--enrollment-id",
            "dev-1",
            "--etag",
            &etag,
        ])
        .await?;
    assert_failed(&stale, &["412001"]);
    let current = replaced["etag"].as_str().unwrap_or_default();
    let deleted = system
        .admin(&[
            "enrollment",
            "delete",
            "--enrollment-id",
            "dev-1",
            "--etag",
            current,
        ])
        .await?;
    assert!(deleted.success, "{}", deleted.stderr);
    assert_eq!(deleted.stdout.trim(), "deleted enrollment dev-1");
    let gone = system
        .admin(&["enrollment", "show", "--enrollment-id", "dev-1"])
        .await?;
    assert_failed(&gone, &["error 404201 (HTTP 404)", "dev-1"]);
    Ok(())
}

async fn show(system: &System, id: &str) -> Result<Value> {
    system
        .admin(&["--json", "enrollment", "show", "--enrollment-id", id])
        .await?
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_that_do_not_fit_are_refused_before_any_request() -> Result<()> {
    let system = System::start().await?;
    let run = system
        .admin(&[
            "enrollment",
            "create",
            "--enrollment-id",
            "d",
            "--endorsement-key",
            "AAAA",
        ])
        .await?;
    assert_failed(&run, &["--endorsement-key needs tpm attestation"]);
    let run = system
        .admin(&["enrollment", "create", "--initial-twin-tags", "{}"])
        .await?;
    assert_failed(&run, &["--enrollment-id"]);
    // The service's own validation comes back with its code.
    let run = system
        .admin(&["enrollment", "create", "--enrollment-id", "bad id!"])
        .await?;
    assert_failed(&run, &["(HTTP 400)"]);
    Ok(())
}
