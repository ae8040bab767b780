//! A fresh TPM challenge per attempt: two challenges of the same device
//! deliver different keys (at 8ad8c6e both delivered HMAC(secret, id ‖ EK)),
//! and a token signed with the newest one registers.

use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::Result;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::sas::unix_now;
use dps_client::{ClientError, Tpm2Tools, TpmDevice as _};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_e2e::swtpm::{missing_tools, SoftwareTpm};
use reqwest::StatusCode;
use serde_json::json;

use super::{client_from, register};
use crate::client_credentials::put_enrollment;

async fn in_tpm<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(work).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_tpm_challenge_is_never_issued_twice() -> Result<()> {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED TPM end-to-end test: {why}");
        return Ok(());
    }
    let swtpm = SoftwareTpm::start()?;
    let tpm = Arc::new(Tpm2Tools::new(swtpm.tcti())?);
    let (endorsement_key, storage_root_key, registration_id) = {
        let tpm = tpm.clone();
        in_tpm(move || {
            Ok((
                tpm.endorsement_key()?,
                tpm.storage_root_key()?,
                tpm.registration_id()?,
            ))
        })
        .await?
    };
    let system = TestSystem::start(SystemOptions::default()).await?;
    put_enrollment(
        &system,
        json!({"registrationId": registration_id, "attestation": {"type": "tpm",
            "tpm": {"endorsementKey": BASE64.encode(&endorsement_key)}}}),
    )
    .await;
    let scope = system.scope().to_string();
    let http = client_from(&system, Ipv4Addr::new(127, 0, 0, 80));
    let body = json!({"registrationId": registration_id, "tpm": {
        "endorsementKey": BASE64.encode(&endorsement_key),
        "storageRootKey": BASE64.encode(&storage_root_key)}});

    // Two challenges back to back, then what each delivers inside the TPM.
    let mut signatures = Vec::new();
    for _ in 0..2 {
        let challenge = register(&http, &system, &scope, &registration_id, None, &body).await;
        assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
        let blob = BASE64.decode(
            challenge.json()["authenticationKey"]
                .as_str()
                .expect("a challenge"),
        )?;
        let tpm = tpm.clone();
        signatures.push(
            in_tpm(move || {
                tpm.import_activation_blob(&blob)?;
                tpm.hmac_sha256(b"which key is this?")
            })
            .await?,
        );
    }
    assert_ne!(
        signatures[0], signatures[1],
        "two challenges delivered the same key"
    );

    // The newest key signs a registration token the server accepts.
    let sr = format!("{scope}/registrations/{registration_id}").replace('/', "%2F");
    let expiry = unix_now() + 3600;
    let signature = {
        let tpm = tpm.clone();
        let message = format!("{sr}\n{expiry}");
        in_tpm(move || tpm.hmac_sha256(message.as_bytes())).await?
    };
    let signature = BASE64
        .encode(signature)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let token =
        format!("SharedAccessSignature sr={sr}&sig={signature}&se={expiry}&skn=registration");
    let registered = register(
        &http,
        &system,
        &scope,
        &registration_id,
        Some(&token),
        &body,
    )
    .await;
    assert_eq!(
        registered.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&registered.body)
    );
    system.stop().await;
    Ok(())
}
