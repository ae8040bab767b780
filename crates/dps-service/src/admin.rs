//! The admin listener: `GET /healthz` (the process is alive) and
//! `GET /readyz` (this replica can serve: store reachable, listeners bound,
//! schema current), for load balancers, orchestrators and systemd.
//!
//! Plain HTTP on loopback by default (`[admin]`): an operator endpoint, off
//! the device and service ports. Answers name a failed check and its error,
//! never a storage URL or a credential.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dps_storage::Store;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long the store check may take before it counts as failed: a store
/// that answers slower than this cannot serve registrations either.
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
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
/// Plain HTTP without per-connection caps: the listener is meant for
/// loopback or an operator network, and every answer is cheap.
pub async fn serve(listener: TcpListener, router: Router, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown;
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { crate::listener::stopped(&mut stop).await })
        .await;
    if let Err(err) = result {
        tracing::warn!(%err, "admin listener failed");
    }
}
