//! The device-error battery: every refusal and failure class a device can
//! meet, run over every device transport against one server, with the SAME
//! expected Azure status and error code on each. The table is cases ×
//! transports: a new failure class is one more [`CASES`] row, a new
//! transport one more [`TRANSPORTS`] entry and its driver in
//! [`transports`] (AMQP's in [`amqp`]).
//!
//! Each (case, transport) pair registers its own device from its own
//! loopback address, so the pairs run at once without meeting each other's
//! throttling; the whole battery takes about a second.

mod amqp;
mod transports;

use std::net::Ipv4Addr;

use anyhow::Result;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::keys::generate_key;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_hub_sim::Fault;
use serde_json::json;

use self::transports::{Answer, Attempt, Wire};
use crate::hardening_pipeline::{device_token, enroll};
use crate::mqtt_fixtures::unknown_scope;

/// Every device transport.
const TRANSPORTS: &[Wire] = &[
    Wire::Https,
    Wire::Mqtt,
    Wire::MqttWs,
    Wire::Amqp,
    Wire::AmqpWs,
];

/// A refusal or failure class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    BadToken,
    UnknownScope,
    DisabledEnrollment,
    UnknownEnrollment,
    Throttled,
    HubDown,
    WebhookFailure,
    MalformedBody,
    TpmChallenge,
}

/// What a device must end with, on every transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outcome {
    /// Status of the last answer (the final poll when the register was accepted).
    status: u16,
    /// The Azure code: the error body's `errorCode`, or `registrationState.errorCode`.
    error_code: Option<i64>,
    /// The operation status (`failed`, `disabled`) when the answer is one.
    operation: Option<&'static str>,
    /// Whether the answer says how long to wait.
    retry_after: bool,
    /// Whether the answer is a TPM challenge (`authenticationKey`, `keyName`).
    challenge: bool,
}

const fn refused(status: u16, code: i64) -> Outcome {
    Outcome {
        status,
        error_code: Some(code),
        operation: None,
        retry_after: false,
        challenge: false,
    }
}

const fn ended(operation: &'static str, code: i64) -> Outcome {
    Outcome {
        status: 200,
        error_code: Some(code),
        operation: Some(operation),
        retry_after: false,
        challenge: false,
    }
}

/// The table: every class and the one outcome every transport must give.
const CASES: &[(Class, Outcome)] = &[
    (Class::BadToken, refused(401, 401002)),
    (Class::UnknownScope, refused(401, 401002)),
    (Class::DisabledEnrollment, ended("disabled", 401000)),
    (Class::UnknownEnrollment, refused(401, 401002)),
    (
        Class::Throttled,
        Outcome {
            retry_after: true,
            ..refused(429, 429001)
        },
    ),
    (Class::HubDown, ended("failed", 500201)),
    (Class::WebhookFailure, ended("failed", 400207)),
    (Class::MalformedBody, refused(400, 400004)),
    (
        Class::TpmChallenge,
        Outcome {
            status: 401,
            error_code: None,
            operation: None,
            retry_after: false,
            challenge: true,
        },
    ),
];

/// Attempts a throttled device makes before it must have been told to wait.
const THROTTLE_ATTEMPTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_and_failure_is_the_same_on_every_transport() -> Result<()> {
    let webhook = failing_webhook().await?;
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-down.test"],
        configure: &|config| {
            // The webhook is on loopback: the operator allows it.
            config.egress.allowed_networks = vec!["127.0.0.0/8".to_owned()];
            config.egress.allow_http_networks = vec!["127.0.0.0/8".to_owned()];
            // A small failure budget per address, so throttling is quick to
            // reach; the scope's is large, as every pair fails in one scope.
            config.throttling.failures_per_address_per_second = 1;
            config.throttling.failures_per_address_burst = 3;
            config.throttling.failures_per_scope_burst = 10_000;
            // The dead hub's retries give up quickly.
            config.hubs.request_timeout_ms = 400;
        },
    })
    .await?;
    assert!(system.hubs.set_fault("hub-down.test", Fault::Status(503)));

    let mut runs = Vec::new();
    for (case_index, (class, expected)) in CASES.iter().enumerate() {
        for (wire_index, wire) in TRANSPORTS.iter().enumerate() {
            let source = Ipv4Addr::new(127, 0, 10 + wire_index as u8, 10 + case_index as u8);
            let attempt = prepare(&system, *class, *wire, source, &webhook).await;
            let system = &system;
            runs.push(async move {
                let outcome = run(system, *class, *wire, &attempt).await;
                (*class, *wire, *expected, outcome)
            });
        }
    }
    let mut mismatches = Vec::new();
    for (class, wire, expected, outcome) in futures::future::join_all(runs).await {
        match outcome {
            Ok((outcome, _)) if outcome == expected => {}
            Ok((outcome, answer)) => mismatches.push(format!(
                "{class:?} over {}: expected {expected:?}, got {outcome:?} ({})",
                wire.name(),
                answer.body
            )),
            Err(err) => mismatches.push(format!("{class:?} over {}: {err:#}", wire.name())),
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    system.stop().await;
    Ok(())
}

/// `forceRegistration=true` is accepted and ignored on every transport (it
/// is not in Azure's REST specification, no SDK's public API sets it, and
/// every register re-runs attestation and allocation anyway): a device that
/// sends it registers, and again, exactly as one that does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_registration_is_accepted_and_ignored_on_every_transport() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    for (index, wire) in TRANSPORTS.iter().enumerate() {
        let id = format!("forced-{}", wire.name());
        let key = enroll(&system, system.scope(), &id, json!({})).await;
        for force_registration in [true, false, true] {
            let attempt = Attempt {
                scope: scope.clone(),
                registration_id: id.clone(),
                token: Some(device_token(&scope, &id, &key)),
                body: json!({ "registrationId": id }).to_string().into_bytes(),
                source: Ipv4Addr::new(127, 0, 20, 10 + index as u8),
                force_registration,
            };
            let answers = wire.exchange(&system, &attempt).await?;
            let last = answers.last().expect("an answer");
            assert_eq!(
                answers[0].status,
                202,
                "{} {force_registration}",
                wire.name()
            );
            assert_eq!(
                (last.status, outcome_of(last).operation),
                (200, Some("assigned")),
                "{} {force_registration}: {}",
                wire.name(),
                last.body
            );
            assert_eq!(last.body["registrationState"]["assignedHub"], "hub-a.test");
        }
    }
    system.stop().await;
    Ok(())
}

/// The enrollment (if any) and the attempt of `class` over `wire`.
async fn prepare(
    system: &TestSystem,
    class: Class,
    wire: Wire,
    source: Ipv4Addr,
    webhook: &str,
) -> Attempt {
    let scope = system.scope().to_string();
    let id = format!("{}-{}", format!("{class:?}").to_lowercase(), wire.name());
    let registration = json!({ "registrationId": id }).to_string().into_bytes();
    let mut attempt = Attempt {
        scope: scope.clone(),
        registration_id: id.clone(),
        token: None,
        body: registration,
        source,
        force_registration: false,
    };
    let extra = match class {
        Class::DisabledEnrollment => json!({"provisioningStatus": "disabled"}),
        Class::HubDown => json!({"allocationPolicy": "static", "iotHubs": ["hub-down.test"]}),
        Class::WebhookFailure => json!({"allocationPolicy": "custom",
            "customAllocationDefinition": {"webhookUrl": webhook, "apiVersion": "2021-10-01"}}),
        Class::TpmChallenge => {
            let (endorsement_key, storage_root_key) = (rsa_public_area(), rsa_public_area());
            enroll(
                system,
                system.scope(),
                &id,
                json!({"attestation": {"type": "tpm", "tpm": {"endorsementKey": endorsement_key}}}),
            )
            .await;
            attempt.body = json!({"registrationId": id, "tpm": {
                "endorsementKey": endorsement_key, "storageRootKey": storage_root_key}})
            .to_string()
            .into_bytes();
            return attempt;
        }
        _ => json!({}),
    };
    let key = match class {
        Class::UnknownEnrollment => generate_key(),
        _ => enroll(system, system.scope(), &id, extra).await,
    };
    attempt.token = Some(match class {
        Class::BadToken | Class::Throttled => device_token(&scope, &id, &generate_key()),
        Class::UnknownScope => {
            attempt.scope = unknown_scope();
            device_token(&attempt.scope, &id, &key)
        }
        _ => device_token(&scope, &id, &key),
    });
    if class == Class::MalformedBody {
        attempt.body = br#"{"registrationId": "#.to_vec();
    }
    attempt
}

/// Run the attempt (a throttled device repeats it until told to wait) and
/// read its outcome off the last answer.
async fn run(
    system: &TestSystem,
    class: Class,
    wire: Wire,
    attempt: &Attempt,
) -> Result<(Outcome, Answer)> {
    let tries = if class == Class::Throttled {
        THROTTLE_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..tries {
        let answers = wire.exchange(system, attempt).await?;
        let answer = answers
            .last()
            .cloned()
            .expect("at least the register answer");
        let throttled = answer.status == 429;
        last = Some(answer);
        if throttled {
            break;
        }
    }
    let answer = last.expect("at least one try");
    Ok((outcome_of(&answer), answer))
}

fn outcome_of(answer: &Answer) -> Outcome {
    let body = &answer.body;
    let error_code = body["errorCode"]
        .as_i64()
        .or_else(|| body["registrationState"]["errorCode"].as_i64());
    let operation = match body["status"].as_str() {
        Some("failed") => Some("failed"),
        Some("disabled") => Some("disabled"),
        Some("assigned") => Some("assigned"),
        Some("assigning") => Some("assigning"),
        _ => None,
    };
    Outcome {
        status: answer.status,
        error_code,
        operation,
        retry_after: answer.retry_after.is_some(),
        challenge: body["authenticationKey"].is_string() && body["keyName"].is_string(),
    }
}

/// A webhook that always fails, on loopback; its URL.
async fn failing_webhook() -> Result<String> {
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/alloc",
        axum::routing::post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/alloc", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Base64 of a TPM2B_PUBLIC holding an RSA-2048 storage key in the shape of
/// an EK (AES-128-CFB, no scheme): a random modulus is enough for the server
/// to build a challenge, which only encrypts to it.
fn rsa_public_area() -> String {
    let mut modulus = Vec::with_capacity(256);
    while modulus.len() < 256 {
        modulus.extend(BASE64.decode(generate_key()).expect("base64"));
    }
    modulus.truncate(256);
    modulus[0] |= 0x80;
    modulus[255] |= 0x01;
    let mut area = Vec::new();
    area.extend_from_slice(&0x0001u16.to_be_bytes()); // RSA
    area.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256 names
    area.extend_from_slice(&0x0003_00B2u32.to_be_bytes()); // EK attributes
    area.extend_from_slice(&0u16.to_be_bytes()); // no policy
    for field in [0x0006u16, 128, 0x0043, 0x0010, 2048] {
        area.extend_from_slice(&field.to_be_bytes()); // AES-128-CFB, no scheme, 2048 bits
    }
    area.extend_from_slice(&0u32.to_be_bytes()); // exponent 65537
    area.extend_from_slice(&256u16.to_be_bytes());
    area.extend_from_slice(&modulus);
    let mut public = (area.len() as u16).to_be_bytes().to_vec();
    public.extend_from_slice(&area);
    BASE64.encode(public)
}
