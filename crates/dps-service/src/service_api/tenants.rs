//! Operator-level tenant management: `GET /tenants`, `GET/PUT/DELETE
//! /tenants/{name}` and a tenant's meter, authorised by the server's operator
//! key (`skn=operator`).
//!
//! Creating a tenant generates its ID scope (retried on a collision), a
//! `provisioningserviceowner` policy with every right and fresh keys, and the
//! secret TPM challenges are derived from; the answer to that PUT is the only
//! one that carries the owner's connection string.

use axum::response::Response;
use chrono::Utc;
use dps_attestation::keys::generate_key;
use dps_hub::ConnectionString;
use dps_model::{
    AccessRight, AllocationPolicy, ETag, IdScope, LinkedHub, SharedAccessPolicy, Tenant,
};
use dps_storage::{Entity, StoreError};
use serde::{Deserialize, Serialize};

use super::routes::TenantOp;
use super::settings::{check_if_match, meter_report, LinkedHubBody, LinkedHubView, PolicySummary};
use super::wire::{self, invalid, Call};
use super::ServiceApi;
use crate::respond::ApiError;

/// The policy every new tenant gets.
pub(crate) const OWNER_POLICY: &str = "provisioningserviceowner";
/// How many fresh ID scopes to try before giving up.
const SCOPE_ATTEMPTS: usize = 8;

/// Answer one tenant operation.
pub(crate) async fn handle(
    api: &ServiceApi,
    op: TenantOp,
    call: &Call,
) -> Result<Response, ApiError> {
    match op {
        TenantOp::List => {
            let tenants = api.store.list_tenants().await?;
            let views: Vec<TenantView<'_>> = tenants.iter().map(TenantView::of).collect();
            Ok(wire::ok(&views))
        }
        TenantOp::Get(name) => {
            let tenant = by_name(api, &name).await?;
            Ok(wire::ok_tagged(
                &TenantView::of(&tenant),
                Some(&tenant.etag),
            ))
        }
        TenantOp::Put(name) => put(api, &name, call).await,
        TenantOp::Delete(name) => {
            let tenant = by_name(api, &name).await?;
            api.store
                .delete_tenant(&tenant.id_scope, call.if_match())
                .await?;
            api.tenant_written(&tenant.id_scope);
            Ok(wire::no_content())
        }
        TenantOp::MeterReport(name) => {
            let tenant = by_name(api, &name).await?;
            meter_report(api, &tenant.id_scope, call).await
        }
        TenantOp::ListKeys(name) => {
            // The operator's way to the keys of a tenant it did not create
            // through this API (declared in the configuration, or whose
            // creation answer was lost), like Azure's management `listKeys`.
            let tenant = by_name(api, &name).await?;
            let value: Vec<PolicyKeys<'_>> = tenant
                .access_policies
                .iter()
                .map(|policy| PolicyKeys {
                    policy,
                    primary_connection_string: tenant
                        .connection_string(&policy.key_name)
                        .unwrap_or_default(),
                })
                .collect();
            Ok(wire::ok(&serde_json::json!({ "value": value })))
        }
    }
}

async fn by_name(api: &ServiceApi, name: &str) -> Result<Tenant, ApiError> {
    api.store.tenant_by_name(name).await?.ok_or_else(|| {
        StoreError::NotFound {
            entity: Entity::Tenant,
            id: name.to_owned(),
        }
        .into()
    })
}

async fn put(api: &ServiceApi, name: &str, call: &Call) -> Result<Response, ApiError> {
    Tenant::validate_name(name)?;
    let body: TenantBody = if call.body.iter().all(u8::is_ascii_whitespace) {
        TenantBody::default()
    } else {
        call.json()?
    };
    if body.default_allocation_policy == Some(AllocationPolicy::Custom) {
        return Err(invalid(
            "defaultAllocationPolicy",
            "custom",
            "custom allocation is set per enrollment, never as the default",
        ));
    }
    if let Some(host) = &body.service_host_name {
        check_host(host)?;
    }
    let hubs = body
        .linked_hubs
        .as_deref()
        .map(|hubs| hubs.iter().map(linked_hub).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    if let Some(hubs) = &hubs {
        check_hub_list(hubs)?;
    }
    let precondition = call.if_match();

    if let Some(mut tenant) = api.store.tenant_by_name(name).await? {
        check_if_match(&precondition, &tenant.etag)?;
        let expected = tenant.etag.clone();
        if let Some(host) = body.service_host_name {
            tenant.service_host_name = host;
        }
        if let Some(policy) = body.default_allocation_policy {
            tenant.default_allocation_policy = policy;
        }
        if let Some(synchronous) = body.synchronous_register {
            tenant.synchronous_register = synchronous;
        }
        if let Some(hubs) = hubs {
            tenant.linked_hubs = hubs;
        }
        let tenant = api
            .store
            .replace_tenant(tenant, dps_model::Precondition::Matches(expected))
            .await?;
        api.tenant_written(&tenant.id_scope);
        return Ok(wire::ok_tagged(
            &TenantView::of(&tenant),
            Some(&tenant.etag),
        ));
    }

    if !precondition.allows(None) {
        return Err(ApiError::precondition_failed(format!(
            "Precondition failed: there is no tenant {name:?}."
        )));
    }
    let owner = SharedAccessPolicy {
        key_name: OWNER_POLICY.to_owned(),
        primary_key: generate_key(),
        secondary_key: generate_key(),
        rights: AccessRight::ALL.to_vec(),
    };
    let host = body
        .service_host_name
        .unwrap_or_else(|| format!("{name}.{}", api.host_suffix));
    let mut attempt = 0;
    let tenant = loop {
        attempt += 1;
        let tenant = Tenant {
            name: name.to_owned(),
            id_scope: IdScope::generate(),
            service_host_name: host.clone(),
            default_allocation_policy: body.default_allocation_policy.unwrap_or_default(),
            linked_hubs: hubs.clone().unwrap_or_default(),
            access_policies: vec![owner.clone()],
            ca_certificates: Vec::new(),
            synchronous_register: body.synchronous_register.unwrap_or(false),
            challenge_secret: generate_key(),
            etag: ETag::generate(),
            created: Utc::now(),
        };
        let scope = tenant.id_scope.clone();
        match api.store.create_tenant(tenant).await {
            Ok(created) => break created,
            // Taken scope (the name was free a moment ago): try another one.
            Err(StoreError::AlreadyExists { id, .. })
                if id.eq_ignore_ascii_case(scope.as_str()) && attempt < SCOPE_ATTEMPTS => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ApiError::conflict(format!(
                    "Tenant {name:?} already exists."
                )))
            }
            Err(err) => return Err(err.into()),
        }
    };
    api.tenant_written(&tenant.id_scope);
    let connection_string = format!(
        "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
        tenant.service_host_name, owner.key_name, owner.primary_key
    );
    Ok(wire::ok_tagged(
        &CreatedTenant {
            tenant: TenantView::of(&tenant),
            owner_connection_string: connection_string,
        },
        Some(&tenant.etag),
    ))
}

fn linked_hub(body: &LinkedHubBody) -> Result<LinkedHub, ApiError> {
    let parsed = ConnectionString::parse(&body.connection_string)
        .map_err(|e| invalid("linkedHubs.connectionString", "(not shown)", e.to_string()))?;
    let hub = LinkedHub {
        host_name: parsed.host_name().to_owned(),
        connection_string: body.connection_string.clone(),
        allocation_weight: body.allocation_weight,
        apply_allocation_policy: body.apply_allocation_policy,
        location: body.location.clone(),
    };
    hub.validate()?;
    Ok(hub)
}

/// The limits the settings routes keep, for a whole list given at once.
fn check_hub_list(hubs: &[LinkedHub]) -> Result<(), ApiError> {
    if hubs.len() > super::settings::MAX_LINKED_HUBS {
        return Err(invalid(
            "linkedHubs",
            hubs.len().to_string(),
            format!(
                "a service links at most {} hubs",
                super::settings::MAX_LINKED_HUBS
            ),
        ));
    }
    for (i, hub) in hubs.iter().enumerate() {
        if hubs[..i]
            .iter()
            .any(|h| h.host_name.eq_ignore_ascii_case(&hub.host_name))
        {
            return Err(invalid(
                "linkedHubs",
                hub.host_name.clone(),
                "the same hub is linked twice",
            ));
        }
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), ApiError> {
    let ok =
        !host.is_empty() && host.len() <= 253 && !host.contains(['/', ' ', '?', '#', '@', '\\']);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "serviceHostName",
            host.to_owned(),
            "must be a host name (tokens carry it in sr)",
        ))
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantBody {
    #[serde(default)]
    service_host_name: Option<String>,
    #[serde(default)]
    default_allocation_policy: Option<AllocationPolicy>,
    #[serde(default)]
    synchronous_register: Option<bool>,
    #[serde(default)]
    linked_hubs: Option<Vec<LinkedHubBody>>,
}

/// A tenant as the operator sees it: no keys, no connection-string keys, no challenge secret.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantView<'a> {
    name: &'a str,
    id_scope: &'a IdScope,
    service_host_name: &'a str,
    default_allocation_policy: AllocationPolicy,
    synchronous_register: bool,
    linked_hubs: Vec<LinkedHubView<'a>>,
    access_policies: Vec<PolicySummary<'a>>,
    ca_certificates: Vec<&'a str>,
    etag: &'a ETag,
    #[serde(with = "dps_model::time::azure")]
    created: chrono::DateTime<Utc>,
}

impl<'a> TenantView<'a> {
    fn of(tenant: &'a Tenant) -> Self {
        TenantView {
            name: &tenant.name,
            id_scope: &tenant.id_scope,
            service_host_name: &tenant.service_host_name,
            default_allocation_policy: tenant.default_allocation_policy,
            synchronous_register: tenant.synchronous_register,
            linked_hubs: tenant.linked_hubs.iter().map(LinkedHubView::of).collect(),
            access_policies: tenant
                .access_policies
                .iter()
                .map(PolicySummary::of)
                .collect(),
            ca_certificates: tenant
                .ca_certificates
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
            etag: &tenant.etag,
            created: tenant.created,
        }
    }
}

/// A shared access policy with its keys, as `listKeys` answers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyKeys<'a> {
    #[serde(flatten)]
    policy: &'a SharedAccessPolicy,
    primary_connection_string: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedTenant<'a> {
    #[serde(flatten)]
    tenant: TenantView<'a>,
    owner_connection_string: String,
}
