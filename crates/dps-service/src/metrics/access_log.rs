//! The optional access log of the service API (`[log] access_log = true`):
//! one INFO line per request under the target `dps::access`, with method,
//! path, status, duration and peer address (installed by
//! [`super::service_api::layer`]).
//!
//! The path is logged without its query string, and no header is logged:
//! the `Authorization` header carries a SAS token, and nothing else of a
//! request is needed to follow traffic.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::listener::ConnectionInfo;

/// The tracing target of access log lines.
pub const TARGET: &str = "dps::access";

/// Run `request` through `next`, then log it.
pub(super) async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // `uri().path()` excludes the query string.
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectionInfo>()
        .map(|info| info.peer.to_string());
    let response = next.run(request).await;
    tracing::info!(
        target: TARGET,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        peer = peer.as_deref().unwrap_or("-"),
        "service API request"
    );
    response
}
