//! Certificate issuance at registration (issue #17), server side, over real
//! HTTPS with a plain HTTP client written from the REST specification's
//! examples (`PUT …/registrations/{id}/register?api-version=2025-07-01-preview`
//! with `{"registrationId", "csr"}`; `registrationState.issuedCertificateChain`
//! in the operation's answer) — not `dps-client`. The CSR is built here with
//! rcgen. No official SDK sends a CSR yet, so this is the wire-shape test.
//!
//! Proven: the leaf carries the CSR's public key, CN = the device id and the
//! client-auth EKU, and chains to the tenant CA (`openssl verify`); the hub
//! identity (read from the emulator) is `selfSigned` with the leaf's
//! thumbprint; rollover replaces it and supersedes the old record, as does
//! a later registration without a CSR (the key back on the hub); revocation
//! lands in the CA's CRL (`openssl crl` and x509-parser); the
//! refusals are 400 `ArgumentInvalid` with nothing written; older
//! api-versions never see the feature.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::server::{SystemOptions, TestSystem};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use reqwest::Client;
use serde_json::{json, Value};
use x509_parser::prelude::FromDer as _;

use crate::service_client::{self, Service, OWNER};

const HUB: &str = "hub-a.test";
const PREVIEW: &str = "2025-07-01-preview";
const STABLE: &str = "2026-04-01";

/// A device speaking the specification's HTTPS API with a symmetric key.
struct Device<'a> {
    system: &'a TestSystem,
    http: Client,
    id: String,
    key: String,
}

impl<'a> Device<'a> {
    fn new(system: &'a TestSystem, id: &str, key: &str) -> Result<Self> {
        let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes())?;
        let http = Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .build()?;
        Ok(Device {
            system,
            http,
            id: id.to_owned(),
            key: key.to_owned(),
        })
    }

    fn token(&self) -> String {
        let scope = self.system.scope().to_string();
        create_token(
            &registration_resource(&scope, &self.id),
            &SymmetricKey::from_base64(&self.key).expect("key"),
            unix_now() + 3600,
            Some("registration"),
        )
    }

    fn url(&self, tail: &str, api_version: &str) -> String {
        format!(
            "https://{}/{}/registrations/{}{tail}?api-version={api_version}",
            self.system.device_host,
            self.system.scope(),
            self.id
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let response = request
            .header("authorization", self.token())
            .header("content-type", "application/json")
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `PUT …/register`; a 202 is polled to its final answer. Returns the
    /// final status code and body (for a refusal, the error body).
    async fn register(&self, body: &Value, api_version: &str) -> Result<(u16, Value)> {
        let put = self
            .http
            .put(self.url("/register", api_version))
            .body(body.to_string());
        let (status, answer) = self.send(put).await?;
        if status != 202 {
            return Ok((status, answer));
        }
        let operation = answer["operationId"]
            .as_str()
            .context("202 carries operationId")?
            .to_owned();
        for _ in 0..50 {
            let poll = self
                .http
                .get(self.url(&format!("/operations/{operation}"), api_version));
            let (status, answer) = self.send(poll).await?;
            if status != 202 {
                return Ok((status, answer));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("operation {operation} still assigning")
    }

    /// `POST …/registrations/{id}` (status lookup).
    async fn status(&self, body: &Value, api_version: &str) -> Result<(u16, Value)> {
        let post = self
            .http
            .post(self.url("", api_version))
            .body(body.to_string());
        self.send(post).await
    }
}

/// A CSR (base64 DER, as the specification's `csr`) for `cn` with `key`.
fn csr(cn: &str, key: &KeyPair) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    STANDARD.encode(params.serialize_request(key).expect("csr").der())
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn sha256_hex(der: &[u8]) -> String {
    upper_hex(openssl_sha256(der).as_slice())
}

fn openssl_sha256(der: &[u8]) -> Vec<u8> {
    // The hub's thumbprint form: SHA-256 of the DER, uppercase hex. openssl
    // computes it so the test does not trust the server's own arithmetic.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.der");
    std::fs::write(&path, der).expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .arg(&path)
        .output()
        .expect("openssl dgst");
    out.stdout
}

/// A generated CA `fleet-ca` and a policy `devices` accepting P-256 keys
/// for 30 days; its chain (PEM).
async fn authority(api: &Service) -> Result<String> {
    let ca = api
        .put(
            "/certificateAuthorities/fleet-ca",
            &json!({"mode": "generate", "commonName": "Fleet CA"}),
        )
        .await?;
    assert_eq!(ca.status, 200, "{:?}", ca.body);
    let policy = api
        .put(
            "/credentialPolicies/devices",
            &json!({"certificateAuthorityName": "fleet-ca", "validityPeriodInDays": 30,
                    "acceptedKeyTypes": ["ecdsaP256"]}),
        )
        .await?;
    assert_eq!(policy.status, 200, "{:?}", policy.body);
    Ok(ca.body["certificateChain"]
        .as_str()
        .context("chain")?
        .to_owned())
}

/// A symmetric-key enrollment, naming `policy` if given; its key.
async fn enroll(api: &Service, id: &str, policy: Option<&str>) -> Result<String> {
    let key = generate_key();
    let mut body = json!({"registrationId": id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key, "secondaryKey": generate_key()}}});
    if let Some(policy) = policy {
        body["credentialPolicyName"] = json!(policy);
    }
    let put = api.put(&format!("/enrollments/{id}"), &body).await?;
    assert_eq!(put.status, 200, "{:?}", put.body);
    Ok(key)
}

/// The issued chain of an answer, DER, leaf first.
fn chain_of(answer: &Value) -> Result<Vec<Vec<u8>>> {
    answer["registrationState"]["issuedCertificateChain"]
        .as_array()
        .with_context(|| format!("no issuedCertificateChain in {answer}"))?
        .iter()
        .map(|c| Ok(STANDARD.decode(c.as_str().context("string")?)?))
        .collect()
}

/// Check the leaf against the CSR key, the device id and the CA; its SHA-256 thumbprint.
fn check_leaf(chain: &[Vec<u8>], key: &KeyPair, device_id: &str, ca_pem: &str) -> Result<String> {
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])?;
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw(),
        "the CSR's key"
    );
    let cn = leaf.subject().iter_common_name().next().context("a CN")?;
    assert_eq!(cn.as_str()?, device_id);
    let eku = leaf.extended_key_usage()?.context("an EKU")?.value;
    assert!(eku.client_auth, "client authentication");
    assert!(!leaf.is_ca());
    assert_eq!(STANDARD.encode(&chain[1]), {
        let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())?;
        STANDARD.encode(ca.contents)
    });
    let dir = tempfile::tempdir()?;
    let ca_file = dir.path().join("ca.pem");
    let leaf_file = dir.path().join("leaf.pem");
    std::fs::write(&ca_file, ca_pem)?;
    std::fs::write(&leaf_file, pem(&chain[0]))?;
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca_file)
        .arg(&leaf_file)
        .output()?;
    assert!(
        verify.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(sha256_hex(&chain[0]))
}

/// The hub identity's primary thumbprint and authentication type.
fn hub_thumbprint(system: &TestSystem, device_id: &str) -> Result<(String, String)> {
    let device = system
        .hubs
        .device(HUB, device_id)
        .with_context(|| format!("{device_id} on the hub"))?;
    let device = serde_json::to_value(device)?;
    let auth = &device["authentication"];
    Ok((
        auth["x509Thumbprint"]["primaryThumbprint"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        auth["type"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_is_issued_rolled_over_revoked_and_listed_in_the_crl() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let ca_pem = authority(&api).await?;
    let key = enroll(&api, "dev-1", Some("devices")).await?;
    let device = Device::new(&system, "dev-1", &key)?;

    // First registration: the specification's body, the preview api-version.
    let first_key = p256();
    let (status, answer) = device
        .register(
            &json!({"registrationId": "dev-1", "csr": csr("dev-1", &first_key)}),
            PREVIEW,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "assigned", "{answer}");
    let chain = chain_of(&answer)?;
    assert_eq!(chain.len(), 2, "leaf then the tenant CA");
    let first = check_leaf(&chain, &first_key, "dev-1", &ca_pem)?;
    assert_eq!(
        hub_thumbprint(&system, "dev-1")?,
        (first.clone(), "selfSigned".to_owned())
    );

    // The status lookup shows the record, never the chain; a csr there is a 400.
    let (status, record) = device
        .status(&json!({"registrationId": "dev-1"}), PREVIEW)
        .await?;
    assert_eq!(status, 200, "{record}");
    assert!(record.get("issuedCertificateChain").is_none(), "{record}");
    let (status, refused) = device
        .status(
            &json!({"registrationId": "dev-1", "csr": csr("dev-1", &first_key)}),
            PREVIEW,
        )
        .await?;
    assert_eq!(
        (status, refused["errorCode"].as_i64()),
        (400, Some(400004)),
        "{refused}"
    );

    let (certs, statuses) = issued(&api, "dev-1").await?;
    assert_eq!(statuses, ["active"], "{certs:?}");
    assert_eq!(certs[0]["sha256Thumbprint"], first.as_str());
    assert_eq!(certs[0]["deviceId"], "dev-1");
    assert_eq!(certs[0]["certificateAuthorityName"], "fleet-ca");
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])?;
    let first_serial = leaf.raw_serial_as_string().replace(':', "").to_uppercase();
    assert_eq!(certs[0]["serialNumber"], first_serial.as_str());

    // Rollover at the stable api-version: a new key, a new certificate.
    let second_key = p256();
    let (status, answer) = device
        .register(
            &json!({"registrationId": "dev-1", "csr": csr("dev-1", &second_key)}),
            STABLE,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    let second_chain = chain_of(&answer)?;
    let second = check_leaf(&second_chain, &second_key, "dev-1", &ca_pem)?;
    assert_ne!(first, second);
    assert_eq!(
        hub_thumbprint(&system, "dev-1")?.0,
        second,
        "the hub has the new one"
    );
    let (certs, statuses) = issued(&api, "dev-1").await?;
    assert_eq!(statuses, ["active", "superseded"], "{certs:?}");
    let second_serial = certs[0]["serialNumber"]
        .as_str()
        .context("serial")?
        .to_owned();

    // Revoke the current one (tools print serials with colons: accepted).
    let colons: Vec<String> = second_serial
        .to_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let revoked = api
        .post(
            &format!(
                "/registrations/dev-1/issuedCertificates/{}/revoke",
                colons.join(":")
            ),
            None,
        )
        .await?;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(revoked.body["status"], "revoked");
    let unknown = api
        .post(
            "/registrations/dev-1/issuedCertificates/0BADC0DE/revoke",
            None,
        )
        .await?;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);

    // The CA's CRL lists it, signed by the CA.
    let crl = api.get("/certificateAuthorities/fleet-ca/crl").await?;
    assert_eq!(crl.status, 200);
    assert_eq!(crl.header("content-type"), Some("application/pkix-crl"));
    let crl_der = crl_bytes(&system, "fleet-ca").await?;
    let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&crl_der)?;
    let serials: Vec<String> = parsed
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string().replace(':', "").to_uppercase())
        .collect();
    assert_eq!(serials, vec![second_serial.clone()]);
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())?;
    parsed.verify_signature(ca.parse_x509()?.public_key())?;
    let dir = tempfile::tempdir()?;
    let crl_file = dir.path().join("fleet.crl");
    std::fs::write(&crl_file, &crl_der)?;
    let text = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&crl_file)
        .output()?;
    assert!(text.status.success());
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&second_serial),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // A revoked device re-registering (enrollment enabled) gets a new one…
    let third_key = p256();
    let (status, answer) = device
        .register(
            &json!({"registrationId": "dev-1", "csr": csr("dev-1", &third_key)}),
            STABLE,
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    let third = check_leaf(&chain_of(&answer)?, &third_key, "dev-1", &ca_pem)?;
    assert_eq!(hub_thumbprint(&system, "dev-1")?.0, third);

    // …and none once its enrollment is disabled.
    let mut enrollment = api.get("/enrollments/dev-1").await?.body;
    enrollment["provisioningStatus"] = json!("disabled");
    let disabled = api.put("/enrollments/dev-1", &enrollment).await?;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    let (_, answer) = device
        .register(
            &json!({"registrationId": "dev-1", "csr": csr("dev-1", &p256())}),
            STABLE,
        )
        .await?;
    assert_eq!(answer["status"], "disabled", "{answer}");
    assert!(answer["registrationState"]
        .get("issuedCertificateChain")
        .is_none());
    let (_, statuses) = issued(&api, "dev-1").await?;
    assert_eq!(statuses, ["active", "revoked", "superseded"]);

    // Enabled again, a registration without a csr puts the symmetric key
    // back on the hub identity: the last certificate is superseded at the
    // registration's time, the revoked one stays revoked.
    enrollment = api.get("/enrollments/dev-1").await?.body;
    enrollment["provisioningStatus"] = json!("enabled");
    let enabled = api.put("/enrollments/dev-1", &enrollment).await?;
    assert_eq!(enabled.status, 200, "{:?}", enabled.body);
    let (status, answer) = device
        .register(&json!({"registrationId": "dev-1"}), STABLE)
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "assigned", "{answer}");
    let state = &answer["registrationState"];
    assert!(state.get("issuedCertificateChain").is_none(), "{answer}");
    assert_eq!(hub_thumbprint(&system, "dev-1")?.1, "sas");
    let (certs, statuses) = issued(&api, "dev-1").await?;
    assert_eq!(
        statuses,
        ["superseded", "revoked", "superseded"],
        "{certs:?}"
    );
    assert_eq!(certs[0]["sha256Thumbprint"], third.as_str());
    let at = &certs[0]["supersededDateTimeUtc"];
    assert_eq!(at, &state["lastUpdatedDateTimeUtc"], "{certs:?}");
    assert!(certs[1]["supersededDateTimeUtc"].is_null(), "{certs:?}");
    system.stop().await;
    Ok(())
}

/// The certificates issued to registration `id` (newest first), and their
/// statuses.
async fn issued(api: &Service, id: &str) -> Result<(Vec<Value>, Vec<String>)> {
    let path = format!("/registrations/{id}/issuedCertificates");
    let listed = api.get(&path).await?;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let certs = listed.body.as_array().context("an array")?.clone();
    let statuses = certs
        .iter()
        .map(|c| c["status"].as_str().unwrap_or("").to_owned())
        .collect();
    Ok((certs, statuses))
}

/// The CRL's raw bytes (the JSON client reads text).
async fn crl_bytes(system: &TestSystem, name: &str) -> Result<Vec<u8>> {
    let owner = system
        .tenant
        .access_policy(OWNER)
        .context("the owner policy")?;
    let token = service_client::token(&system.service_host, OWNER, &owner.primary_key, 3600);
    let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes())?;
    let http = Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .build()?;
    let response = http
        .get(format!(
            "https://{}/certificateAuthorities/{name}/crl?api-version=2021-10-01",
            system.service_host
        ))
        .header("authorization", token)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    Ok(response.bytes().await?.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_write_nothing_and_old_api_versions_never_see_issuance() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    authority(&api).await?;
    let key = enroll(&api, "dev-2", Some("devices")).await?;
    let device = Device::new(&system, "dev-2", &key)?;

    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let good = csr("dev-2", &p256());
    let mut tampered = STANDARD.decode(&good)?;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let cases = [
        (
            json!({"registrationId": "dev-2", "csr": "not base64 at all!"}),
            "csr",
        ),
        (
            json!({"registrationId": "dev-2",
                   "csr": format!("-----BEGIN CERTIFICATE REQUEST-----\n{good}\n-----END CERTIFICATE REQUEST-----")}),
            "PEM",
        ),
        (
            json!({"registrationId": "dev-2", "csr": STANDARD.encode(&tampered)}),
            "signature",
        ),
        (
            json!({"registrationId": "dev-2", "csr": csr("dev-2", &p384)}),
            "not accepted",
        ),
        (
            json!({"registrationId": "dev-2", "csr": csr("someone-else", &p256())}),
            "CN",
        ),
    ];
    for (body, says) in &cases {
        let (status, answer) = device.register(body, PREVIEW).await?;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errorCode"].as_i64(), Some(400004), "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says:?} in {message}");
    }
    // Nothing was written: no hub identity, no record, no certificate.
    assert!(system.hubs.device(HUB, "dev-2").is_none());
    let (status, _) = device
        .status(&json!({"registrationId": "dev-2"}), PREVIEW)
        .await?;
    assert_eq!(status, 404);
    let listed = api.get("/registrations/dev-2/issuedCertificates").await?;
    assert_eq!(listed.body, json!([]));

    // A csr through an enrollment naming no credential policy.
    let plain_key = enroll(&api, "dev-3", None).await?;
    let plain = Device::new(&system, "dev-3", &plain_key)?;
    let (status, answer) = plain
        .register(
            &json!({"registrationId": "dev-3", "csr": csr("dev-3", &p256())}),
            STABLE,
        )
        .await?;
    assert_eq!(
        (status, answer["errorCode"].as_i64()),
        (400, Some(400004)),
        "{answer}"
    );
    assert!(answer["message"]
        .as_str()
        .unwrap_or_default()
        .contains("credentialPolicyName"));
    assert!(system.hubs.device(HUB, "dev-3").is_none());

    // An api-version older than issuance never sees it: the csr is not
    // read, the device registers with its key, the answer has no chain.
    let (status, answer) = device
        .register(
            &json!({"registrationId": "dev-2", "csr": good}),
            "2021-10-01",
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "assigned");
    assert!(
        answer["registrationState"]
            .get("issuedCertificateChain")
            .is_none(),
        "{answer}"
    );
    assert_eq!(hub_thumbprint(&system, "dev-2")?.1, "sas");
    assert!(issued(&api, "dev-2").await?.0.is_empty());

    // A policy an enrollment names cannot be deleted.
    let delete = api.delete("/credentialPolicies/devices").await?;
    assert_eq!(delete.status, 409, "{:?}", delete.body);
    system.stop().await;
    Ok(())
}
