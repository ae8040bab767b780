//! `certificate-authority`, `credential-policy`, `issued-certificate` and
//! `--credential-policy` on enrollments: the whole administrator's side of
//! certificate issuance, with one device registering in between.

use std::time::Duration;

use anyhow::{Context as _, Result};
use dps_client::{Credential, KeyType, ProvisioningClient};
use dps_e2e::certs;

use crate::support::{arg, assert_failed, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sets_up_issuance_lists_and_revokes() -> Result<()> {
    let system = System::start().await?;
    // Three ways to get a CA; no answer ever carries a key.
    let generated = system
        .admin(&[
            "--json",
            "ca",
            "create",
            "--name",
            "fleet-ca",
            "--common-name",
            "Fleet CA",
        ])
        .await?
        .json()?;
    assert_eq!(generated["name"], "fleet-ca");
    let ca_pem = generated["certificateChain"]
        .as_str()
        .context("chain")?
        .to_owned();
    let own = certs::self_signed("Own issuing CA", true);
    let (own_cert, own_key) = (
        system.write("own.pem", &own.pem())?,
        system.write("own.key", &own.key_pem())?,
    );
    let imported = system
        .admin(&[
            "certificate-authority",
            "create",
            "--name",
            "own-ca",
            "--import-cert",
            arg(&own_cert),
            "--import-key",
            arg(&own_key),
        ])
        .await?;
    assert!(imported.success, "{}", imported.stderr);
    let under_root = system
        .admin(&[
            "--json",
            "ca",
            "create",
            "--name",
            "under-root",
            "--root-cert",
            arg(&own_cert),
            "--root-key",
            arg(&own_key),
        ])
        .await?;
    assert!(under_root.success, "{}", under_root.stderr);
    let listed = system.admin(&["certificate-authority", "list"]).await?;
    for run in [&imported, &under_root, &listed] {
        assert!(!run.stdout.contains("PRIVATE KEY"), "{}", run.stdout);
    }
    for name in ["fleet-ca", "own-ca", "under-root"] {
        assert!(listed.stdout.contains(name), "{}", listed.stdout);
    }

    // The policy, then an update that keeps what it does not name.
    let policy = system
        .admin(&[
            "--json",
            "credential-policy",
            "create",
            "--name",
            "devices",
            "--ca-name",
            "fleet-ca",
            "--validity-days",
            "90",
            "--key-types",
            "ecdsaP256,rsa2048",
        ])
        .await?
        .json()?;
    assert_eq!(policy["certificateAuthorityName"], "fleet-ca");
    let updated = system
        .admin(&[
            "--json",
            "credential-policy",
            "update",
            "--name",
            "devices",
            "--validity-days",
            "7",
        ])
        .await?
        .json()?;
    assert_eq!(updated["validityPeriodInDays"], 7);
    assert_eq!(updated["certificateAuthorityName"], "fleet-ca");
    assert_eq!(
        updated["acceptedKeyTypes"],
        serde_json::json!(["ecdsaP256", "rsa2048"])
    );
    let table = system.admin(&["credential-policy", "list"]).await?;
    assert!(table.stdout.contains("VALIDITY DAYS"), "{}", table.stdout);

    // An enrollment naming it, and its device asking for a certificate.
    let key = dps_attestation::keys::generate_key();
    let enrollment = system
        .admin(&[
            "--json",
            "enrollment",
            "create",
            "--registration-id",
            "adm-dev",
            "--attestation-type",
            "symmetrickey",
            "--primary-key",
            &key,
            "--credential-policy",
            "devices",
        ])
        .await?
        .json()?;
    assert_eq!(enrollment["credentialPolicyName"], "devices");
    let registration = ProvisioningClient::builder(
        system
            .server
            .device_addr()
            .context("device listener")?
            .to_string(),
        system.tenant.id_scope.to_string(),
        "adm-dev",
    )
    .credential(Credential::symmetric_key(&key)?)
    .system_roots(false)
    .trust_ca_pem(system.server.trust_pem().to_owned())
    .poll_interval(Duration::from_millis(20))
    .issue_certificate(KeyType::EcdsaP256)
    .build()?
    .register()
    .await?;
    let issued = registration
        .issued_certificate
        .context("a certificate issued")?;

    let listed = system
        .admin(&[
            "--json",
            "issued-certificate",
            "list",
            "--registration-id",
            "adm-dev",
        ])
        .await?
        .json()?;
    assert_eq!(listed[0]["sha256Thumbprint"], issued.thumbprint.as_str());
    assert_eq!(listed[0]["status"], "active");
    let serial = listed[0]["serialNumber"].as_str().context("serial")?;
    let table = system
        .admin(&["issued-certificate", "list", "--registration-id", "adm-dev"])
        .await?;
    assert!(table.stdout.contains(serial), "{}", table.stdout);
    let revoked = system
        .admin(&[
            "--json",
            "issued-certificate",
            "revoke",
            "--registration-id",
            "adm-dev",
            "--serial-number",
            serial,
        ])
        .await?
        .json()?;
    assert_eq!(revoked["status"], "revoked");

    // The CRL, checked by openssl against the CA.
    let crl = system.dir.path().join("fleet.crl");
    let written = system
        .admin(&["ca", "crl", "--name", "fleet-ca", "--out", arg(&crl)])
        .await?;
    assert!(written.success, "{}", written.stderr);
    let ca_file = system.write("fleet-ca.pem", &ca_pem)?;
    let text = std::process::Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-noout",
            "-text",
            "-in",
            arg(&crl),
            "-CAfile",
            arg(&ca_file),
        ])
        .output()?;
    let said =
        String::from_utf8_lossy(&text.stdout).into_owned() + &String::from_utf8_lossy(&text.stderr);
    assert!(said.contains("verify OK"), "{said}");
    assert!(
        said.to_ascii_uppercase()
            .replace(':', "")
            .contains(serial.trim_start_matches('0')),
        "{serial} not on the CRL: {said}"
    );

    // What is in use cannot be deleted: the policy (named by the
    // enrollment), the CA (named by the policy).
    let refused = system
        .admin(&["credential-policy", "delete", "--name", "devices"])
        .await?;
    assert_failed(&refused, &["409"]);
    let refused = system
        .admin(&["ca", "delete", "--name", "fleet-ca"])
        .await?;
    assert_failed(&refused, &["409"]);
    let deleted = system.admin(&["ca", "delete", "--name", "own-ca"]).await?;
    assert!(deleted.success, "{}", deleted.stderr);
    Ok(())
}
