//! The webhook's egress policy against real servers on loopback: what is
//! refused never receives a byte, names are checked on what they resolve
//! to, redirects are not followed, and answers stay out of errors and INFO
//! logs.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{header, StatusCode};
use axum::routing::{any, post};
use dps_allocation::egress::{EgressPolicy, EgressRefusal, HostLookup};
use dps_allocation::{AllocationError, WebhookConfig, WebhookPolicy};
use dps_model::ErrorCode;
use tokio::net::TcpListener;

use crate::support::{loopback_egress, serve_webhook, start_webhook, WEBHOOK_KEY};
use crate::webhook::{check_message, reply_with, run};

const HUB_ANSWER: &str = r#"{"iotHubHostName":"hub-a.example.net"}"#;

/// Names resolved from a table, as a DNS server under test control would.
#[derive(Debug, Default)]
struct Names(HashMap<&'static str, Vec<IpAddr>>);

impl Names {
    fn with(mut self, name: &'static str, addrs: &[&str]) -> Names {
        self.0
            .insert(name, addrs.iter().map(|a| a.parse().unwrap()).collect());
        self
    }
}

#[async_trait]
impl HostLookup for Names {
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name"))
    }
}

fn policy_with(egress: EgressPolicy, names: Names) -> WebhookPolicy {
    WebhookPolicy::with_lookup(
        WebhookConfig {
            egress,
            timeout: Duration::from_secs(5),
            ..WebhookConfig::default()
        },
        Arc::new(names),
    )
    .unwrap()
}

fn refusal(err: &AllocationError) -> &EgressRefusal {
    match err {
        AllocationError::WebhookEgressRefused { reason, .. } => reason,
        other => panic!("expected an egress refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn loopback_is_refused_by_default_before_any_byte_is_sent() {
    let webhook = start_webhook(|_| (200, HUB_ANSWER.to_owned()), Duration::ZERO).await;
    let https_url = webhook.url.replacen("http://", "https://", 1);
    for url in [&webhook.url, &https_url] {
        let err = run(url, &WebhookPolicy::new(WebhookConfig::default()).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(refusal(&err), EgressRefusal::AddressNotAllowed { .. }),
            "{err:?}"
        );
        assert_eq!(err.error_code(), ErrorCode::CUSTOM_ALLOCATION_FAILED);
        check_message(&err, &["refused by the egress policy", "loopback address"]);
    }
    assert_eq!(webhook.connections(), 0);
}

#[tokio::test]
async fn plain_http_needs_the_operators_http_networks() {
    let webhook = start_webhook(|_| (200, HUB_ANSWER.to_owned()), Duration::ZERO).await;
    let https_only = EgressPolicy::default().allow_network("127.0.0.0/8".parse().unwrap());
    let policy = WebhookPolicy::new(WebhookConfig {
        egress: https_only,
        ..WebhookConfig::default()
    })
    .unwrap();
    let err = run(&webhook.url, &policy).await.unwrap_err();
    assert_eq!(refusal(&err), &EgressRefusal::PlainHttpNotAllowed);
    check_message(&err, &["use https"]);
    assert_eq!(webhook.connections(), 0);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_call_time() {
    let webhook = start_webhook(|_| (200, HUB_ANSWER.to_owned()), Duration::ZERO).await;
    let port = webhook
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let url = format!("http://hook.example.net:{port}/api/allocate?code={WEBHOOK_KEY}");
    let names = || Names::default().with("hook.example.net", &["127.0.0.1"]);
    // Plain http is allowed everywhere, so only the address can refuse it:
    // the URL passes the static check, its resolution does not.
    let http_everywhere = EgressPolicy::default()
        .allow_http("0.0.0.0/0".parse().unwrap())
        .allow_http("::/0".parse().unwrap());
    let err = run(&url, &policy_with(http_everywhere.clone(), names()))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&err),
        &EgressRefusal::NoAllowedAddress {
            name: "hook.example.net".to_owned()
        }
    );
    check_message(
        &err,
        &["hook.example.net resolves to no address this service may call"],
    );
    assert!(!err.to_string().contains("127.0.0.1"), "{err}");
    assert_eq!(webhook.connections(), 0);

    // The same name once the operator allows the address: the resolver's
    // answer is what the connection uses.
    let allowed = http_everywhere.allow_network("127.0.0.1/32".parse().unwrap());
    let allocation = run(&url, &policy_with(allowed, names())).await.unwrap();
    assert_eq!(allocation.hub_host_name, "hub-a.example.net");
    assert_eq!(webhook.received().len(), 1);
}

#[tokio::test]
async fn only_the_allowed_addresses_of_a_name_are_dialled() {
    // Two webhooks on one port: 127.0.0.1 (allowed) and 127.0.0.3 (not).
    let (good, evil) = loop {
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = good.local_addr().unwrap().port();
        if let Ok(evil) = TcpListener::bind(("127.0.0.3", port)).await {
            break (good, evil);
        }
    };
    let port = good.local_addr().unwrap().port();
    let good = serve_webhook(good, |_| (200, HUB_ANSWER.to_owned()), Duration::ZERO);
    let evil = serve_webhook(evil, |_| (200, HUB_ANSWER.to_owned()), Duration::ZERO);
    // The refused address comes first, as a rebinding DNS server would put it.
    let names = Names::default().with("hook.example.net", &["127.0.0.3", "127.0.0.1"]);
    let egress = EgressPolicy::default()
        .allow_network("127.0.0.1/32".parse().unwrap())
        .allow_http("127.0.0.0/8".parse().unwrap());
    let url = format!("http://hook.example.net:{port}/api/allocate?code={WEBHOOK_KEY}");
    let policy = policy_with(egress, names);
    for _ in 0..3 {
        run(&url, &policy).await.unwrap();
    }
    assert_eq!(good.received().len(), 3);
    assert_eq!(evil.connections(), 0);
}

#[tokio::test]
async fn redirects_are_a_failure_and_never_followed() {
    let internal_hits = Arc::new(AtomicUsize::new(0));
    let hits = internal_hits.clone();
    let internal = axum::Router::new().route(
        "/{*path}",
        any(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::OK, HUB_ANSWER) }
        }),
    );
    let internal_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_url = format!(
        "http://{}/admin/secrets",
        internal_listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(internal_listener, internal).await });

    for status in [
        StatusCode::FOUND,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ] {
        let location = internal_url.clone();
        let app = axum::Router::new().route(
            "/api/allocate",
            post(move || async move { (status, [(header::LOCATION, location)], "") }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/api/allocate?code={WEBHOOK_KEY}",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let policy = WebhookPolicy::new(WebhookConfig {
            egress: loopback_egress(),
            ..WebhookConfig::default()
        })
        .unwrap();
        let err = run(&url, &policy).await.unwrap_err();
        assert_eq!(
            err,
            AllocationError::WebhookRedirected {
                host: url.split('/').nth(2).unwrap().to_owned(),
                status: status.as_u16(),
            }
        );
        assert_eq!(err.error_code(), ErrorCode::CUSTOM_ALLOCATION_FAILED);
        check_message(&err, &["redirect", "not followed"]);
    }
    assert_eq!(internal_hits.load(Ordering::SeqCst), 0);
}

/// Log lines captured from the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn logs_of_a_failing_call(level: tracing::Level, body: &'static str) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // A current-thread runtime: the call and its connection tasks all run
    // on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    // tracing caches each callsite's interest; with one scoped dispatcher
    // alive it asks only the dispatcher of the thread that hits a callsite
    // first — maybe a parallel test's thread, with none — and our capture
    // would then never be offered that event. A second live dispatcher makes
    // it ask every dispatcher.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let webhook = reply_with(500, body).await;
    let policy = WebhookPolicy::new(WebhookConfig {
        egress: loopback_egress(),
        ..WebhookConfig::default()
    })
    .unwrap();
    let err = run(&webhook.url, &policy).await.unwrap_err();
    assert!(
        matches!(err, AllocationError::WebhookStatus { status: 500, .. }),
        "{err:?}"
    );
    captured.text()
}

#[tokio::test]
async fn answers_reach_debug_logs_only_and_truncated() {
    const MARKER: &str = "INTERNAL-SECRET-c41d";
    let body: &'static str = Box::leak(format!("{MARKER} {}", "y".repeat(1000)).into_boxed_str());
    let info = logs_of_a_failing_call(tracing::Level::INFO, body).await;
    assert!(!info.contains(MARKER), "INFO logs carry the body: {info}");
    let debug = logs_of_a_failing_call(tracing::Level::DEBUG, body).await;
    assert!(
        debug.contains(MARKER),
        "DEBUG should show the answer's start: {debug}"
    );
    assert!(
        !debug.contains(&"y".repeat(250)),
        "the excerpt is not truncated"
    );
    assert!(
        !debug.contains(WEBHOOK_KEY),
        "the function key was logged: {debug}"
    );
}
