//! `linked-hub`, `policy`, `certificate`, `settings` and `operations report`.

use anyhow::Result;
use dps_e2e::certs;
use serde_json::{json, Value};

use crate::support::{arg, assert_failed, System, HUB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_hubs_are_linked_updated_and_unlinked() -> Result<()> {
    let system = System::start().await?;
    let hub_b = "hub-b.admin.test";
    let secret = dps_attestation::keys::generate_key();
    let connection_string =
        format!("HostName={hub_b};SharedAccessKeyName=iothubowner;SharedAccessKey={secret}");
    let created = system
        .admin(&[
            "--json",
            "linked-hub",
            "create",
            "--hub-connection-string",
            &connection_string,
            "--allocation-weight",
            "5",
            "--location",
            "westeurope",
        ])
        .await?;
    assert!(
        !created.stdout.contains(&secret),
        "the hub key is never shown"
    );
    let created = created.json()?;
    assert_eq!(created["hostName"], hub_b);
    assert_eq!(created["allocationWeight"], 5);

    // An update keeps what it does not name (the stored key included).
    let updated = system
        .admin(&[
            "--json",
            "linked-hub",
            "update",
            "--linked-hub",
            hub_b,
            "--allocation-weight",
            "7",
            "--apply-allocation-policy",
            "false",
        ])
        .await?
        .json()?;
    assert_eq!(updated["allocationWeight"], 7);
    assert_eq!(updated["location"], "westeurope");
    assert_eq!(updated["applyAllocationPolicy"], false);
    let stored = system
        .server
        .store()
        .tenant(&system.tenant.id_scope)
        .await?;
    let stored = stored.and_then(|t| t.linked_hub(hub_b).cloned());
    assert!(stored.is_some_and(|h| h.connection_string.contains(&secret)));

    let table = system.admin(&["linked-hub", "list"]).await?;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(lines[0].starts_with("HOST NAME         WEIGHT  APPLY POLICY  LOCATION"));
    assert!(lines.iter().any(|l| l.starts_with(HUB)));
    assert!(lines
        .iter()
        .any(|l| l.starts_with(hub_b) && l.ends_with("westeurope")));

    let shown = system
        .admin(&["--json", "linked-hub", "show", "--linked-hub", hub_b])
        .await?
        .json()?;
    assert_eq!(shown["allocationWeight"], 7);
    let deleted = system
        .admin(&["linked-hub", "delete", "--linked-hub", hub_b])
        .await?;
    assert!(deleted.success, "{}", deleted.stderr);
    let gone = system
        .admin(&["linked-hub", "show", "--linked-hub", hub_b])
        .await?;
    assert_failed(&gone, &["error 404210"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_carry_rights_and_their_keys_rotate() -> Result<()> {
    let system = System::start().await?;
    let created = system
        .admin(&[
            "--json",
            "policy",
            "create",
            "--policy-name",
            "reader",
            "--rights",
            "EnrollmentRead,RegistrationStatusRead",
        ])
        .await?
        .json()?;
    assert_eq!(
        created["rights"],
        json!(["EnrollmentRead", "RegistrationStatusRead"])
    );
    let reader = created["primaryConnectionString"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reader.starts_with("HostName=admin-test.dps.invalid;SharedAccessKeyName=reader;"));

    // The reader may list, not write: the refusal names the rights.
    let as_reader = |cs: &str| {
        vec![
            ("DPS_SERVICE_CONNECTION_STRING", cs.to_owned()),
            ("DPS_SERVICE_ENDPOINT", system.endpoint()),
            ("DPS_CA", system.ca_file.display().to_string()),
        ]
    };
    let listed = system
        .admin_with(&["enrollment", "list"], &as_reader(&reader))
        .await?;
    assert!(listed.success, "{}", listed.stderr);
    let refused = system
        .admin_with(
            &["enrollment", "create", "--enrollment-id", "x"],
            &as_reader(&reader),
        )
        .await?;
    assert_failed(&refused, &["error 401002 (HTTP 401)", "EnrollmentWrite"]);

    // A regenerated primary key replaces the old one at once.
    let rotated = system
        .admin(&[
            "--json",
            "policy",
            "regenerate-key",
            "--policy-name",
            "reader",
            "--key-type",
            "primary",
        ])
        .await?
        .json()?;
    assert_ne!(rotated["primaryKey"], created["primaryKey"]);
    assert_eq!(rotated["secondaryKey"], created["secondaryKey"]);
    let old = system
        .admin_with(&["enrollment", "list"], &as_reader(&reader))
        .await?;
    assert_failed(&old, &["401002"]);
    let new = rotated["primaryConnectionString"]
        .as_str()
        .unwrap_or_default();
    assert!(
        system
            .admin_with(&["enrollment", "list"], &as_reader(new))
            .await?
            .success
    );

    // Rights change; keys are kept; the table lists every policy.
    let updated = system
        .admin(&[
            "--json",
            "policy",
            "update",
            "--policy-name",
            "reader",
            "--rights",
            "EnrollmentRead",
        ])
        .await?
        .json()?;
    assert_eq!(updated["rights"], json!(["EnrollmentRead"]));
    assert_eq!(updated["primaryKey"], rotated["primaryKey"]);
    let table = system.admin(&["policy", "list"]).await?;
    assert!(table.stdout.starts_with("NAME "), "{}", table.stdout);
    assert!(table
        .stdout
        .lines()
        .any(|l| l.starts_with("reader ") && l.ends_with("EnrollmentRead")));
    let shown = system
        .admin(&["--json", "policy", "show", "--policy-name", "reader"])
        .await?
        .json()?;
    assert_eq!(shown["primaryKey"], Value::Null, "keys are not shown");
    assert!(
        system
            .admin(&["policy", "delete", "--policy-name", "reader"])
            .await?
            .success
    );
    let last = system
        .admin(&[
            "policy",
            "delete",
            "--policy-name",
            "provisioningserviceowner",
        ])
        .await?;
    assert_failed(&last, &["(HTTP 400)"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_is_uploaded_and_verified_by_proof_of_possession() -> Result<()> {
    let system = System::start().await?;
    let root = certs::self_signed("fleet-root", true);
    let root_file = system.write("root.pem", &root.pem())?;
    let uploaded = system
        .admin(&[
            "--json",
            "certificate",
            "create",
            "--certificate-name",
            "fleet-root",
            "--path",
            arg(&root_file),
        ])
        .await?
        .json()?;
    assert_eq!(uploaded["isVerified"], false);
    assert_eq!(uploaded["info"]["subjectName"], "CN=fleet-root");

    let code = system
        .admin(&[
            "--json",
            "certificate",
            "generate-verification-code",
            "--certificate-name",
            "fleet-root",
        ])
        .await?
        .json()?;
    let code = code["verificationCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(code.len(), 48);
    let wrong = system.write(
        "wrong.pem",
        &certs::signed_by("not-the-code", false, &root).pem(),
    )?;
    let refused = system
        .admin(&[
            "certificate",
            "verify",
            "--certificate-name",
            "fleet-root",
            "--path",
            arg(&wrong),
        ])
        .await?;
    assert_failed(&refused, &["(HTTP 400)"]);
    let proof = system.write("proof.pem", &certs::signed_by(&code, false, &root).pem())?;
    let verified = system
        .admin(&[
            "--json",
            "certificate",
            "verify",
            "--certificate-name",
            "fleet-root",
            "--path",
            arg(&proof),
        ])
        .await?
        .json()?;
    assert_eq!(verified["isVerified"], true);

    let table = system.admin(&["certificate", "list"]).await?;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME        SUBJECT        VERIFIED"),
        "{}",
        table.stdout
    );
    assert!(
        lines[1].starts_with("fleet-root  CN=fleet-root  true"),
        "{}",
        table.stdout
    );

    // A replace with a stale etag is refused; delete with the current one.
    let stale = system
        .admin(&[
            "certificate",
            "update",
            "--certificate-name",
            "fleet-root",
            "--path",
            arg(&root_file),
            "--etag",
            "stale",
        ])
        .await?;
    assert_failed(&stale, &["error 412001", "etag did not match"]);
    let etag = verified["etag"].as_str().unwrap_or_default();
    let deleted = system
        .admin(&[
            "certificate",
            "delete",
            "--certificate-name",
            "fleet-root",
            "--etag",
            etag,
        ])
        .await?;
    assert!(deleted.success, "{}", deleted.stderr);
    let gone = system
        .admin(&["certificate", "show", "--certificate-name", "fleet-root"])
        .await?;
    assert_failed(&gone, &["error 404211"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_change_and_the_report_counts_billed_operations() -> Result<()> {
    let system = System::start().await?;
    let settings = system
        .admin(&["--json", "settings", "show"])
        .await?
        .json()?;
    assert_eq!(settings["defaultAllocationPolicy"], "hashed");
    let updated = system
        .admin(&[
            "--json",
            "settings",
            "update",
            "--synchronous-register",
            "true",
            "--default-allocation-policy",
            "geolatency",
        ])
        .await?
        .json()?;
    assert_eq!(updated["synchronousRegister"], true);
    assert_eq!(updated["defaultAllocationPolicy"], "geoLatency");
    let stale = system
        .admin(&[
            "settings",
            "update",
            "--synchronous-register",
            "false",
            "--etag",
            "stale",
        ])
        .await?;
    assert_failed(&stale, &["412001"]);

    for id in ["r-1", "r-2"] {
        assert!(
            system
                .admin(&["enrollment", "create", "--enrollment-id", id])
                .await?
                .success
        );
    }
    assert!(
        system
            .admin(&["enrollment", "show", "--enrollment-id", "r-1"])
            .await?
            .success
    );
    let report = system
        .admin(&["--json", "operations", "report"])
        .await?
        .json()?;
    assert_eq!(
        report["totals"],
        json!({"enrollmentCreate": 2, "enrollmentRead": 1})
    );
    assert_eq!(report["idScope"], system.tenant.id_scope.as_str());
    let table = system.admin(&["operations", "report"]).await?;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with(system.tenant.id_scope.as_str()),
        "{}",
        table.stdout
    );
    assert_eq!(
        lines[1..],
        [
            "OPERATION         COUNT",
            "enrollmentCreate  2",
            "enrollmentRead    1",
            "total             3"
        ]
    );
    let empty = system
        .admin(&[
            "--json",
            "operations",
            "report",
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            "2020-01-02T00:00:00Z",
        ])
        .await?
        .json()?;
    assert_eq!(empty["total"], 0);
    Ok(())
}
