//! The admin listener: `GET /healthz` (the process is alive),
//! `GET /readyz` (this replica can serve: store reachable, listeners bound,
//! schema current), for load balancers, orchestrators and systemd, and
//! `GET /metrics` (Prometheus text format, see [`crate::metrics`]).
//!
//! Plain HTTP on loopback by default (`[admin]`): an operator endpoint, off
//! the device and service ports. Answers name a failed check and its error,
//! never a storage URL or a credential.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use dps_storage::Store;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::metrics::MetricsRegistry;

/// How long the store check may take before it counts as failed: a store
/// that answers slower than this cannot serve registrations either.
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What readiness looks at.
#[derive(Clone)]
pub struct Readiness {
    store: Arc<dyn Store>,
    shutdown: watch::Receiver<bool>,
}

impl Readiness {
    /// Readiness of a server whose listeners are already bound (the admin
    /// listener starts after them) and that stops when `shutdown` turns true.
    pub fn new(store: Arc<dyn Store>, shutdown: watch::Receiver<bool>) -> Self {
        Readiness { store, shutdown }
    }

    /// Run every check: `(ready, JSON body)`.
    pub async fn check(&self) -> (bool, Value) {
        let store = self.store_check().await;
        // The listeners are bound before this one is (`server::start`); they
        // stop accepting once shutdown begins.
        let listeners = if *self.shutdown.borrow() {
            Err("shutting down".to_owned())
        } else {
            Ok(())
        };
        // The store runs its migrations when it is opened and refuses to
        // open a schema newer than it knows; it exposes no other schema
        // version check, so "opened by this process" is the schema check.
        let schema: Result<(), String> = Ok(());
        let ready = store.is_ok() && listeners.is_ok() && schema.is_ok();
        let body = json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": {
                "store": entry(&store),
                "listeners": entry(&listeners),
                "schema": entry(&schema),
            },
        });
        (ready, body)
    }

    /// A real query (the tenant list: small, and what every replica reads),
    /// bounded by [`STORE_CHECK_TIMEOUT`].
    async fn store_check(&self) -> Result<(), String> {
        match tokio::time::timeout(STORE_CHECK_TIMEOUT, self.store.list_tenants()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!(
                "no answer within {} ms",
                STORE_CHECK_TIMEOUT.as_millis()
            )),
        }
    }
}

fn entry(result: &Result<(), String>) -> Value {
    match result {
        Ok(()) => json!({ "ok": true }),
        Err(error) => json!({ "ok": false, "error": error }),
    }
}

/// The admin routes.
pub fn router(readiness: Readiness, metrics: Arc<MetricsRegistry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .route("/metrics", get(metrics_text).with_state(metrics))
}

async fn metrics_text(State(metrics): State<Arc<MetricsRegistry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<Value>) {
    let (ready, body) = readiness.check().await;
    if !ready {
        tracing::warn!(%body, "not ready");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Serve the admin routes on `listener` until `shutdown` turns true.
/// Plain HTTP/1.1 without connection caps: the listener is meant for
/// loopback or an operator network, and every answer is cheap. A client
/// still has [`HEADER_TIMEOUT`] to send its request head, so a stalled one
/// does not hold its connection open.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors, typically: wait instead of spinning.
                    tracing::warn!(%err, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::listener::stopped(&mut shutdown) => break,
        };
        let router = router.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let router = router.clone();
                async move {
                    let response = router
                        .oneshot(request)
                        .await
                        .unwrap_or_else(|never| match never {});
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
    // Open probes get a moment to finish; the rest are dropped with the set.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}
