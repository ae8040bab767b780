//! TPM attestation against a real software TPM (swtpm + tpm2-tools).

mod device;
mod swtpm;
mod vectors;

use dps_attestation::sas::{
    create_token, registration_resource, Audience, ExpiryPolicy, SasToken, SymmetricKey,
};
use dps_attestation::tpm::{same_endorsement_key, TpmChallenge};

use device::{Blob, Device};

/// The whole device flow: our blob is activated, imported and loaded by the
/// TPM, whose HMAC over a SAS string-to-sign equals ours, and the SAS token
/// built from it verifies.
#[test]
fn a_real_tpm_recovers_the_key_and_signs_the_registration_token() -> anyhow::Result<()> {
    if let Some(why) = swtpm::missing_tools() {
        eprintln!("SKIPPED TPM test: {why}");
        return Ok(());
    }
    let device = Device::provision()?;
    let ek = device.endorsement_key_b64();
    let challenge = TpmChallenge::create(&ek, &device.storage_root_key_b64())?;
    let blob = Blob::parse(&challenge.authentication_key)?;
    assert!(blob.enc_uri_data.is_empty());

    let inner_wrap_key = device
        .activate(&blob)?
        .map_err(|e| anyhow::anyhow!("activation failed: {e}"))?;
    assert_eq!(inner_wrap_key.len(), 16, "the C SDK imports with AES-128");

    let resource = registration_resource("0ne00000A0A", "tpm-device-1");
    let sr = "0ne00000A0A%2Fregistrations%2Ftpm-device-1";
    let expiry = 2_000_000_000u64;
    let string_to_sign = format!("{sr}\n{expiry}");
    let tpm_hmac = device.import_and_hmac(&blob, &inner_wrap_key, string_to_sign.as_bytes())?;

    let software = SymmetricKey::from_bytes(challenge.key.as_bytes().to_vec());
    assert_eq!(
        tpm_hmac,
        hmac_sha256(software.as_bytes(), string_to_sign.as_bytes())
    );
    // The device's token, signed by the TPM, verifies with the key the service kept.
    let token = format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}&skn=registration",
        percent_encode_sig(&base64_encode(&tpm_hmac))
    );
    let parsed = SasToken::parse(&token)?;
    assert_eq!(
        parsed.verify(
            &Audience(&resource),
            &[&challenge.key],
            &ExpiryPolicy::at(expiry)
        ),
        Ok(0)
    );
    // And equals the token the sas module makes with that key.
    assert_eq!(
        token,
        create_token(&resource, &challenge.key, expiry, Some("registration"))
    );
    Ok(())
}

/// A blob sealed to another endorsement key, or bound to another SRK, does
/// not activate.
#[test]
fn a_blob_for_another_key_does_not_activate() -> anyhow::Result<()> {
    if let Some(why) = swtpm::missing_tools() {
        eprintln!("SKIPPED TPM test: {why}");
        return Ok(());
    }
    let device = Device::provision()?;
    let other_ek = vectors::with_modulus(&device.endorsement_key, &vectors::other_modulus());
    let other_ek_b64 = base64_encode(&other_ek);
    assert!(!same_endorsement_key(
        &device.endorsement_key_b64(),
        &other_ek_b64
    )?);

    let challenge = TpmChallenge::create(&other_ek_b64, &device.storage_root_key_b64())?;
    let outcome = device.activate(&Blob::parse(&challenge.authentication_key)?)?;
    assert!(
        outcome.is_err(),
        "a credential for another EK was activated"
    );

    let other_srk = vectors::with_modulus(&device.storage_root_key, &vectors::other_modulus());
    let challenge =
        TpmChallenge::create(&device.endorsement_key_b64(), &base64_encode(&other_srk))?;
    let outcome = device.activate(&Blob::parse(&challenge.authentication_key)?)?;
    assert!(
        outcome.is_err(),
        "a credential bound to another SRK's Name was activated"
    );

    // The genuine blob still activates on the same TPM afterwards.
    let challenge = TpmChallenge::create(
        &device.endorsement_key_b64(),
        &device.storage_root_key_b64(),
    )?;
    let outcome = device.activate(&Blob::parse(&challenge.authentication_key)?)?;
    assert!(outcome.is_ok(), "{outcome:?}");
    Ok(())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn percent_encode_sig(sig: &str) -> String {
    sig.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}
