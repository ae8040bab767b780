//! Builders shared by the tests, and a real webhook server on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use dps_allocation::egress::EgressPolicy;
use dps_allocation::{AllocatorConfig, WebhookConfig};
use dps_model::{EnrollmentGroup, IndividualEnrollment, LinkedHub, RegistrationId};
use serde_json::Value;
use tokio::net::TcpListener;

/// A linked hub with weight 1 and no location.
pub(crate) fn linked(host_name: &str) -> LinkedHub {
    LinkedHub {
        host_name: host_name.to_owned(),
        connection_string: format!(
            "HostName={host_name};SharedAccessKeyName=x;SharedAccessKey=eA=="
        ),
        allocation_weight: 1,
        apply_allocation_policy: true,
        location: None,
    }
}

/// A linked hub with a weight.
pub(crate) fn weighted(host_name: &str, weight: u32) -> LinkedHub {
    LinkedHub {
        allocation_weight: weight,
        ..linked(host_name)
    }
}

/// A linked hub in a region.
pub(crate) fn located(host_name: &str, location: &str) -> LinkedHub {
    LinkedHub {
        location: Some(location.to_owned()),
        ..linked(host_name)
    }
}

/// `n` hubs named `hub-{i}.example.net`.
pub(crate) fn hubs(n: usize) -> Vec<LinkedHub> {
    (0..n)
        .map(|i| linked(&format!("hub-{i}.example.net")))
        .collect()
}

/// An individual symmetric-key enrollment for `dev-1` with extra JSON members
/// (`extra` is inserted into the object, e.g. `"allocationPolicy":"static"`).
pub(crate) fn individual(extra: &str) -> IndividualEnrollment {
    let sep = if extra.is_empty() { "" } else { "," };
    let body = format!(
        r#"{{"registrationId":"dev-1","attestation":{{"type":"symmetricKey","symmetricKey":{{"primaryKey":"cHJpbWFyeS1zZWNyZXQ=","secondaryKey":"c2Vjb25kYXJ5LXNlY3JldA=="}}}}{sep}{extra}}}"#
    );
    IndividualEnrollment::from_json(body.as_bytes()).expect("test enrollment is valid")
}

/// A symmetric-key enrollment group `group-1` with extra JSON members.
pub(crate) fn group(extra: &str) -> EnrollmentGroup {
    let sep = if extra.is_empty() { "" } else { "," };
    let body = format!(
        r#"{{"enrollmentGroupId":"group-1","attestation":{{"type":"symmetricKey","symmetricKey":{{"primaryKey":"cHJpbWFyeS1zZWNyZXQ=","secondaryKey":"c2Vjb25kYXJ5LXNlY3JldA=="}}}}{sep}{extra}}}"#
    );
    EnrollmentGroup::from_json(body.as_bytes()).expect("test group is valid")
}

/// A registration id.
pub(crate) fn reg(id: &str) -> RegistrationId {
    RegistrationId::new(id).expect("test registration id is valid")
}

/// What the webhook server received.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    /// The query string (carries `code=`).
    pub(crate) query: Option<String>,
    /// The `Content-Type` header.
    pub(crate) content_type: Option<String>,
    /// The JSON body.
    pub(crate) body: Value,
}

type Reply = dyn Fn(&Value) -> (u16, String) + Send + Sync;

#[derive(Clone)]
struct Mock {
    reply: Arc<Reply>,
    delay: Duration,
    received: Arc<Mutex<Vec<Received>>>,
}

/// The egress policy an operator sets for on-premises webhooks on this
/// host: loopback allowed, plain http too. Tests of anything but the policy
/// itself use it, since their webhooks listen on 127.0.0.1.
pub(crate) fn loopback_egress() -> EgressPolicy {
    let loopback = "127.0.0.0/8".parse().expect("valid CIDR");
    EgressPolicy::default()
        .allow_network(loopback)
        .allow_http(loopback)
}

/// Webhook settings with [`loopback_egress`].
pub(crate) fn loopback_webhooks() -> WebhookConfig {
    WebhookConfig {
        egress: loopback_egress(),
        ..WebhookConfig::default()
    }
}

/// An engine whose webhook may call loopback.
pub(crate) fn loopback_allocator_config() -> AllocatorConfig {
    AllocatorConfig {
        webhook: loopback_webhooks(),
        ..AllocatorConfig::default()
    }
}

/// A webhook on 127.0.0.1 whose answer `reply` computes from the request body.
pub(crate) struct Webhook {
    /// `http://{ip}:{port}/api/allocate?code=SECRET-KEY`.
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// How many connections the server accepted.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The secret in every test webhook URL; it must never show in an error.
pub(crate) const WEBHOOK_KEY: &str = "SECRET-KEY";

fn router(reply: Arc<Reply>, delay: Duration) -> (Router, Arc<Mutex<Vec<Received>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let mock = Mock {
        reply,
        delay,
        received: received.clone(),
    };
    let router = Router::new()
        .route("/api/allocate", post(handle))
        .with_state(mock);
    (router, received)
}

async fn handle(
    State(mock): State<Mock>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    mock.received.lock().expect("lock").push(Received {
        query: uri.query().map(str::to_owned),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.clone(),
    });
    if !mock.delay.is_zero() {
        tokio::time::sleep(mock.delay).await;
    }
    let (status, text) = (mock.reply)(&body);
    (StatusCode::from_u16(status).expect("valid status"), text)
}

/// Start a plain-HTTP webhook on 127.0.0.1.
pub(crate) async fn start_webhook(
    reply: impl Fn(&Value) -> (u16, String) + Send + Sync + 'static,
    delay: Duration,
) -> Webhook {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    serve_webhook(listener, reply, delay)
}

/// Serve a plain-HTTP webhook on `listener`.
pub(crate) fn serve_webhook(
    listener: TcpListener,
    reply: impl Fn(&Value) -> (u16, String) + Send + Sync + 'static,
    delay: Duration,
) -> Webhook {
    use axum::serve::ListenerExt;
    let (router, received) = router(Arc::new(reply), delay);
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Webhook {
        url: format!("http://{addr}/api/allocate?code={WEBHOOK_KEY}"),
        received,
        connections,
        task,
    }
}

/// A webhook that answers with the first hub it was offered.
pub(crate) async fn first_linked_hub_webhook() -> Webhook {
    start_webhook(
        |body| {
            let hub = body["linkedHubs"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (
                200,
                serde_json::json!({ "iotHubHostName": hub }).to_string(),
            )
        },
        Duration::ZERO,
    )
    .await
}

/// A TLS listener for axum: TCP accept, then the rustls handshake.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that rejects our certificate fails the handshake;
            // keep serving the others.
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Start an HTTPS webhook with a certificate for 127.0.0.1 issued by a CA
/// generated now; returns the server and the CA certificate (PEM).
pub(crate) async fn start_tls_webhook(
    reply: impl Fn(&Value) -> (u16, String) + Send + Sync + 'static,
) -> (Webhook, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dps-allocation test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("leaf params");
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf cert");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server config");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let (router, received) = router(Arc::new(reply), Duration::ZERO);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let webhook = Webhook {
        url: format!("https://127.0.0.1:{port}/api/allocate?code={WEBHOOK_KEY}"),
        received,
        connections: Arc::new(AtomicUsize::new(0)),
        task,
    };
    (webhook, ca.pem())
}
