//! TPM attestation end to end: a software TPM (swtpm) driven by
//! `dps_client::Tpm2Tools`, the real server's 401 challenge, and the hub key
//! delivered in the final activation blob.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::sas::{Audience, ExpiryPolicy, SasToken, SymmetricKey};
use dps_client::{ClientError, Credential, Tpm2Tools, TpmDevice as _};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_e2e::swtpm::{missing_tools, SoftwareTpm};
use dps_model::{RegistrationId, RegistrationStatus};
use serde_json::json;

use crate::client_credentials::{client, put_enrollment};

/// Prints why the TPM tests cannot run, when they cannot.
fn tpm_tools_missing() -> bool {
    match missing_tools() {
        Some(why) => {
            eprintln!("SKIPPED TPM end-to-end test: {why}");
            true
        }
        None => false,
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(work).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_device_answers_the_challenge_and_signs_hub_tokens_with_the_delivered_key(
) -> Result<()> {
    if tpm_tools_missing() {
        return Ok(());
    }
    let swtpm = SoftwareTpm::start()?;
    let tpm = Arc::new(Tpm2Tools::new(swtpm.tcti())?);
    let (endorsement_key, registration_id) = {
        let tpm = tpm.clone();
        run_blocking(move || Ok((tpm.endorsement_key()?, tpm.registration_id()?))).await?
    };
    assert_eq!(registration_id.len(), 52, "base32 of a SHA-256 digest");

    let system = TestSystem::start(SystemOptions::default()).await?;
    put_enrollment(
        &system,
        json!({"registrationId": registration_id, "attestation": {"type": "tpm",
            "tpm": {"endorsementKey": BASE64.encode(&endorsement_key)}}}),
    )
    .await;

    let registration = client(&system, &registration_id, Credential::Tpm(tpm.clone()))
        .poll_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(120))
        .build()?
        .register()
        .await?;
    assert_eq!(registration.assigned_hub, "hub-a.test");
    assert_eq!(registration.device_id, registration_id);
    assert!(registration.hub_connection_string.is_none());
    assert!(
        registration.raw.tpm.is_some(),
        "the final answer carries the hub key's activation blob"
    );

    // The hub identity is a SAS identity with the key the TPM imported last.
    let hub_device = system
        .hubs
        .device("hub-a.test", &registration_id)
        .expect("device on the hub");
    let hub_key = hub_device
        .authentication
        .and_then(|a| a.symmetric_key)
        .and_then(|k| k.primary_key)
        .expect("a SAS identity");
    let hub_key = SymmetricKey::from_base64(&hub_key)?;

    // A hub device token signed inside the TPM verifies with that key.
    let resource = format!("hub-a.test/devices/{registration_id}");
    let expiry = dps_attestation::sas::unix_now() + 3600;
    let sr = resource.replace('/', "%2F");
    let string_to_sign = format!("{sr}\n{expiry}");
    let signature = {
        let tpm = tpm.clone();
        run_blocking(move || tpm.hmac_sha256(string_to_sign.as_bytes())).await?
    };
    assert_eq!(
        signature,
        hub_key
            .hmac_sha256(format!("{sr}\n{expiry}").as_bytes())
            .to_vec()
    );
    let signature = BASE64
        .encode(&signature)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let token = SasToken::parse(&format!(
        "SharedAccessSignature sr={sr}&sig={signature}&se={expiry}"
    ))?;
    assert_eq!(
        token.verify(&Audience(&resource), &[&hub_key], &ExpiryPolicy::default()),
        Ok(0)
    );

    let record = system
        .server
        .store()
        .registration(
            system.scope(),
            &RegistrationId::new(registration_id.as_str())?,
        )
        .await?
        .expect("registration record");
    assert_eq!(record.status, RegistrationStatus::Assigned);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_whose_endorsement_key_is_not_enrolled_is_refused() -> Result<()> {
    if tpm_tools_missing() {
        return Ok(());
    }
    let (enrolled_tpm, device_tpm) = (SoftwareTpm::start()?, SoftwareTpm::start()?);
    let enrolled = Tpm2Tools::new(enrolled_tpm.tcti())?;
    let device = Arc::new(Tpm2Tools::new(device_tpm.tcti())?);
    let enrolled_key = run_blocking(move || enrolled.endorsement_key()).await?;

    let system = TestSystem::start(SystemOptions::default()).await?;
    put_enrollment(
        &system,
        json!({"registrationId": "rs-tpm-other", "attestation": {"type": "tpm",
            "tpm": {"endorsementKey": BASE64.encode(&enrolled_key)}}}),
    )
    .await;
    let error = client(&system, "rs-tpm-other", Credential::Tpm(device.clone()))
        .timeout(Duration::from_secs(120))
        .build()?
        .register()
        .await
        .expect_err("another TPM's endorsement key");
    assert!(
        matches!(
            error,
            ClientError::Authentication {
                status: 401,
                error_code: Some(401002),
                ..
            }
        ),
        "{error:?}"
    );
    // Nothing was imported: the TPM cannot sign.
    let signed = tokio::task::spawn_blocking(move || device.hmac_sha256(b"x")).await?;
    assert!(
        matches!(&signed, Err(ClientError::Tpm { command, .. }) if command == "tpm2_hmac"),
        "{signed:?}"
    );
    system.stop().await;
    Ok(())
}
