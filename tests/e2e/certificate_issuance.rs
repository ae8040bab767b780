//! Certificate issuance at registration (issue #17) through `dps-client`:
//! devices onboarding with a symmetric key, an X.509 certificate or a TPM
//! send a CSR over HTTPS, MQTT or AMQP and leave with an operational certificate —
//! the CSR's key, CN = the assigned device id, client-auth EKU, a chain that
//! `openssl verify` accepts up to the tenant CA — whose thumbprint the hub
//! identity carries (read back with the official `azure-iothub` SDK).
//! Rollover, revocation with the CA's CRL, and the refusals follow. TPM
//! attestation has no MQTT form (as in Azure): TPM devices use HTTPS and AMQP.
//!
//! Everything is set up as an administrator would: the CA, the policy and
//! the enrollments through `dps_client::admin` (the library behind
//! `dps-admin`) over the service API.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_client::admin::{
    AdminClient, CertificateAuthoritySource, Collection, ConnectionString, Credentials,
};
use dps_client::{
    CertificateRequest, ClientError, Credential, KeyType, ProvisioningClient, Registration,
    TlsTrust, Tpm2Tools, TpmDevice as _, Transport,
};
use dps_e2e::certs;
use dps_e2e::node::{self, NodeScript};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_e2e::swtpm::{missing_tools, SoftwareTpm};
use serde_json::{json, Value};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::service_client::OWNER;

const HUB: &str = "hub-a.test";
const CA: &str = "fleet-ca";
const POLICY: &str = "devices";

/// The tenant owner's admin client (what `dps-admin` uses).
fn admin(system: &TestSystem) -> Result<AdminClient> {
    let key = &system
        .tenant
        .access_policy(OWNER)
        .context("the test tenant has an owner policy")?
        .primary_key;
    let connection = ConnectionString::parse(&format!(
        "HostName={};SharedAccessKeyName={OWNER};SharedAccessKey={key}",
        system.service_host
    ))?;
    let trust = TlsTrust::new(false, &[system.server.trust_pem()])?;
    Ok(AdminClient::new(
        system.service_host.clone(),
        Credentials::Policy(connection),
        &trust,
    )?)
}

/// A generated CA and a policy accepting P-256 and RSA-2048 keys; the
/// CA's certificate (PEM) is returned.
async fn setup_issuance(admin: &AdminClient) -> Result<String> {
    let ca = admin
        .create_certificate_authority(
            CA,
            &CertificateAuthoritySource::Generate {
                common_name: "Fleet devices CA".to_owned(),
            },
        )
        .await?;
    admin
        .put_credential_policy(
            POLICY,
            &json!({"certificateAuthorityName": CA, "validityPeriodInDays": 30,
                "acceptedKeyTypes": ["ecdsaP256", "rsa2048"]}),
            None,
        )
        .await?;
    ca["certificateChain"]
        .as_str()
        .map(str::to_owned)
        .context("the CA's chain")
}

/// An individual enrollment naming the policy (`attestation` as given).
async fn enroll(admin: &AdminClient, id: &str, attestation: Value) -> Result<()> {
    admin
        .put_record(
            Collection::Enrollments,
            &json!({"registrationId": id, "attestation": attestation,
                "credentialPolicyName": POLICY}),
            None,
        )
        .await?;
    Ok(())
}

fn client(
    system: &TestSystem,
    id: &str,
    credential: Credential,
) -> dps_client::ProvisioningClientBuilder {
    ProvisioningClient::builder(system.device_host.clone(), system.scope().to_string(), id)
        .credential(credential)
        .system_roots(false)
        .trust_ca_pem(system.server.trust_pem().to_owned())
        .poll_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(60))
}

/// Every property the issue asks of an issued certificate, checked on the
/// registration a device got: returns the leaf's SHA-256 thumbprint.
fn check_issued(dir: &Path, registration: &Registration, ca_pem: &str) -> Result<String> {
    let issued = registration
        .issued_certificate
        .as_ref()
        .context("no certificate issued")?;
    let chain = registration
        .raw
        .issued_certificate_chain
        .as_ref()
        .context("no issuedCertificateChain in the answer")?;
    assert_eq!(issued.chain_der.len(), chain.len());
    let (_, leaf) = X509Certificate::from_der(&issued.chain_der[0])?;
    // The CSR's key: the leaf's public key is the one of the key kept on the device.
    let device_key = rcgen::KeyPair::from_pem(&issued.private_key_pem)?;
    assert_eq!(
        leaf.public_key().raw,
        device_key.public_key_der().as_slice()
    );
    // CN = the assigned device id.
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .context("no CN")?;
    assert_eq!(cn, registration.device_id);
    // Client authentication EKU.
    let eku = leaf
        .extended_key_usage()?
        .context("no extended key usage")?;
    assert!(eku.value.client_auth, "{:?}", eku.value);
    // The chain ends at the tenant CA: openssl says so.
    let name = &registration.device_id;
    let leaf_file = dir.join(format!("{name}.pem"));
    let chain_file = dir.join(format!("{name}-chain.pem"));
    let ca_file = dir.join(format!("{name}-ca.pem"));
    let first_end = issued
        .chain_pem
        .find("-----END CERTIFICATE-----")
        .context("PEM")?
        + 26;
    std::fs::write(&leaf_file, &issued.chain_pem[..first_end])?;
    std::fs::write(&chain_file, &issued.chain_pem)?;
    std::fs::write(&ca_file, ca_pem)?;
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca_file)
        .arg("-untrusted")
        .arg(&chain_file)
        .arg("-purpose")
        .arg("sslclient")
        .arg(&leaf_file)
        .output()
        .context("running openssl")?;
    let said = String::from_utf8_lossy(&verify.stdout).into_owned()
        + &String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.contains(": OK"), "{said}");
    // The connection string a device uses now is the X.509 form.
    assert_eq!(
        registration.hub_connection_string.as_deref(),
        Some(format!("HostName={HUB};DeviceId={name};x509=true").as_str())
    );
    Ok(issued.thumbprint.clone())
}

/// The hub identities' primary and secondary thumbprints, as the official
/// `azure-iothub` SDK reads them from the hub emulator (`Registry.get`).
fn hub_thumbprints(system: &TestSystem, device_ids: &[&str]) -> Result<Value> {
    let hub_ca = system.dir.path().join("hub-ca.pem");
    let output = node::run(&NodeScript {
        source: HUB_SCRIPT,
        env: vec![
            (
                "NODE_EXTRA_CA_CERTS".to_owned(),
                hub_ca.display().to_string(),
            ),
            (
                "HUB_CONNECTION_STRING".to_owned(),
                system.hubs.connection_string(HUB).context("the hub")?,
            ),
            ("HUB_HOST".to_owned(), HUB.to_owned()),
            ("HUB_PORT".to_owned(), system.hubs.addr().port().to_string()),
            ("DEVICE_IDS".to_owned(), device_ids.join(",")),
        ],
        timeout: Duration::from_secs(60),
    })?;
    if output.result["error"].is_string() {
        bail!("azure-iothub: {}\n{}", output.result, output.stderr);
    }
    Ok(output.result)
}

/// Reads each device with `Registry.get`; the emulator listens on a port
/// of its own, so the hub's host name is sent there (SNI and the SAS
/// audience keep the name).
const HUB_SCRIPT: &str = r#"
const https = require('https');
const original = https.request;
https.request = function (options, callback) {
  if (options && typeof options === 'object' && (options.host === process.env.HUB_HOST || options.hostname === process.env.HUB_HOST)) {
    options = Object.assign({}, options, { host: '127.0.0.1', hostname: '127.0.0.1',
      port: Number(process.env.HUB_PORT), servername: process.env.HUB_HOST });
  }
  return original.call(https, options, callback);
};
const { Registry } = require('azure-iothub');
const registry = Registry.fromConnectionString(process.env.HUB_CONNECTION_STRING);
(async () => {
  const out = {};
  for (const id of process.env.DEVICE_IDS.split(',')) {
    const device = (await registry.get(id)).responseBody;
    out[id] = { type: device.authentication.type,
      primary: device.authentication.x509Thumbprint.primaryThumbprint,
      secondary: device.authentication.x509Thumbprint.secondaryThumbprint };
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ error: String(e && e.message || e) })); });
"#;

fn assert_hub_thumbprint(hub: &Value, device_id: &str, thumbprint: &str) {
    let device = &hub[device_id];
    assert_eq!(device["type"], "selfSigned", "{hub}");
    assert_eq!(device["primary"].as_str(), Some(thumbprint), "{hub}");
    assert_eq!(device["secondary"].as_str(), Some(thumbprint), "{hub}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_key_and_x509_devices_leave_with_certificates_over_https_mqtt_and_amqp(
) -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let admin = admin(&system)?;
    let ca_pem = setup_issuance(&admin).await?;
    let mut thumbprints = Vec::new();
    for (transport, suffix, key_type) in [
        (Transport::Https, "https", KeyType::EcdsaP256),
        (Transport::Mqtt, "mqtt", KeyType::Rsa2048),
        // The register body is shared by every transport: AMQP carries the csr too.
        (Transport::Amqp, "amqp", KeyType::EcdsaP256),
    ] {
        // A symmetric-key onboarding credential.
        let id = format!("iss-sym-{suffix}");
        let key = dps_attestation::keys::generate_key();
        enroll(
            &admin,
            &id,
            json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}),
        )
        .await?;
        let registration = client(&system, &id, Credential::symmetric_key(&key)?)
            .transport(transport)
            .issue_certificate(key_type)
            .build()?
            .register()
            .await?;
        assert_eq!(registration.assigned_hub, HUB);
        assert_eq!(
            registration.issued_certificate.as_ref().map(|c| c.key_type),
            Some(key_type)
        );
        thumbprints.push((
            id.clone(),
            check_issued(system.dir.path(), &registration, &ca_pem)?,
        ));

        // An X.509 onboarding credential (a bootstrap certificate).
        let id = format!("iss-x509-{suffix}");
        let bootstrap = certs::self_signed(&id, false);
        enroll(
            &admin,
            &id,
            json!({"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": bootstrap.pem()}}}}),
        )
        .await?;
        let credential = Credential::X509 {
            chain_pem: bootstrap.pem(),
            key_pem: bootstrap.key_pem(),
        };
        let registration = client(&system, &id, credential)
            .transport(transport)
            .issue_certificate(key_type)
            .build()?
            .register()
            .await?;
        let thumbprint = check_issued(system.dir.path(), &registration, &ca_pem)?;
        // The operational certificate is not the bootstrap one.
        assert_ne!(
            registration
                .issued_certificate
                .as_ref()
                .map(|c| c.chain_der[0].clone()),
            Some(bootstrap.cert.der().to_vec())
        );
        thumbprints.push((id, thumbprint));
    }
    let ids: Vec<&str> = thumbprints.iter().map(|(id, _)| id.as_str()).collect();
    let hub = hub_thumbprints(&system, &ids)?;
    for (id, thumbprint) in &thumbprints {
        assert_hub_thumbprint(&hub, id, thumbprint);
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_device_leaves_with_a_certificate() -> Result<()> {
    if let Some(why) = missing_tools() {
        // Same rule as tpm_client.rs: the TPM tools are a host dependency.
        eprintln!("SKIPPED TPM issuance test: {why}");
        return Ok(());
    }
    let swtpm = SoftwareTpm::start()?;
    let tpm = Arc::new(Tpm2Tools::new(swtpm.tcti())?);
    let (endorsement_key, id) = {
        let tpm = tpm.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, ClientError>((tpm.endorsement_key()?, tpm.registration_id()?))
        })
        .await??
    };
    let system = TestSystem::start(SystemOptions::default()).await?;
    let admin = admin(&system)?;
    let ca_pem = setup_issuance(&admin).await?;
    enroll(
        &admin,
        &id,
        json!({"type": "tpm", "tpm": {"endorsementKey": BASE64.encode(&endorsement_key)}}),
    )
    .await?;
    // TPM attestation has no MQTT form (as in Azure): HTTPS, then AMQP
    // (whose SASL exchange carries the TPM challenge), which rolls over.
    let mut thumbprint = String::new();
    for transport in [Transport::Https, Transport::Amqp] {
        let registration = client(&system, &id, Credential::Tpm(tpm.clone()))
            .transport(transport)
            .timeout(Duration::from_secs(120))
            .issue_certificate(KeyType::EcdsaP256)
            .build()?
            .register()
            .await?;
        let issued = check_issued(system.dir.path(), &registration, &ca_pem)?;
        assert_ne!(issued, thumbprint, "{transport:?} rolled over");
        thumbprint = issued;
    }
    let hub = hub_thumbprints(&system, &[id.as_str()])?;
    assert_hub_thumbprint(&hub, &id, &thumbprint);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollover_replaces_the_hub_thumbprint_and_revocation_reaches_the_crl() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let admin = admin(&system)?;
    let ca_pem = setup_issuance(&admin).await?;
    let id = "iss-roll";
    let key = dps_attestation::keys::generate_key();
    enroll(
        &admin,
        id,
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}),
    )
    .await?;
    let device = client(&system, id, Credential::symmetric_key(&key)?)
        .issue_certificate(KeyType::EcdsaP256)
        .build()?;
    let first = device.register().await?;
    let first_thumbprint = check_issued(system.dir.path(), &first, &ca_pem)?;
    // Registering again (over MQTT this time) with a new key rolls over.
    let second = client(&system, id, Credential::symmetric_key(&key)?)
        .transport(Transport::Mqtt)
        .issue_certificate(KeyType::EcdsaP256)
        .build()?
        .register()
        .await?;
    let second_thumbprint = check_issued(system.dir.path(), &second, &ca_pem)?;
    assert_ne!(first_thumbprint, second_thumbprint);
    let (first_issued, second_issued) = (
        first.issued_certificate.as_ref().context("first")?,
        second.issued_certificate.as_ref().context("second")?,
    );
    assert_ne!(first_issued.private_key_pem, second_issued.private_key_pem);
    let hub = hub_thumbprints(&system, &[id])?;
    assert_hub_thumbprint(&hub, id, &second_thumbprint);

    // The service lists both, newest first; the first is superseded.
    let listed = admin.list_issued_certificates(id).await?;
    let listed = listed.as_array().context("a JSON array")?;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["sha256Thumbprint"], second_thumbprint.as_str());
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[1]["sha256Thumbprint"], first_thumbprint.as_str());
    assert_eq!(listed[1]["status"], "superseded");

    // Revoking the active one puts its serial on the CA's CRL, signed by the CA.
    let serial = listed[0]["serialNumber"]
        .as_str()
        .context("serial")?
        .to_owned();
    let revoked = admin.revoke_issued_certificate(id, &serial).await?;
    assert_eq!(revoked["status"], "revoked");
    let crl = admin.get_crl(CA).await?;
    let crl_file = system.dir.path().join("fleet.crl");
    let ca_file = system.dir.path().join("fleet-ca.pem");
    std::fs::write(&crl_file, &crl)?;
    std::fs::write(&ca_file, &ca_pem)?;
    let text = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-CAfile"])
        .arg(&ca_file)
        .arg("-in")
        .arg(&crl_file)
        .output()?;
    let said =
        String::from_utf8_lossy(&text.stdout).into_owned() + &String::from_utf8_lossy(&text.stderr);
    assert!(text.status.success(), "{said}");
    assert!(said.contains("verify OK"), "{said}");
    let on_crl = said
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number:"))
        .map(|s| s.trim().replace(':', "").to_ascii_uppercase())
        .any(|s| s.trim_start_matches('0') == serial.trim_start_matches('0'));
    assert!(on_crl, "serial {serial} not on the CRL:\n{said}");

    // The enrollment is still enabled: the next registration gets a new one.
    let third = device.register().await?;
    let third_thumbprint = check_issued(system.dir.path(), &third, &ca_pem)?;
    assert_ne!(third_thumbprint, second_thumbprint);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_service_cannot_issue_are_refused_with_the_specification_codes() -> Result<()>
{
    let system = TestSystem::start(SystemOptions::default()).await?;
    let admin = admin(&system)?;
    setup_issuance(&admin).await?;
    // A policy that takes P-256 keys only.
    admin
        .put_credential_policy(
            "p256-only",
            &json!({"certificateAuthorityName": CA, "acceptedKeyTypes": ["ecdsaP256"]}),
            None,
        )
        .await?;
    let key = dps_attestation::keys::generate_key();
    let attestation =
        json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": key}});
    // No credential policy on the enrollment.
    admin
        .put_record(
            Collection::Enrollments,
            &json!({"registrationId": "iss-no-policy", "attestation": attestation}),
            None,
        )
        .await?;
    admin
        .put_record(
            Collection::Enrollments,
            &json!({"registrationId": "iss-rsa-refused", "attestation": attestation,
                "credentialPolicyName": "p256-only"}),
            None,
        )
        .await?;
    enroll(&admin, "iss-wrong-cn", attestation.clone()).await?;

    for transport in [Transport::Https, Transport::Mqtt] {
        let cases = [
            (
                "iss-no-policy",
                client(&system, "iss-no-policy", Credential::symmetric_key(&key)?)
                    .issue_certificate(KeyType::EcdsaP256),
            ),
            (
                "iss-rsa-refused",
                client(&system, "iss-rsa-refused", Credential::symmetric_key(&key)?)
                    .issue_certificate(KeyType::Rsa2048),
            ),
            // A CSR whose subject is another device.
            (
                "iss-wrong-cn",
                client(&system, "iss-wrong-cn", Credential::symmetric_key(&key)?)
                    .certificate_request(CertificateRequest::generate(
                        KeyType::EcdsaP256,
                        "someone-else",
                    )?),
            ),
        ];
        for (id, builder) in cases {
            let error = builder
                .transport(transport)
                .build()?
                .register()
                .await
                .expect_err(id);
            assert_eq!(
                error.error_code(),
                Some(400004),
                "{id} over {transport:?}: {error:?}"
            );
            assert!(!error.is_transient(), "{error:?}");
            // Nothing half-written: no hub identity, no certificate recorded.
            assert!(system.hubs.device(HUB, id).is_none(), "{id}");
            let listed = admin.list_issued_certificates(id).await;
            assert!(
                listed
                    .as_ref()
                    .map_or(true, |l| l.as_array().is_some_and(Vec::is_empty)),
                "{id}: {listed:?}"
            );
        }
    }

    // An api-version from before issuance cannot carry a csr: the client
    // says so instead of sending a field the service would not read.
    let error = client(&system, "iss-no-policy", Credential::symmetric_key(&key)?)
        .api_version("2021-10-01")
        .issue_certificate(KeyType::EcdsaP256)
        .build()
        .expect_err("an old api-version");
    assert!(matches!(error, ClientError::Config { .. }), "{error:?}");
    system.stop().await;
    Ok(())
}
