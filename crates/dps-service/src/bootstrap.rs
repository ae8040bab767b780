//! Tenants declared in the configuration: created at start when missing, and
//! their declared hubs linked (with the configured connection strings).

use dps_hub::ConnectionString;
use dps_model::{IdScope, LinkedHub, Precondition, Tenant};
use dps_storage::Store;

use crate::config::{ServiceConfig, TenantBootstrap};
use crate::ServiceError;

/// Make the store hold every configured tenant; returns them as stored.
pub(crate) async fn ensure_tenants(
    store: &dyn Store,
    config: &ServiceConfig,
) -> Result<Vec<Tenant>, ServiceError> {
    let mut tenants = Vec::new();
    for declared in &config.tenants {
        tenants.push(ensure_tenant(store, config, declared).await?);
    }
    Ok(tenants)
}

async fn ensure_tenant(
    store: &dyn Store,
    config: &ServiceConfig,
    declared: &TenantBootstrap,
) -> Result<Tenant, ServiceError> {
    let invalid = |reason: String| ServiceError::Config {
        reason: format!("tenant {:?}: {reason}", declared.name),
    };
    let storage = |e: dps_storage::StoreError| ServiceError::Storage(e.to_string());
    let hubs = declared
        .linked_hubs
        .iter()
        .map(|hub| {
            let parsed = ConnectionString::parse(&hub.connection_string)
                .map_err(|e| invalid(format!("linked hub connection string: {e}")))?;
            let linked = LinkedHub {
                host_name: parsed.host_name().to_owned(),
                connection_string: hub.connection_string.clone(),
                allocation_weight: hub.allocation_weight,
                apply_allocation_policy: true,
                location: hub.location.clone(),
            };
            linked.validate().map_err(|e| invalid(e.to_string()))?;
            Ok(linked)
        })
        .collect::<Result<Vec<_>, ServiceError>>()?;

    let Some(mut tenant) = store
        .tenant_by_name(&declared.name)
        .await
        .map_err(storage)?
    else {
        let host = declared
            .service_host_name
            .clone()
            .unwrap_or_else(|| format!("{}.{}", declared.name, config.service.host_suffix));
        let mut tenant =
            Tenant::new(declared.name.clone(), host).map_err(|e| invalid(e.to_string()))?;
        if let Some(scope) = &declared.id_scope {
            tenant.id_scope = IdScope::new(scope.as_str()).map_err(|e| invalid(e.to_string()))?;
        }
        tenant.linked_hubs = hubs;
        return store.create_tenant(tenant).await.map_err(storage);
    };
    let mut changed = false;
    for hub in hubs {
        match tenant
            .linked_hubs
            .iter_mut()
            .find(|h| h.host_name.eq_ignore_ascii_case(&hub.host_name))
        {
            Some(existing) if *existing == hub => {}
            Some(existing) => {
                *existing = hub;
                changed = true;
            }
            None => {
                tenant.linked_hubs.push(hub);
                changed = true;
            }
        }
    }
    if changed {
        let etag = tenant.etag.clone();
        tenant = store
            .replace_tenant(tenant, Precondition::Matches(etag))
            .await
            .map_err(storage)?;
    }
    Ok(tenant)
}
