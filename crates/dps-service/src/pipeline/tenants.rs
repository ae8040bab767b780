//! Per-tenant data the registration path reads on every request, cached for
//! a short time: the tenant, its prepared hub table, its enrollment groups
//! and parsed CA anchors. Writes through this server invalidate at once; other
//! replicas' writes are seen within [`TENANT_CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_allocation::HubTable;
use dps_model::{AttestationType, EnrollmentGroup, IdScope, Tenant};
use dps_storage::Store;

use crate::respond::ApiError;

/// How long a cached tenant view is trusted.
pub const TENANT_CACHE_TTL: Duration = Duration::from_secs(2);

/// Everything the pipeline needs to know about one tenant.
pub struct TenantView {
    /// The tenant record.
    pub tenant: Tenant,
    /// Linked hubs prepared for allocation.
    pub hubs: HubTable,
    /// Symmetric-key groups, in id order (tried by derived-key signature).
    pub symmetric_key_groups: Vec<EnrollmentGroup>,
    /// X.509 groups, in id order (tried by chain).
    pub x509_groups: Vec<EnrollmentGroup>,
    loaded: Instant,
}

/// The cache.
#[derive(Default)]
pub struct TenantCache {
    views: Mutex<HashMap<String, Arc<TenantView>>>,
}

impl TenantCache {
    /// The view of the tenant with this scope, or `None` for an unknown scope.
    pub async fn get(
        &self,
        store: &dyn Store,
        id_scope: &IdScope,
    ) -> Result<Option<Arc<TenantView>>, ApiError> {
        let key = id_scope.key();
        if let Some(view) = self.lock().get(&key) {
            if view.loaded.elapsed() < TENANT_CACHE_TTL {
                return Ok(Some(view.clone()));
            }
        }
        let Some(tenant) = store.tenant(id_scope).await.map_err(ApiError::internal)? else {
            self.lock().remove(&key);
            return Ok(None);
        };
        let groups = store
            .all_enrollment_groups(id_scope)
            .await
            .map_err(ApiError::internal)?;
        let hubs = HubTable::new(&tenant.linked_hubs).map_err(ApiError::internal)?;
        let (symmetric_key_groups, x509_groups) =
            groups
                .into_iter()
                .fold((Vec::new(), Vec::new()), |(mut sym, mut x509), group| {
                    match group.attestation.kind {
                        AttestationType::SymmetricKey => sym.push(group),
                        AttestationType::X509 => x509.push(group),
                        _ => {}
                    }
                    (sym, x509)
                });
        let view = Arc::new(TenantView {
            tenant,
            hubs,
            symmetric_key_groups,
            x509_groups,
            loaded: Instant::now(),
        });
        self.lock().insert(key, view.clone());
        Ok(Some(view))
    }

    /// Forget a tenant's view after a write through this server.
    pub fn invalidate(&self, id_scope: &IdScope) {
        self.lock().remove(&id_scope.key());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TenantView>>> {
        self.views
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
