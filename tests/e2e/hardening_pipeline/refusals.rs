//! Refusals say nothing about which ID scopes exist: a known scope and an
//! unknown one answer every bad credential with the same status, headers and
//! bytes (the per-answer `trackingId` and `timestampUtc` aside), and no
//! answer carries the server's clock. At 8ad8c6e a known scope answered
//! "token expired at X (now Y)" or a certificate diagnosis, an unknown scope
//! a generic text.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::certs;
use dps_e2e::server::{SystemOptions, TestSystem};
use reqwest::{Client, StatusCode};
use serde_json::json;

use super::{client_from, device_token, enroll, register, Answer};

const SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 90);

/// The answer with its two per-answer fields blanked.
fn comparable(answer: &Answer) -> Vec<u8> {
    let body = answer.json();
    let mut text = String::from_utf8(answer.body.clone()).expect("UTF-8 body");
    for field in ["trackingId", "timestampUtc"] {
        if let Some(value) = body[field].as_str() {
            text = text.replacen(value, "", 1);
        }
    }
    text.into_bytes()
}

fn assert_alike(case: &str, known: &Answer, unknown: &Answer) {
    assert_eq!(known.status, StatusCode::UNAUTHORIZED, "{case}");
    assert_eq!(known.status, unknown.status, "{case}");
    for header in ["x-ms-error-code", "content-type", "retry-after"] {
        assert_eq!(
            known.headers.get(header),
            unknown.headers.get(header),
            "{case}: {header}"
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&comparable(known)),
        String::from_utf8_lossy(&comparable(unknown)),
        "{case}"
    );
    let message = known.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !message.chars().any(|c| c.is_ascii_digit()),
        "{case}: the refusal carries numbers (a clock?): {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_and_unknown_scopes_answer_identical_refusals() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let known = system.scope().to_string();
    let unknown = if known.eq_ignore_ascii_case("0ne00FFFFFF") {
        "0ne00EEEEEE".to_owned()
    } else {
        "0ne00FFFFFF".to_owned()
    };
    let key = enroll(&system, system.scope(), "known-dev", json!({})).await;
    let http = client_from(&system, SOURCE);
    let body = json!({"registrationId": "known-dev"});

    type Token = fn(&str) -> Option<String>;
    let real_key = key.clone();
    let expired = move |scope: &str| {
        // The real key for the known scope: only the clock is wrong.
        create_token(
            &registration_resource(scope, "known-dev"),
            &SymmetricKey::from_base64(&real_key).unwrap(),
            unix_now() - 3_600,
            Some("registration"),
        )
    };
    let cases: [(&str, Token); 4] = [
        ("wrong signature", |scope| {
            Some(device_token(scope, "known-dev", &generate_key()))
        }),
        ("malformed token", |_| {
            Some("SharedAccessSignature sr=garbage".to_owned())
        }),
        ("token for another device", |scope| {
            Some(device_token(scope, "someone-else", &generate_key()))
        }),
        ("no credentials", |_| None),
    ];
    for (case, token) in cases {
        let known_answer = register(
            &http,
            &system,
            &known,
            "known-dev",
            token(&known).as_deref(),
            &body,
        )
        .await;
        let unknown_answer = register(
            &http,
            &system,
            &unknown,
            "known-dev",
            token(&unknown).as_deref(),
            &body,
        )
        .await;
        assert_alike(case, &known_answer, &unknown_answer);
    }
    let known_answer = register(
        &http,
        &system,
        &known,
        "known-dev",
        Some(&expired(&known)),
        &body,
    )
    .await;
    let unknown_answer = register(
        &http,
        &system,
        &unknown,
        "known-dev",
        Some(&expired(&unknown)),
        &body,
    )
    .await;
    assert_alike("expired token", &known_answer, &unknown_answer);

    // A client certificate naming another device.
    let leaf = certs::self_signed("other-dev", false);
    let identity =
        reqwest::Identity::from_pem(format!("{}{}", leaf.key_pem(), leaf.pem()).as_bytes())?;
    let with_certificate = Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(
            system.server.trust_pem().as_bytes(),
        )?)
        .identity(identity)
        .local_address(IpAddr::V4(SOURCE))
        .build()?;
    let known_answer = register(&with_certificate, &system, &known, "known-dev", None, &body).await;
    let unknown_answer = register(
        &with_certificate,
        &system,
        &unknown,
        "known-dev",
        None,
        &body,
    )
    .await;
    assert_alike(
        "certificate for another device",
        &known_answer,
        &unknown_answer,
    );
    system.stop().await;
    Ok(())
}
