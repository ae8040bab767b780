//! Per-tenant data the registration path reads on every request, cached for
//! a short time: the tenant, its prepared hub table, its enrollment groups
//! and parsed CA anchors. Writes through this server invalidate at once; other
//! replicas' writes are seen within [`TENANT_CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_allocation::HubTable;
use dps_attestation::x509::TrustAnchor;
use dps_model::{AttestationType, EnrollmentGroup, IdScope, Tenant};
use dps_storage::Store;

use crate::respond::ApiError;

/// How long a cached tenant view is trusted.
pub(crate) const TENANT_CACHE_TTL: Duration = Duration::from_secs(2);

/// Everything the pipeline needs to know about one tenant.
pub struct TenantView {
    /// The tenant record.
    pub tenant: Tenant,
    /// Linked hubs prepared for allocation.
    pub hubs: HubTable,
    /// Symmetric-key groups, in id order (tried by derived-key signature).
    pub symmetric_key_groups: Vec<Arc<EnrollmentGroup>>,
    /// X.509 groups, in id order (tried by chain).
    pub x509_groups: Vec<Arc<EnrollmentGroup>>,
    /// Parsed trust anchors of each X.509 group (same order as `x509_groups`),
    /// shared with the verification threads.
    pub x509_anchors: Arc<Vec<Vec<TrustAnchor>>>,
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
                        AttestationType::SymmetricKey => sym.push(Arc::new(group)),
                        AttestationType::X509 => x509.push(Arc::new(group)),
                        _ => {}
                    }
                    (sym, x509)
                });
        let x509_anchors = Arc::new(
            x509_groups
                .iter()
                .map(|group| group_anchors(&tenant, group))
                .collect(),
        );
        let view = Arc::new(TenantView {
            tenant,
            hubs,
            symmetric_key_groups,
            x509_groups,
            x509_anchors,
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

/// The certificates an X.509 group trusts: its signing certificates (trusted
/// as uploaded by the administrator) and the tenant CA certificates its
/// `caReferences` name (trusted only once verified by proof of possession).
fn group_anchors(tenant: &Tenant, group: &EnrollmentGroup) -> Vec<TrustAnchor> {
    let Some(x509) = group.attestation.x509.as_ref() else {
        return Vec::new();
    };
    let id = group.enrollment_group_id.as_str();
    let mut anchors = Vec::new();
    if let Some(signing) = &x509.signing_certificates {
        for (slot, certificate) in [
            ("primary", &signing.primary),
            ("secondary", &signing.secondary),
        ] {
            let Some(pem) = certificate.as_ref().and_then(|c| c.certificate.as_deref()) else {
                continue;
            };
            match TrustAnchor::new(pem, format!("{id}/{slot}"), true) {
                Ok(anchor) => anchors.push(anchor),
                Err(err) => tracing::warn!(group = id, slot, %err, "unusable signing certificate"),
            }
        }
    }
    if let Some(references) = &x509.ca_references {
        for name in [&references.primary, &references.secondary]
            .into_iter()
            .flatten()
        {
            let Some(ca) = tenant.ca_certificate(name) else {
                tracing::warn!(group = id, ca = %name, "caReferences names an unknown CA certificate");
                continue;
            };
            match TrustAnchor::new(ca.certificate.as_bytes(), ca.name.clone(), ca.is_verified) {
                Ok(anchor) => anchors.push(anchor),
                Err(err) => tracing::warn!(group = id, ca = %name, %err, "unusable CA certificate"),
            }
        }
    }
    anchors
}
