//! Tenants declared in the configuration: created at start when missing, and
//! their declared hubs linked (with the configured connection strings).
//!
//! The configuration seeds; the service API manages. A declared hub that is
//! missing is linked with its declared weight and location; one already
//! linked only takes the declared connection string (key rotation through
//! the file), keeping the weight, location and apply-allocation-policy flag
//! an administrator may have changed since. Replicas starting together race
//! on the same rows; the loser reads the winner's tenant and tries again.

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

/// Attempts against a concurrently starting replica before giving up.
const RACE_ATTEMPTS: usize = 5;

async fn ensure_tenant(
    store: &dyn Store,
    config: &ServiceConfig,
    declared: &TenantBootstrap,
) -> Result<Tenant, ServiceError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ensure_tenant_once(store, config, declared).await {
            Err(BootstrapError::Raced(_)) if attempt < RACE_ATTEMPTS => continue,
            Err(BootstrapError::Raced(e)) | Err(BootstrapError::Storage(e)) => {
                return Err(ServiceError::Storage(format!(
                    "tenant {:?}: {e}",
                    declared.name
                )))
            }
            Err(BootstrapError::Service(e)) => return Err(e),
            Ok(tenant) => return Ok(tenant),
        }
    }
}

enum BootstrapError {
    /// Another replica wrote the same tenant first.
    Raced(dps_storage::StoreError),
    Storage(dps_storage::StoreError),
    Service(ServiceError),
}

impl From<ServiceError> for BootstrapError {
    fn from(e: ServiceError) -> Self {
        BootstrapError::Service(e)
    }
}

impl From<dps_storage::StoreError> for BootstrapError {
    fn from(e: dps_storage::StoreError) -> Self {
        match e {
            dps_storage::StoreError::AlreadyExists { .. }
            | dps_storage::StoreError::PreconditionFailed { .. } => BootstrapError::Raced(e),
            other => BootstrapError::Storage(other),
        }
    }
}

async fn ensure_tenant_once(
    store: &dyn Store,
    config: &ServiceConfig,
    declared: &TenantBootstrap,
) -> Result<Tenant, BootstrapError> {
    let invalid = |reason: String| ServiceError::Config {
        reason: format!("tenant {:?}: {reason}", declared.name),
    };
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

    let Some(mut tenant) = store.tenant_by_name(&declared.name).await? else {
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
        return Ok(store.create_tenant(tenant).await?);
    };
    let mut changed = false;
    for hub in hubs {
        match tenant
            .linked_hubs
            .iter_mut()
            .find(|h| h.host_name.eq_ignore_ascii_case(&hub.host_name))
        {
            Some(existing) if existing.connection_string == hub.connection_string => {}
            Some(existing) => {
                existing.connection_string = hub.connection_string;
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
            .await?;
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dps_storage::MemoryStore;

    use super::*;
    use crate::config::LinkedHubBootstrap;

    fn hub_cs(host: &str, key: &str) -> String {
        format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={key}")
    }

    fn config_with(hubs: Vec<LinkedHubBootstrap>) -> ServiceConfig {
        ServiceConfig {
            tenants: vec![TenantBootstrap {
                name: "factory".to_owned(),
                service_host_name: Some("factory.example.com".to_owned()),
                id_scope: None,
                linked_hubs: hubs,
            }],
            ..ServiceConfig::default()
        }
    }

    fn declared(host: &str, key: &str, weight: u32) -> LinkedHubBootstrap {
        LinkedHubBootstrap {
            connection_string: hub_cs(host, key),
            allocation_weight: weight,
            location: Some("westeurope".to_owned()),
        }
    }

    #[tokio::test]
    async fn restarts_keep_what_administrators_changed_and_take_new_keys() {
        let store = MemoryStore::new();
        let first = config_with(vec![declared("hub1.example.com", "a2V5MQ==", 1)]);
        let tenant = ensure_tenants(&store, &first).await.unwrap().remove(0);
        assert_eq!(tenant.linked_hubs[0].allocation_weight, 1);

        // An administrator reweighs the hub and stops applying the policy to it.
        let mut changed = tenant.clone();
        changed.linked_hubs[0].allocation_weight = 7;
        changed.linked_hubs[0].apply_allocation_policy = false;
        store
            .replace_tenant(changed, Precondition::Matches(tenant.etag.clone()))
            .await
            .unwrap();

        // Same file again: nothing is reset.
        let again = ensure_tenants(&store, &first).await.unwrap().remove(0);
        assert_eq!(again.linked_hubs[0].allocation_weight, 7);
        assert!(!again.linked_hubs[0].apply_allocation_policy);

        // A rotated key and a new hub in the file: the key is taken, the new
        // hub linked with its declared weight, the administrator's weight kept.
        let rotated = config_with(vec![
            declared("hub1.example.com", "a2V5Mg==", 1),
            declared("hub2.example.com", "a2V5Mw==", 3),
        ]);
        let tenant = ensure_tenants(&store, &rotated).await.unwrap().remove(0);
        assert_eq!(tenant.linked_hubs.len(), 2);
        assert_eq!(
            tenant.linked_hubs[0].connection_string,
            hub_cs("hub1.example.com", "a2V5Mg==")
        );
        assert_eq!(tenant.linked_hubs[0].allocation_weight, 7);
        assert_eq!(tenant.linked_hubs[1].allocation_weight, 3);
        assert_eq!(
            tenant.id_scope, again.id_scope,
            "the ID scope never changes"
        );
    }

    #[tokio::test]
    async fn replicas_starting_together_agree_on_one_tenant() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let config = Arc::new(config_with(vec![declared(
            "hub1.example.com",
            "a2V5MQ==",
            1,
        )]));
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let (store, config) = (store.clone(), config.clone());
                tokio::spawn(async move { ensure_tenants(store.as_ref(), &config).await })
            })
            .collect();
        let mut scopes = Vec::new();
        for start in starts {
            scopes.push(start.await.unwrap().unwrap().remove(0).id_scope);
        }
        scopes.dedup();
        assert_eq!(scopes.len(), 1, "every replica sees the same tenant");
        assert_eq!(store.list_tenants().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_bad_declared_connection_string_is_a_config_error() {
        let store = MemoryStore::new();
        let mut hub = declared("hub1.example.com", "a2V5MQ==", 1);
        hub.connection_string = "HostName=;nonsense".to_owned();
        let err = ensure_tenants(&store, &config_with(vec![hub]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ServiceError::Config { reason } if reason.contains("factory")),
            "{err}"
        );
    }
}
