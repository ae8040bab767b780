//! Issue #15, finding 2: the custom allocation webhook is not a request
//! forgery primitive. Through the real service API and device endpoint:
//! loopback and other local targets are refused at enrollment PUT (400)
//! and at call time; when the operator allows a webhook network, its
//! answers never reach the registration record, the device, or INFO logs;
//! redirects are not followed.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::http::{header, StatusCode as AxumStatus};
use axum::routing::{any, post};
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::{IndividualEnrollment, Precondition};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::service_client::Service;

/// A marker in every webhook answer: it must not travel anywhere a tenant
/// or device reads, nor into INFO logs.
const MARKER: &str = "INTERNAL-SECRET-52be";
/// The function key in every webhook URL.
const FUNCTION_KEY: &str = "FUNCTION-KEY-9d01";

/// The operator allows webhooks on this host's loopback, over plain http.
fn allow_loopback(config: &mut dps_service::ServiceConfig) {
    config.egress.allowed_networks = vec!["127.0.0.0/8".to_owned()];
    config.egress.allow_http_networks = vec!["127.0.0.0/8".to_owned()];
}

fn custom(id: &str, url: &str) -> Value {
    json!({"registrationId": id, "attestation": {"type": "symmetricKey"},
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"}})
}

/// A webhook on loopback answering `status` with `body` (and `location`).
async fn webhook(status: AxumStatus, body: String, location: Option<String>) -> Result<String> {
    let app = axum::Router::new().route(
        "/alloc",
        post(move || async move {
            let mut response = axum::response::IntoResponse::into_response((status, body));
            if let Some(location) = location {
                response
                    .headers_mut()
                    .insert(header::LOCATION, location.parse().expect("header value"));
            }
            response
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!(
        "http://{}/alloc?code={FUNCTION_KEY}",
        listener.local_addr()?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// PUT an enrollment through the service API and read back its keys.
async fn enroll(api: &Service, id: &str, url: &str) -> Result<String> {
    let reply = api
        .put(&format!("/enrollments/{id}"), &custom(id, url))
        .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    Ok(reply.body["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("generated key")
        .to_owned())
}

/// Register over HTTPS and poll once; the poll's body.
async fn register(system: &TestSystem, id: &str, key: &str) -> Result<Value> {
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(
            system.server.trust_pem().as_bytes(),
        )?)
        .build()?;
    let scope = system.scope().to_string();
    let token = create_token(
        &registration_resource(&scope, id),
        &SymmetricKey::from_base64(key)?,
        unix_now() + 600,
        Some("registration"),
    );
    let base = format!("https://{}/{scope}/registrations/{id}", system.device_host);
    let response = http
        .put(format!("{base}/register?api-version=2021-06-01"))
        .header("authorization", &token)
        .json(&json!({"registrationId": id}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await?;
    let operation = accepted["operationId"].as_str().expect("operation id");
    Ok(http
        .get(format!(
            "{base}/operations/{operation}?api-version=2021-06-01"
        ))
        .header("authorization", &token)
        .send()
        .await?
        .json()
        .await?)
}

#[tokio::test]
async fn local_webhook_urls_are_refused_at_put_with_a_400() -> Result<()> {
    let system = TestSystem::start(SystemOptions::default()).await?;
    let api = Service::owner(&system)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let loopback = format!(
        "http://{}/alloc?code={FUNCTION_KEY}",
        listener.local_addr()?
    );
    for url in [
        loopback.as_str(),
        "https://127.0.0.1/alloc",
        "https://[::1]/alloc",
        "https://[::ffff:127.0.0.1]/alloc",
        "https://2130706433/alloc",
        "https://localhost/alloc",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/alloc",
        "https://[fd00:ec2::254]/alloc",
        "http://fn.example.net/api/alloc",
    ] {
        let reply = api
            .put("/enrollments/hook-1", &custom("hook-1", url))
            .await?;
        assert_eq!(reply.status, 400, "{url}: {:?}", reply.body);
        assert_eq!(reply.error_code(), Some(400004), "{url}: {:?}", reply.body);
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("customAllocationDefinition.webhookUrl")
                && message.contains("egress policy"),
            "{url}: {message}"
        );
        assert!(
            !message.contains(FUNCTION_KEY),
            "the key was echoed: {message}"
        );
    }
    assert_eq!(api.get("/enrollments/hook-1").await?.status, 404);

    // Groups and bulk writes go through the same check.
    let group = json!({"enrollmentGroupId": "hooks", "attestation": {"type": "symmetricKey"},
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": loopback, "apiVersion": "2021-10-01"}});
    let reply = api.put("/enrollmentGroups/hooks", &group).await?;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert_eq!(reply.error_code(), Some(400004));
    let bulk = api
        .post(
            "/enrollments",
            Some(&json!({"mode": "create", "enrollments": [custom("hook-2", &loopback)]})),
        )
        .await?;
    assert_eq!(bulk.body["isSuccessful"], false, "{:?}", bulk.body);
    assert_eq!(
        bulk.body["errors"][0]["errorCode"], 400004,
        "{:?}",
        bulk.body
    );

    // A public https webhook is accepted (its name is checked when called).
    let reply = api
        .put(
            "/enrollments/hook-3",
            &custom("hook-3", "https://fn.example.net/api/alloc"),
        )
        .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    system.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_stored_loopback_webhook_is_refused_at_call_time_without_a_request() -> Result<()> {
    // Written before the policy existed (straight into the store).
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        any(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "{}" }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!(
        "http://{}/alloc?code={FUNCTION_KEY}",
        listener.local_addr()?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let system = TestSystem::start(SystemOptions::default()).await?;
    let key = generate_key();
    let mut body = custom("old-hook", &url);
    body["attestation"]["symmetricKey"] = json!({"primaryKey": key, "secondaryKey": key});
    let enrollment = IndividualEnrollment::from_json(body.to_string().as_bytes())?;
    system
        .server
        .store()
        .put_enrollment(system.scope(), enrollment, Precondition::None)
        .await?;
    let poll = register(&system, "old-hook", &key).await?;
    assert_eq!(poll["status"], "failed", "{poll}");
    assert_eq!(poll["registrationState"]["errorCode"], 400207, "{poll}");
    let message = poll["registrationState"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("refused by the egress policy"),
        "{message}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the webhook was called");
    system.stop().await;
    Ok(())
}

/// Log output of this thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: the server, the pipeline and the webhook call
// run on this thread, so the thread's subscriber sees all their logs.
#[tokio::test(flavor = "current_thread")]
async fn an_allowed_webhooks_error_body_reaches_no_record_device_or_info_log() -> Result<()> {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // tracing caches each callsite's interest; with one scoped dispatcher
    // alive it asks only the dispatcher of the thread that hits a callsite
    // first — maybe a parallel test's thread, with none — and our capture
    // would then never be offered that event. A second live dispatcher makes
    // it ask every dispatcher.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

    let url = webhook(
        AxumStatus::INTERNAL_SERVER_ERROR,
        format!("{{\"error\":\"{MARKER}\",\"stack\":\"at db.internal:5432\"}}"),
        None,
    )
    .await?;
    let system = TestSystem::start(SystemOptions {
        configure: &allow_loopback,
        ..SystemOptions::default()
    })
    .await?;
    let api = Service::owner(&system)?;
    let key = enroll(&api, "hook-500", &url).await?;

    let poll = register(&system, "hook-500", &key).await?;
    assert_eq!(poll["status"], "failed", "{poll}");
    let state = &poll["registrationState"];
    assert_eq!(state["errorCode"], 400207, "{poll}");
    let message = state["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("Custom allocation failed with status code: 500"),
        "{message}"
    );
    assert!(
        !poll.to_string().contains(MARKER),
        "the device read the body: {poll}"
    );

    let record = api.get("/registrations/hook-500").await?;
    assert_eq!(record.status, 200, "{:?}", record.body);
    assert_eq!(record.body["errorCode"], 400207, "{:?}", record.body);
    assert!(
        !record.body.to_string().contains(MARKER),
        "the record carries the body: {:?}",
        record.body
    );
    system.stop().await;

    let logs = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    // The capture works: the failure itself is logged at INFO…
    assert!(logs.contains("400207"), "no INFO log captured: {logs}");
    // …but never what the webhook said, nor its key.
    assert!(!logs.contains(MARKER), "the body reached INFO logs: {logs}");
    assert!(
        !logs.contains(FUNCTION_KEY),
        "the function key was logged: {logs}"
    );
    Ok(())
}

#[tokio::test]
async fn a_redirecting_webhook_is_not_followed() -> Result<()> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let internal = axum::Router::new().route(
        "/{*path}",
        any(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { format!("{{\"iotHubHostName\":\"hub-a.test\",\"secret\":\"{MARKER}\"}}") }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let internal_url = format!("http://{}/admin", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, internal).await });
    let url = webhook(AxumStatus::FOUND, String::new(), Some(internal_url)).await?;
    let system = TestSystem::start(SystemOptions {
        configure: &allow_loopback,
        ..SystemOptions::default()
    })
    .await?;
    let api = Service::owner(&system)?;
    let key = enroll(&api, "hook-302", &url).await?;
    let poll = register(&system, "hook-302", &key).await?;
    assert_eq!(poll["status"], "failed", "{poll}");
    assert_eq!(poll["registrationState"]["errorCode"], 400207, "{poll}");
    let message = poll["registrationState"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("redirect") && message.contains("302"),
        "{message}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    system.stop().await;
    Ok(())
}
