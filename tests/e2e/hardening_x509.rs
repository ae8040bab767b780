//! X.509 attestation under attack (issue #15, findings 1 and 11), end to
//! end: chain bombs presented as TLS client chains do not delay other
//! devices, and an uploaded CA becomes verified only by proof of possession.

use std::time::{Duration, Instant};

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::certs;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ED25519};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::service_client::Service;

/// rustls refuses handshake messages over 64 KiB: a bomb stays below.
const HANDSHAKE_BYTES: usize = 60 * 1024;

/// A TLS client identity whose chain is a same-subject bomb.
struct Bomb {
    identity_pem: String,
    certificates: usize,
}

/// Up to `cas` Ed25519 CA certificates all named `bomb`, each signed by the
/// one before (the first self-signed), and a leaf `common_name` signed by
/// the last; presented leaf first, then the CAs first to last, so that a
/// builder trying every same-named candidate in order finds each real issuer
/// last (about cas²/2 signature checks before issue #15).
fn same_subject_bomb(common_name: &str, cas: usize) -> Result<Bomb> {
    let ca = || -> Result<CertificateParams> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "bomb");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ok(params)
    };
    let mut keys = vec![KeyPair::generate_for(&PKCS_ED25519)?];
    let mut issued = vec![ca()?.self_signed(&keys[0])?];
    let mut bytes = issued[0].der().len();
    while issued.len() < cas && bytes < HANDSHAKE_BYTES - 2048 {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let last = issued.len() - 1;
        let cert = ca()?.signed_by(&key, &issued[last], &keys[last])?;
        bytes += cert.der().len() + 8;
        keys.push(key);
        issued.push(cert);
    }
    let mut leaf_params = CertificateParams::new(Vec::<String>::new())?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let leaf_key = KeyPair::generate_for(&PKCS_ED25519)?;
    let last = issued.len() - 1;
    let leaf = leaf_params.signed_by(&leaf_key, &issued[last], &keys[last])?;
    let mut identity_pem = leaf_key.serialize_pem() + &leaf.pem();
    for cert in &issued {
        identity_pem.push_str(&cert.pem());
    }
    Ok(Bomb {
        identity_pem,
        certificates: issued.len() + 1,
    })
}

fn client(system: &TestSystem, identity: Option<&str>) -> Result<Client> {
    let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes())?;
    let mut builder = Client::builder().use_rustls_tls().add_root_certificate(ca);
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes())?);
    }
    Ok(builder.build()?)
}

async fn register(
    http: &Client,
    system: &TestSystem,
    id: &str,
    token: Option<&str>,
) -> Result<(StatusCode, Value)> {
    let url = format!(
        "https://{}/{}/registrations/{id}/register?api-version=2019-03-31",
        system.device_host,
        system.scope()
    );
    let mut request = http
        .put(url)
        .header("content-type", "application/json")
        .body(json!({ "registrationId": id }).to_string());
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// A CA certificate entry of the test tenant, put straight into the store.
fn ca_entry(name: &str, pem: String, is_verified: bool) -> CaCertificate {
    CaCertificate {
        name: name.to_owned(),
        certificate: pem,
        info: None,
        is_verified,
        verification_code: None,
        etag: ETag::generate(),
        created: chrono::Utc::now(),
        updated: chrono::Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_device_stays_fast_while_chain_bombs_are_in_flight() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();

    // An X.509 group (all the attacker needs is its ID scope)…
    let root = certs::self_signed("hardening-root", true);
    let mut tenant = system.tenant.clone();
    tenant
        .ca_certificates
        .push(ca_entry("hardening-root", root.pem(), true));
    system
        .server
        .store()
        .replace_tenant(tenant, Precondition::None)
        .await?;
    let group = EnrollmentGroup::from_json(
        json!({"enrollmentGroupId": "x509-group", "attestation": {"type": "x509",
            "x509": {"caReferences": {"primary": "hardening-root"}}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment_group(system.scope(), group, Precondition::None)
        .await?;
    // …and a healthy symmetric-key device.
    let key = generate_key();
    let enrollment = IndividualEnrollment::from_json(
        json!({"registrationId": "healthy", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": key}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await?;
    let token = create_token(
        &registration_resource(&scope, "healthy"),
        &SymmetricKey::from_base64(&key)?,
        unix_now() + 3600,
        Some("registration"),
    );
    let healthy = client(&system, None)?;
    let (status, answer) = register(&healthy, &system, "healthy", Some(&token)).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Eight bombs: four as large as the TLS handshake allows, four within
    // the chain-length cap (they reach the verification pool).
    let mut bombs = Vec::new();
    for i in 0..8 {
        let cas = if i < 4 { 240 } else { 7 };
        let id = format!("bomb-{i}");
        let bomb = same_subject_bomb(&id, cas)?;
        if i == 0 {
            assert!(
                bomb.certificates > 150,
                "{} certificates",
                bomb.certificates
            );
        }
        bombs.push((id, client(&system, Some(&bomb.identity_pem))?));
    }
    let in_flight: Vec<_> = bombs
        .into_iter()
        .map(|(id, http)| {
            let system_host = system.device_host.clone();
            let scope = scope.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let url = format!(
                    "https://{system_host}/{scope}/registrations/{id}/register?api-version=2019-03-31"
                );
                let status = http
                    .put(url)
                    .header("content-type", "application/json")
                    .body(json!({ "registrationId": id }).to_string())
                    .send()
                    .await
                    .map(|r| r.status());
                (status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let (status, answer) = register(&healthy, &system, "healthy", Some(&token)).await?;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(
        took < Duration::from_millis(200),
        "the healthy device waited {took:?} behind the chain bombs"
    );

    for bomb in in_flight {
        let (status, took) = bomb.await?;
        let status = status?;
        // Refused: 401, or 429 once the address has failed too often.
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
        assert!(took < Duration::from_secs(2), "a bomb took {took:?}");
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_a_ca_declared_verified_does_not_make_it_verified() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let root = certs::self_signed("claimed-root", true);
    let group = json!({"enrollmentGroupId": "claimed-group", "attestation": {"type": "x509",
        "x509": {"caReferences": {"primary": "claimed"}}}});
    let device = certs::signed_by("claimed-dev", false, &root);
    let device_client = client(
        &system,
        Some(&format!("{}{}", device.key_pem(), device.pem())),
    )?;

    // Declared verified on upload: refused, nothing stored.
    let declared = api
        .put(
            "/certificates/claimed",
            &json!({"certificate": root.pem(), "isVerified": true}),
        )
        .await?;
    assert_eq!(declared.status, 400, "{:?}", declared.body);
    assert!(
        declared.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("isVerified")),
        "{:?}",
        declared.body
    );
    assert_eq!(api.get("/certificates/claimed").await?.status, 404);

    // Uploaded plainly, then re-declared verified: still refused, still unverified.
    let uploaded = api
        .put("/certificates/claimed", &json!({"certificate": root.pem()}))
        .await?;
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.body);
    let redeclared = api
        .put(
            "/certificates/claimed",
            &json!({"certificate": root.pem(), "isVerified": true}),
        )
        .await?;
    assert_eq!(redeclared.status, 400, "{:?}", redeclared.body);
    assert_eq!(
        api.get("/certificates/claimed").await?.body["isVerified"],
        false
    );
    assert_eq!(
        api.put("/enrollmentGroups/claimed-group", &group)
            .await?
            .status,
        200
    );
    let (status, answer) = register(&device_client, &system, "claimed-dev", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    // Proof of possession verifies it; the same certificate may then be
    // sent back with isVerified: true (a GET–edit–PUT round trip).
    let code = api
        .post("/certificates/claimed/generateVerificationCode", None)
        .await?;
    let code = code.body["verificationCode"].as_str().unwrap().to_owned();
    let proof = certs::signed_by(&code, false, &root);
    let verified = api
        .post(
            "/certificates/claimed/verify",
            Some(&json!({"certificate": proof.pem()})),
        )
        .await?;
    assert_eq!(verified.body["isVerified"], true, "{:?}", verified.body);
    let round_trip = api
        .put(
            "/certificates/claimed",
            &json!({"certificate": root.pem(), "isVerified": true}),
        )
        .await?;
    assert_eq!(round_trip.status, 200, "{:?}", round_trip.body);
    assert_eq!(round_trip.body["isVerified"], true);
    let (status, answer) = register(&device_client, &system, "claimed-dev", None).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Another certificate under the verified name cannot inherit the state.
    let other = certs::self_signed("claimed-root", true);
    let swapped = api
        .put(
            "/certificates/claimed",
            &json!({"certificate": other.pem(), "isVerified": true}),
        )
        .await?;
    assert_eq!(swapped.status, 400, "{:?}", swapped.body);
    let kept = api.get("/certificates/claimed").await?;
    assert_eq!(kept.body["certificate"], root.pem());
    assert_eq!(kept.body["isVerified"], true);
    system.stop().await;
    Ok(())
}
