//! The service API's answers by status (`dps_service_requests_total`:
//! `status="429"` are its throttled answers), counted by a middleware on
//! its router, which also writes the optional access log.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::access_log;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// The service API's counters.
#[derive(Debug, Default)]
pub struct ServiceApiMetrics {
    answers: Family<StatusLabel, Counter>,
}

impl ServiceApiMetrics {
    /// Expose these metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dps_service_requests",
            "Service API answers by HTTP status (429: throttled)",
            self.answers.clone(),
        );
    }

    fn answered(&self, status: u16) {
        self.answers.get_or_create(&StatusLabel { status }).inc();
    }
}

#[derive(Clone)]
struct Observed {
    metrics: Arc<ServiceApiMetrics>,
    access_log: bool,
}

/// `router` with its answers counted into `metrics` and, when
/// `access_log` is on, each request logged (see [`access_log`]).
pub fn layer(router: Router, metrics: Arc<ServiceApiMetrics>, access_log: bool) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Observed {
            metrics,
            access_log,
        },
        observe,
    ))
}

async fn observe(State(observed): State<Observed>, request: Request, next: Next) -> Response {
    let response = if observed.access_log {
        access_log::log_request(request, next).await
    } else {
        next.run(request).await
    };
    observed.metrics.answered(response.status().as_u16());
    response
}
