//! The service operations endpoint (spec §4): enrollments, groups,
//! registration records, settings, tenants and the operations meter.

use std::sync::Arc;

use axum::Router;
use dps_storage::Store;

use crate::pipeline::TenantCache;
use crate::respond;

/// Shared state of the service API.
#[derive(Clone)]
pub struct ServiceApi {
    store: Arc<dyn Store>,
    tenants: Arc<TenantCache>,
    operator_key: Arc<str>,
    host_suffix: Arc<str>,
}

impl ServiceApi {
    /// The API over this store; `operator_key` guards tenant management.
    pub fn new(
        store: Arc<dyn Store>,
        tenants: Arc<TenantCache>,
        operator_key: String,
        host_suffix: String,
    ) -> Self {
        ServiceApi {
            store,
            tenants,
            operator_key: operator_key.into(),
            host_suffix: host_suffix.into(),
        }
    }
}

/// The service endpoint's router.
pub fn router(api: ServiceApi) -> Router {
    let _ = (
        &api.store,
        &api.tenants,
        &api.operator_key,
        &api.host_suffix,
    );
    Router::new().fallback(respond::not_found).with_state(api)
}
