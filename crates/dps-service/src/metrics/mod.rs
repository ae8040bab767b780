//! Prometheus metrics, served as `GET /metrics` on the admin listener
//! (text exposition format 0.0.4) through `prometheus-client`.
//!
//! Every server has its own [`Registry`]: nothing is process-global, so
//! tests and embedders can run several servers in one process. The series
//! and their labels are listed in `docs/operations.md` ("Metrics"); label
//! values all come from closed sets (transports, outcomes, Azure error
//! codes, listeners, store operations, billing kinds), except the optional
//! tenant label, bounded by `[metrics] max_tenant_labels`.
//!
//! * [`device`]: what the registration pipeline counts.
//! * [`store`]: store call latency and billing operations (a decorator).
//! * [`hub`]: IoT hub call latency (a decorator).
//! * [`collectors`]: series read at scrape time from counters kept
//!   elsewhere (connection gates, the store writer, device latency).
//! * [`refusal_log`]: the rate-limited line per refused or failed
//!   registration.
//! * [`service_api`]: service API answers by status, and its optional
//!   [`access_log`].

pub mod access_log;
pub mod collectors;
pub mod device;
pub mod hub;
pub mod refusal_log;
pub mod service_api;
pub mod store;
mod store_metrics;

use std::sync::Arc;

use dps_storage::Store;
use prometheus_client::registry::Registry;

use crate::config::MetricsConfig;
use crate::connection_limits::ListenerGates;

use self::collectors::{
    ConnectionsCollector, DeviceLatencyCollector, SignatureCacheCollector, StoreWriterCollector,
};
use self::device::DeviceMetrics;
use self::service_api::ServiceApiMetrics;
use self::store::{InstrumentedStore, StoreMetrics};

/// The `Content-Type` of `/metrics` answers.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metrics of one server, before its listeners exist: the pipeline and
/// the store count into these, [`ServerMetrics::finish`] then builds the
/// registry `/metrics` encodes.
#[derive(Debug)]
pub struct ServerMetrics {
    /// The registration pipeline's (hand to `Pipeline::with_metrics`).
    pub device: Arc<DeviceMetrics>,
    /// The store's (see [`ServerMetrics::instrument_store`]).
    pub store: Arc<StoreMetrics>,
    /// The service API's (see [`ServerMetrics::observe_service_api`]).
    pub service_api: Arc<ServiceApiMetrics>,
}

impl ServerMetrics {
    /// Metrics under `config`.
    pub fn new(config: &MetricsConfig) -> Self {
        ServerMetrics {
            device: Arc::new(DeviceMetrics::new(config)),
            store: Arc::new(StoreMetrics::default()),
            service_api: Arc::default(),
        }
    }

    /// `store`, its calls timed and its billing operations counted.
    pub fn instrument_store(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        InstrumentedStore::wrap(store, self.store.clone())
    }

    /// The service API's `router`, its answers counted and, with
    /// `access_log`, each request logged.
    pub fn observe_service_api(&self, router: axum::Router, access_log: bool) -> axum::Router {
        service_api::layer(router, self.service_api.clone(), access_log)
    }

    /// The registry of everything, the listeners' gates and the store
    /// writer read at scrape time.
    pub fn finish(self, gates: &ListenerGates, store: Arc<dyn Store>) -> Arc<MetricsRegistry> {
        let mut registry = Registry::default();
        self.device.register(&mut registry);
        registry.register_collector(Box::new(DeviceLatencyCollector(
            self.device.latency.clone(),
        )));
        self.store.register(&mut registry);
        self.service_api.register(&mut registry);
        registry.register_collector(Box::new(StoreWriterCollector(store)));
        registry.register_collector(Box::new(SignatureCacheCollector));
        registry.register_collector(Box::new(ConnectionsCollector(gates.clone())));
        Arc::new(MetricsRegistry { registry })
    }
}

/// What `/metrics` encodes.
#[derive(Debug)]
pub struct MetricsRegistry {
    registry: Registry,
}

impl MetricsRegistry {
    /// The exposition, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug
        // in a collector, and a partial answer is still worth serving.
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!(%err, "encoding /metrics failed");
        }
        text
    }
}
