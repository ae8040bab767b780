//! `--issue-certificate` of `register` and `swarm` through the binary: the
//! files it writes, and a swarm that creates (and removes) its own CA and
//! credential policy.

use std::os::unix::fs::PermissionsExt as _;

use anyhow::{Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::tenant::OWNER_POLICY;
use serde_json::json;

use crate::transports::swarm_args;
use crate::{common, dps_device};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_writes_the_issued_chain_and_a_private_key_only_its_owner_reads() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    // The CA and the policy as an administrator makes them: dps-admin's library.
    let admin = dps_client::admin::AdminClient::new(
        system.service_host.clone(),
        dps_client::admin::Credentials::Policy(dps_client::admin::ConnectionString::parse(
            &system
                .tenant
                .connection_string(OWNER_POLICY)
                .context("owner policy")?,
        )?),
        &dps_client::TlsTrust::new(false, &[system.server.trust_pem()])?,
    )?;
    admin
        .create_certificate_authority(
            "cli-ca",
            &dps_client::admin::CertificateAuthoritySource::Generate {
                common_name: "CLI CA".to_owned(),
            },
        )
        .await?;
    admin
        .put_credential_policy("cli", &json!({"certificateAuthorityName": "cli-ca"}), None)
        .await?;
    let key = generate_key();
    admin
        .put_record(
            dps_client::admin::Collection::Enrollments,
            &json!({"registrationId": "cli-iss", "attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": key}}, "credentialPolicyName": "cli"}),
            None,
        )
        .await?;

    let cert_out = system.dir.path().join("cli-iss.pem");
    let key_out = system.dir.path().join("cli-iss.key");
    // An existing, world-readable file is narrowed before the key goes in.
    std::fs::write(&key_out, "old")?;
    std::fs::set_permissions(&key_out, std::fs::Permissions::from_mode(0o644))?;
    let mut args = vec!["register".to_owned()];
    args.extend(common(&system));
    args.extend(
        [
            "--registration-id",
            "cli-iss",
            "--key",
            &key,
            "--issue-certificate",
            "--key-type",
            "rsa2048",
            "--cert-out",
            cert_out.to_str().context("UTF-8 path")?,
            "--key-out",
            key_out.to_str().context("UTF-8 path")?,
        ]
        .map(str::to_owned),
    );
    let (ok, out) = dps_device(args).await?;
    assert!(ok, "{out}");
    assert_eq!(
        out["hubConnectionString"],
        "HostName=hub-a.test;DeviceId=cli-iss;x509=true"
    );
    assert_eq!(out["issuedCertificate"]["keyType"], "rsa2048", "{out}");
    // The JSON output never carries the private key.
    assert!(!out.to_string().contains("PRIVATE KEY"), "{out}");

    let chain = std::fs::read_to_string(&cert_out)?;
    let key_pem = std::fs::read_to_string(&key_out)?;
    assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"), "{chain}");
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let mode = std::fs::metadata(&key_out)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // The leaf is the key's and names the device: openssl reads both files.
    let openssl = |args: &[&str]| -> Result<String> {
        let output = std::process::Command::new("openssl").args(args).output()?;
        anyhow::ensure!(output.status.success(), "openssl {args:?} failed");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let cert_path = cert_out.to_str().context("UTF-8 path")?;
    let key_path = key_out.to_str().context("UTF-8 path")?;
    assert_eq!(
        openssl(&["x509", "-in", cert_path, "-noout", "-pubkey"])?,
        openssl(&["pkey", "-in", key_path, "-pubout"])?
    );
    let subject = openssl(&[
        "x509", "-in", cert_path, "-noout", "-subject", "-nameopt", "RFC2253",
    ])?;
    assert_eq!(subject.trim(), "subject=CN=cli-iss");
    let hub = system
        .hubs
        .device("hub-a.test", "cli-iss")
        .context("device on the hub")?;
    let thumbprint = hub
        .authentication
        .and_then(|a| a.x509_thumbprint)
        .and_then(|t| t.primary_thumbprint)
        .context("a selfSigned identity")?;
    assert_eq!(out["issuedCertificate"]["thumbprint"], thumbprint.as_str());
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuing_swarm_creates_its_ca_and_policy_and_cleans_up() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let mut args = swarm_args(&system, "https", "isw", 6);
    args.extend(
        [
            "--mix",
            "symmetric=1,group=1,x509=1",
            "--issue-certificate",
            "--poll-interval-ms",
            "0",
        ]
        .map(str::to_owned),
    );
    let (ok, out) = dps_device(args).await?;
    assert!(ok, "{out}");
    assert_eq!(out["succeeded"], 6, "{out}");
    assert_eq!(out["failed"], 0, "{out}");
    // --cleanup removed the policy and then the CA.
    let store = system.server.store();
    assert!(store
        .certificate_authority(system.scope(), "isw-ca")
        .await?
        .is_none());
    system.stop().await;
    Ok(())
}
