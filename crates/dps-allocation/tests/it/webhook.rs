//! The custom policy against a real HTTP(S) server on loopback.

use std::time::Duration;

use dps_allocation::{
    AllocationError, AllocationRequest, Allocator, Decision, DeviceAttestation, DeviceContext,
    HubTable, Policy, WebhookConfig, WebhookPolicy,
};
use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, ErrorCode, X509CertificateInfo};
use serde_json::json;

use crate::support::{
    group, individual, linked, loopback_allocator_config, loopback_webhooks, reg,
    start_tls_webhook, start_webhook, Webhook, WEBHOOK_KEY,
};

fn hubs() -> HubTable {
    HubTable::new(&[
        linked("hub-a.example.net"),
        linked("Hub-B.example.net"),
        linked("hub-c.example.net"),
    ])
    .unwrap()
}

fn custom(url: &str, extra: &str) -> dps_model::IndividualEnrollment {
    let sep = if extra.is_empty() { "" } else { "," };
    individual(&format!(
        r#""allocationPolicy":"custom","customAllocationDefinition":{{"webhookUrl":"{url}","apiVersion":"2021-10-01"}},"etag":"\"abc\""{sep}{extra}"#
    ))
}

fn policy(timeout: Duration) -> WebhookPolicy {
    WebhookPolicy::new(WebhookConfig {
        timeout,
        ..loopback_webhooks()
    })
    .unwrap()
}

pub(crate) async fn run(
    webhook_url: &str,
    reply_policy: &WebhookPolicy,
) -> Result<dps_allocation::Allocation, AllocationError> {
    let hubs = hubs();
    let enrollment = custom(webhook_url, "");
    let id = reg("dev-1");
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&enrollment),
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap();
    reply_policy.allocate(&request).await
}

pub(crate) async fn reply_with(status: u16, body: &'static str) -> Webhook {
    start_webhook(move |_| (status, body.to_owned()), Duration::ZERO).await
}

/// Every message names its cause and never leaks the function key.
pub(crate) fn check_message(err: &AllocationError, must_contain: &[&str]) {
    let text = err.to_string();
    for part in must_contain {
        assert!(text.contains(part), "{text:?} should contain {part:?}");
    }
    assert!(!text.contains(WEBHOOK_KEY), "the key leaked: {text}");
}

#[tokio::test]
async fn success_sends_the_spec_request_and_passes_twin_and_payload_through() {
    let webhook = start_webhook(
        |_| {
            (200, json!({
                "iotHubHostName": "HUB-b.example.net",
                "initialTwin": { "tags": { "room": "42" }, "properties": { "desired": { "fan": "on" } } },
                "payload": { "greeting": "hello" }
            }).to_string())
        },
        Duration::ZERO,
    )
    .await;
    let hubs = hubs();
    let enrollment = custom(
        &webhook.url,
        r#""iotHubs":["hub-a.example.net","hub-b.example.net"],"initialTwin":{"tags":{"t":1}},"reprovisionPolicy":{"updateHubAssignment":true,"migrateDeviceData":false}"#,
    );
    let id = reg("Dev-1");
    let payload = json!({ "modelId": "dtmi:x;1" });
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&enrollment),
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap()
    .with_device(DeviceContext {
        current_hub: Some("hub-a.example.net"),
        current_device_id: Some("dev-1"),
        attestation: DeviceAttestation::SymmetricKey,
        payload: Some(&payload),
        source_ip: None,
    });
    let allocation = policy(Duration::from_secs(5))
        .allocate(&request)
        .await
        .unwrap();
    // The linked spelling, not the webhook's.
    assert_eq!(allocation.hub_host_name, "Hub-B.example.net");
    let twin = allocation.initial_twin.expect("twin passed through");
    assert_eq!(twin.tags_or_empty()["room"], "42");
    assert_eq!(twin.desired_or_empty()["fan"], "on");
    assert_eq!(allocation.payload, Some(json!({ "greeting": "hello" })));

    let received = webhook.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].query.as_deref(), Some("code=SECRET-KEY"));
    assert_eq!(
        received[0].content_type.as_deref(),
        Some("application/json")
    );
    let expected = json!({
        "individualEnrollment": {
            "registrationId": "dev-1",
            "attestation": { "type": "symmetricKey" },
            "etag": "\"abc\"",
            "provisioningStatus": "enabled",
            "allocationPolicy": "custom",
            "iotHubs": ["hub-a.example.net", "hub-b.example.net"],
            "initialTwin": { "tags": { "t": 1 } },
            "reprovisionPolicy": { "updateHubAssignment": true, "migrateDeviceData": false },
            "customAllocationDefinition": { "webhookUrl": webhook.url, "apiVersion": "2021-10-01" }
        },
        "deviceRuntimeContext": {
            "registrationId": "Dev-1",
            "currentIotHubHostName": "hub-a.example.net",
            "currentDeviceId": "dev-1",
            "symmetricKey": {},
            "payload": { "modelId": "dtmi:x;1" }
        },
        "linkedHubs": ["hub-a.example.net", "Hub-B.example.net"]
    });
    assert_eq!(received[0].body, expected);
    let sent = received[0].body.to_string();
    assert!(
        !sent.contains("cHJpbWFyeS1zZWNyZXQ="),
        "the enrollment key was sent: {sent}"
    );
}

#[tokio::test]
async fn groups_x509_and_tpm_context_have_their_spec_members() {
    let webhook = start_webhook(
        |_| (200, r#"{"iotHubHostName":"hub-c.example.net"}"#.to_owned()),
        Duration::ZERO,
    )
    .await;
    let hubs = hubs();
    let enrollment = group(&format!(
        r#""allocationPolicy":"custom","customAllocationDefinition":{{"webhookUrl":"{}","apiVersion":"2019-03-31"}}"#,
        webhook.url
    ));
    let id = reg("leaf-7");
    let info = X509CertificateInfo {
        subject_name: "CN=leaf-7".into(),
        version: 3,
        ..Default::default()
    };
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Group(&enrollment),
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap()
    .with_device(DeviceContext {
        attestation: DeviceAttestation::X509 {
            certificate: Some(&info),
            signing_certificate: None,
        },
        ..DeviceContext::default()
    });
    let allocation = policy(Duration::from_secs(5))
        .allocate(&request)
        .await
        .unwrap();
    assert_eq!(allocation.hub_host_name, "hub-c.example.net");
    assert_eq!(allocation.initial_twin, None);
    assert_eq!(allocation.payload, None);
    let body = &webhook.received()[0].body;
    assert_eq!(body["enrollmentGroup"]["enrollmentGroupId"], "group-1");
    assert_eq!(
        body["enrollmentGroup"]["attestation"],
        json!({ "type": "symmetricKey" })
    );
    assert!(body.get("individualEnrollment").is_none());
    let context = body["deviceRuntimeContext"].as_object().unwrap();
    assert_eq!(context["registrationId"], "leaf-7");
    assert_eq!(
        context["x509"]["certificateInfo"]["subjectName"],
        "CN=leaf-7"
    );
    assert!(!context.contains_key("currentIotHubHostName"));
    assert!(!context.contains_key("currentDeviceId"));
    assert!(!context.contains_key("payload"));
    assert_eq!(
        body["linkedHubs"],
        json!([
            "hub-a.example.net",
            "Hub-B.example.net",
            "hub-c.example.net"
        ])
    );

    let tpm = DeviceAttestation::Tpm {
        endorsement_key: "RUs=",
        storage_root_key: Some("U1JL"),
    };
    assert_eq!(
        tpm.to_json(),
        (
            "tpm",
            json!({ "endorsementKey": "RUs=", "storageRootKey": "U1JL" })
        )
    );
}

#[tokio::test]
async fn refused_connections_and_timeouts_read_the_same() {
    let webhook = start_webhook(
        |_| (200, r#"{"iotHubHostName":"hub-a.example.net"}"#.to_owned()),
        Duration::from_secs(3),
    )
    .await;
    let started = std::time::Instant::now();
    let timed_out = run(&webhook.url, &policy(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout was not applied"
    );
    assert!(
        matches!(timed_out, AllocationError::WebhookUnreachable { .. }),
        "{timed_out:?}"
    );
    assert_eq!(timed_out.error_code(), ErrorCode::CUSTOM_ALLOCATION_FAILED);
    let host = webhook.url.split('/').nth(2).unwrap();
    check_message(
        &timed_out,
        &[&format!("could not reach the webhook at {host}"), "300 ms"],
    );

    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = format!("127.0.0.1:{port}");
    let refused = run(
        &format!("http://{closed}/api/allocate?code={WEBHOOK_KEY}"),
        &policy(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, AllocationError::WebhookUnreachable { .. }),
        "{refused:?}"
    );
    // Nothing tells a closed port from a slow service (a port scanner).
    assert_eq!(
        refused.to_string().replace(&closed, "HOST"),
        timed_out.to_string().replace(host, "HOST")
    );
}

/// A body from wherever the URL points, with a marker that must not travel.
const MARKER: &str = "INTERNAL-SECRET-7f3a";

#[tokio::test]
async fn error_statuses_are_reported_without_the_body() {
    let body = Box::leak(format!("database down: {MARKER} {}", "x".repeat(400)).into_boxed_str());
    for (status, code, words) in [
        (
            500,
            ErrorCode::CUSTOM_ALLOCATION_FAILED,
            "Custom allocation failed with status code: 500",
        ),
        // The sample function answers 400 with a plain-text reason.
        (
            400,
            ErrorCode::CUSTOM_ALLOCATION_FAILED,
            "Custom allocation failed with status code: 400",
        ),
        (
            401,
            ErrorCode::CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS,
            "refused the call with status code 401",
        ),
        (
            403,
            ErrorCode::CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS,
            "refused the call with status code 403",
        ),
    ] {
        let webhook = reply_with(status, body).await;
        let err = run(&webhook.url, &policy(Duration::from_secs(5)))
            .await
            .unwrap_err();
        match (&err, status) {
            (AllocationError::WebhookUnauthorized { status: s, .. }, 401 | 403)
            | (AllocationError::WebhookStatus { status: s, .. }, _) => assert_eq!(*s, status),
            _ => panic!("unexpected {err:?}"),
        }
        assert_eq!(err.error_code(), code);
        check_message(&err, &[words]);
        assert!(!format!("{err} {err:?}").contains(MARKER), "{err:?}");
        assert!(!err.to_string().contains("database down"), "{err}");
    }
}

#[tokio::test]
async fn unauthorized_points_at_the_function_key() {
    let webhook = reply_with(401, "bad function key").await;
    let err = run(&webhook.url, &policy(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(
        err.error_code(),
        ErrorCode::CUSTOM_ALLOCATION_UNAUTHORIZED_ACCESS
    );
    check_message(&err, &["status code 401", "function key in webhookUrl"]);
    assert!(!err.to_string().contains("bad function key"), "{err}");
}

#[tokio::test]
async fn an_unoffered_hub_is_400208_naming_it() {
    let webhook = reply_with(
        200,
        r#"{"iotHubHostName":"rogue.example.net","payload":{}}"#,
    )
    .await;
    let err = run(&webhook.url, &policy(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AllocationError::WebhookHubNotLinked { hub, .. } if hub == "rogue.example.net")
    );
    assert_eq!(
        err.error_code(),
        ErrorCode::CUSTOM_ALLOCATION_IOT_HUB_NOT_SPECIFIED
    );
    check_message(
        &err,
        &[
            "\"rogue.example.net\"",
            "hub-a.example.net, Hub-B.example.net, hub-c.example.net",
        ],
    );
}

#[tokio::test]
async fn a_missing_hub_is_400208() {
    for body in [
        r#"{"payload":{"a":1}}"#,
        r#"{"iotHubHostName":"  "}"#,
        r#"{"iotHubHostName":null}"#,
    ] {
        let webhook = reply_with(200, body).await;
        let err = run(&webhook.url, &policy(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AllocationError::WebhookHubMissing { .. }),
            "{body}: {err:?}"
        );
        assert_eq!(
            err.error_code(),
            ErrorCode::CUSTOM_ALLOCATION_IOT_HUB_NOT_SPECIFIED
        );
        check_message(&err, &["returned no iotHubHostName"]);
    }
}

#[tokio::test]
async fn malformed_json_is_400207_naming_what_is_wrong_not_what_was_said() {
    let cases = [
        (
            "<html>INTERNAL-SECRET-7f3a</html>",
            "the body is not valid JSON",
        ),
        ("", "the body is empty"),
        (
            r#"["INTERNAL-SECRET-7f3a"]"#,
            "the body is not a JSON object",
        ),
        (r#"{"iotHubHostName":"#, "the body is not valid JSON"),
        (
            r#"{"iotHubHostName":42}"#,
            "unexpected value at `iotHubHostName`",
        ),
        (
            r#"{"iotHubHostName":"hub-a.example.net","initialTwin":{"tags":"INTERNAL-SECRET-7f3a"}}"#,
            "unexpected value at `initialTwin.tags`",
        ),
    ];
    for (body, cause) in cases {
        let webhook = reply_with(200, body).await;
        let err = run(&webhook.url, &policy(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AllocationError::WebhookMalformedResponse { .. }),
            "{body}: {err:?}"
        );
        assert_eq!(err.error_code(), ErrorCode::CUSTOM_ALLOCATION_FAILED);
        check_message(&err, &["malformed response", cause]);
        assert!(!format!("{err:?}").contains(MARKER), "{err:?}");
    }
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let big = Box::leak(
        format!(
            r#"{{"iotHubHostName":"hub-a.example.net","payload":"{}"}}"#,
            "x".repeat(4096)
        )
        .into_boxed_str(),
    );
    let webhook = reply_with(200, big).await;
    let small = WebhookPolicy::new(WebhookConfig {
        max_response_bytes: 1024,
        ..loopback_webhooks()
    })
    .unwrap();
    let err = run(&webhook.url, &small).await.unwrap_err();
    assert!(
        matches!(
            err,
            AllocationError::WebhookResponseTooLarge { limit: 1024, .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_definition_and_bad_urls_are_named() {
    // The tenant default can't be custom, but a stored value might be.
    let hubs = hubs();
    let enrollment = individual("");
    let id = reg("dev-1");
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&enrollment),
        &hubs,
        AllocationPolicy::Custom,
    )
    .unwrap();
    let err = policy(Duration::from_secs(1))
        .allocate(&request)
        .await
        .unwrap_err();
    assert_eq!(err, AllocationError::CustomDefinitionMissing);
    assert_eq!(err.error_code(), ErrorCode::CUSTOM_ALLOCATION_FAILED);

    let err = run(
        "http://exa mple.net/x?code=SECRET-KEY",
        &policy(Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, AllocationError::WebhookUrlInvalid { .. }),
        "{err:?}"
    );
    check_message(&err, &["webhook URL is invalid"]);
}

#[tokio::test]
async fn https_with_an_extra_trusted_root() {
    let (webhook, ca_pem) =
        start_tls_webhook(|_| (200, r#"{"iotHubHostName":"hub-a.example.net"}"#.to_owned())).await;
    let trusting = WebhookPolicy::new(WebhookConfig {
        extra_root_certificates_pem: vec![ca_pem.into_bytes()],
        ..loopback_webhooks()
    })
    .unwrap();
    let allocation = run(&webhook.url, &trusting).await.unwrap();
    assert_eq!(allocation.hub_host_name, "hub-a.example.net");

    // Without the root the certificate is unknown: no connection (the
    // cause is in the DEBUG log).
    let err = run(&webhook.url, &policy(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AllocationError::WebhookUnreachable { .. }),
        "{err:?}"
    );
    check_message(&err, &["could not reach the webhook"]);

    let err = WebhookPolicy::new(WebhookConfig {
        extra_root_certificates_pem: vec![b"not a certificate".to_vec()],
        ..WebhookConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, AllocationError::HttpClient { .. }), "{err:?}");
}

#[tokio::test]
async fn keeping_the_hub_still_calls_the_webhook_for_its_payload() {
    let webhook = start_webhook(
        |body| {
            let offered = body["linkedHubs"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (
                200,
                json!({ "iotHubHostName": offered, "payload": { "kept": true } }).to_string(),
            )
        },
        Duration::ZERO,
    )
    .await;
    let hubs = hubs();
    let enrollment = custom(
        &webhook.url,
        r#""reprovisionPolicy":{"updateHubAssignment":false,"migrateDeviceData":true}"#,
    );
    let id = reg("dev-1");
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&enrollment),
        &hubs,
        AllocationPolicy::Hashed,
    )
    .unwrap()
    .with_device(DeviceContext {
        current_hub: Some("hub-c.example.net"),
        current_device_id: Some("dev-1"),
        ..DeviceContext::default()
    });
    let allocator = Allocator::new(loopback_allocator_config()).unwrap();
    let allocation = allocator
        .resolve(&request, &Decision::KeepHub("hub-c.example.net".into()))
        .await
        .unwrap();
    assert_eq!(allocation.hub_host_name, "hub-c.example.net");
    assert_eq!(allocation.payload, Some(json!({ "kept": true })));
    assert_eq!(
        webhook.received()[0].body["linkedHubs"],
        json!(["hub-c.example.net"])
    );
}

#[tokio::test]
async fn connections_are_reused() {
    let webhook = start_webhook(
        |_| (200, r#"{"iotHubHostName":"hub-a.example.net"}"#.to_owned()),
        Duration::ZERO,
    )
    .await;
    let policy = policy(Duration::from_secs(5));
    for _ in 0..20 {
        run(&webhook.url, &policy).await.unwrap();
    }
    assert_eq!(webhook.received().len(), 20);
    assert_eq!(
        webhook.connections(),
        1,
        "every call should reuse the pooled connection"
    );
}
