//! A tenant's settings through the service API (our design, in the style of
//! the enrollment routes; right `ServiceConfig`): linked hubs, allocation
//! defaults, shared access policies, and the operations meter. CA
//! certificates are in [`super::certificates`].
//!
//! Settings are one document with one etag, the tenant's: GETs answer it in
//! `ETag`, writes honour `If-Match` against it. Every write replaces the
//! tenant record conditionally on the etag it read (retrying when another
//! write came first) and invalidates the cached views of the tenant.

use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use dps_attestation::keys::{generate_key, validate_key};
use dps_hub::ConnectionString;
use dps_model::{
    AccessRight, AllocationPolicy, ETag, IdScope, LinkedHub, Precondition, SharedAccessPolicy,
    Tenant,
};
use dps_storage::StoreError;
use serde_json::Value;

use super::routes::SettingsOp;
pub(crate) use super::settings_bodies::{
    LinkedHubBody, LinkedHubView, PolicyBody, PolicySummary, RegenerateBody, SettingsBody,
    SettingsView,
};
use super::wire::{self, invalid, Call};
use super::{certificates, ServiceApi};
use crate::respond::ApiError;

/// Most linked hubs per tenant (the cloud's limit).
pub(crate) const MAX_LINKED_HUBS: usize = 50;
/// How often a settings write re-reads the tenant after losing a race.
const TENANT_WRITE_ATTEMPTS: usize = 5;

/// Answer one settings operation.
pub(crate) async fn handle(
    api: &ServiceApi,
    scope: &IdScope,
    op: SettingsOp,
    call: &Call,
) -> Result<Response, ApiError> {
    match op {
        SettingsOp::ListLinkedHubs => {
            let tenant = load_tenant(api, scope).await?;
            let hubs: Vec<LinkedHubView<'_>> =
                tenant.linked_hubs.iter().map(LinkedHubView::of).collect();
            Ok(wire::ok_tagged(&hubs, Some(&tenant.etag)))
        }
        SettingsOp::GetLinkedHub(host) => {
            let tenant = load_tenant(api, scope).await?;
            let hub = tenant
                .linked_hub(&host)
                .ok_or_else(|| hub_not_found(&host))?;
            Ok(wire::ok_tagged(&LinkedHubView::of(hub), Some(&tenant.etag)))
        }
        SettingsOp::PutLinkedHub(host) => put_linked_hub(api, scope, &host, call).await,
        SettingsOp::DeleteLinkedHub(host) => {
            let precondition = call.if_match();
            modify_tenant(api, scope, |tenant| {
                check_if_match(&precondition, &tenant.etag)?;
                let before = tenant.linked_hubs.len();
                tenant
                    .linked_hubs
                    .retain(|h| !h.host_name.eq_ignore_ascii_case(&host));
                if tenant.linked_hubs.len() == before {
                    return Err(hub_not_found(&host));
                }
                Ok(())
            })
            .await?;
            Ok(wire::no_content())
        }
        SettingsOp::GetSettings => {
            let tenant = load_tenant(api, scope).await?;
            Ok(wire::ok_tagged(
                &SettingsView::of(&tenant),
                Some(&tenant.etag),
            ))
        }
        SettingsOp::PutSettings => {
            let body: SettingsBody = call.json()?;
            if body.default_allocation_policy == Some(AllocationPolicy::Custom) {
                return Err(invalid(
                    "defaultAllocationPolicy",
                    "custom",
                    "custom allocation is set per enrollment, never as the default",
                ));
            }
            let precondition = call.if_match();
            let (tenant, ()) = modify_tenant(api, scope, |tenant| {
                check_if_match(&precondition, &tenant.etag)?;
                if let Some(policy) = body.default_allocation_policy {
                    tenant.default_allocation_policy = policy;
                }
                if let Some(synchronous) = body.synchronous_register {
                    tenant.synchronous_register = synchronous;
                }
                Ok(())
            })
            .await?;
            Ok(wire::ok_tagged(
                &SettingsView::of(&tenant),
                Some(&tenant.etag),
            ))
        }
        SettingsOp::ListPolicies => {
            let tenant = load_tenant(api, scope).await?;
            let policies: Vec<PolicySummary<'_>> = tenant
                .access_policies
                .iter()
                .map(PolicySummary::of)
                .collect();
            Ok(wire::ok_tagged(&policies, Some(&tenant.etag)))
        }
        SettingsOp::GetPolicy(name) => {
            let tenant = load_tenant(api, scope).await?;
            let policy = tenant
                .access_policy(&name)
                .ok_or_else(|| policy_not_found(&name))?;
            Ok(wire::ok_tagged(
                &PolicySummary::of(policy),
                Some(&tenant.etag),
            ))
        }
        SettingsOp::PutPolicy(name) => put_policy(api, scope, &name, call).await,
        SettingsOp::DeletePolicy(name) => {
            let precondition = call.if_match();
            modify_tenant(api, scope, |tenant| {
                check_if_match(&precondition, &tenant.etag)?;
                let before = tenant.access_policies.len();
                tenant
                    .access_policies
                    .retain(|p| !p.key_name.eq_ignore_ascii_case(&name));
                if tenant.access_policies.len() == before {
                    return Err(policy_not_found(&name));
                }
                keep_a_config_policy(tenant)
            })
            .await?;
            Ok(wire::no_content())
        }
        SettingsOp::RegenerateKey(name) => {
            let body: RegenerateBody = call.json()?;
            let which = body.key_type.to_ascii_lowercase();
            if which != "primary" && which != "secondary" {
                return Err(invalid(
                    "keyType",
                    body.key_type,
                    "must be primary or secondary",
                ));
            }
            let precondition = call.if_match();
            let (_, policy) = modify_tenant(api, scope, |tenant| {
                check_if_match(&precondition, &tenant.etag)?;
                let policy = tenant
                    .access_policies
                    .iter_mut()
                    .find(|p| p.key_name.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| policy_not_found(&name))?;
                if which == "primary" {
                    policy.primary_key = generate_key();
                } else {
                    policy.secondary_key = generate_key();
                }
                Ok(policy.clone())
            })
            .await?;
            Ok(wire::ok(&policy))
        }
        SettingsOp::ListCertificates
        | SettingsOp::GetCertificate(_)
        | SettingsOp::PutCertificate(_)
        | SettingsOp::DeleteCertificate(_)
        | SettingsOp::GenerateVerificationCode(_)
        | SettingsOp::VerifyCertificate(_) => certificates::handle(api, scope, op, call).await,
        SettingsOp::MeterReport => meter_report(api, scope, call).await,
    }
}

/// The tenant as stored now.
pub(crate) async fn load_tenant(api: &ServiceApi, scope: &IdScope) -> Result<Tenant, ApiError> {
    api.store.tenant(scope).await?.ok_or_else(|| {
        StoreError::UnknownTenant {
            id_scope: scope.clone(),
        }
        .into()
    })
}

/// Read the tenant, apply `change`, and replace it if nobody wrote in
/// between (else read again and re-apply). Invalidates the tenant's caches.
pub(crate) async fn modify_tenant<T>(
    api: &ServiceApi,
    scope: &IdScope,
    mut change: impl FnMut(&mut Tenant) -> Result<T, ApiError>,
) -> Result<(Tenant, T), ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = load_tenant(api, scope).await?;
        let mut next = current.clone();
        let out = change(&mut next)?;
        match api
            .store
            .replace_tenant(next, Precondition::Matches(current.etag.clone()))
            .await
        {
            Ok(written) => {
                api.tenant_written(scope);
                return Ok((written, out));
            }
            Err(StoreError::PreconditionFailed { .. }) if attempt < TENANT_WRITE_ATTEMPTS => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// A caller's `If-Match` against an etag: 412 on mismatch.
pub(crate) fn check_if_match(precondition: &Precondition, current: &ETag) -> Result<(), ApiError> {
    if precondition.allows(Some(current)) {
        Ok(())
    } else {
        Err(ApiError::precondition_failed(format!(
            "Precondition failed: the current etag is {current}."
        )))
    }
}

/// `GET /operations/report?from=…&to=…`: the tenant's meter.
pub(crate) async fn meter_report(
    api: &ServiceApi,
    scope: &IdScope,
    call: &Call,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let parse = |name: &'static str| -> Result<Option<DateTime<Utc>>, ApiError> {
        call.query_param(name)
            .map(|text| {
                // An unencoded `+00:00` arrives as ` 00:00` (form decoding):
                // a time has no spaces, so take them back as `+`.
                DateTime::parse_from_rfc3339(&text.replace(' ', "+"))
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| invalid(name, text, format!("not an RFC 3339 time: {e}")))
            })
            .transpose()
    };
    let to = parse("to")?.unwrap_or(now);
    let from = parse("from")?.unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(invalid("from", from.to_rfc3339(), "must be before `to`"));
    }
    let report = api.store.operation_report(scope, from, to).await?;
    Ok(wire::ok(&report))
}

async fn put_linked_hub(
    api: &ServiceApi,
    scope: &IdScope,
    host: &str,
    call: &Call,
) -> Result<Response, ApiError> {
    let body: LinkedHubBody = call.json()?;
    let precondition = call.if_match();
    let (_, hub) = modify_tenant(api, scope, |tenant| {
        check_if_match(&precondition, &tenant.etag)?;
        let stored = tenant.linked_hub(host).cloned();
        // A GET shows the connection string without its key; sending that
        // back keeps the stored key.
        let text = match &stored {
            Some(stored) if !has_key(&body.connection_string) => stored.connection_string.clone(),
            _ => body.connection_string.clone(),
        };
        let parsed = ConnectionString::parse(&text)
            .map_err(|e| invalid("connectionString", "(not shown)", e.to_string()))?;
        if !parsed.host_name().eq_ignore_ascii_case(host) {
            return Err(invalid(
                "connectionString",
                parsed.host_name().to_owned(),
                format!("HostName must be the hub in the path ({host})"),
            ));
        }
        let hub = LinkedHub {
            host_name: parsed.host_name().to_owned(),
            connection_string: text,
            allocation_weight: body.allocation_weight,
            apply_allocation_policy: body.apply_allocation_policy,
            location: body.location.clone(),
        };
        hub.validate()?;
        match tenant
            .linked_hubs
            .iter()
            .position(|h| h.host_name.eq_ignore_ascii_case(host))
        {
            Some(i) => tenant.linked_hubs[i] = hub.clone(),
            None if tenant.linked_hubs.len() >= MAX_LINKED_HUBS => {
                return Err(invalid(
                    "hostName",
                    host.to_owned(),
                    format!("a service links at most {MAX_LINKED_HUBS} hubs"),
                ))
            }
            None => tenant.linked_hubs.push(hub.clone()),
        }
        Ok(hub)
    })
    .await?;
    Ok(wire::ok(&LinkedHubView::of(&hub)))
}

async fn put_policy(
    api: &ServiceApi,
    scope: &IdScope,
    name: &str,
    call: &Call,
) -> Result<Response, ApiError> {
    check_policy_name(name)?;
    let body: PolicyBody = call.json()?;
    let rights = parse_rights(&body.rights)?;
    for (field, key) in [
        ("primaryKey", &body.primary_key),
        ("secondaryKey", &body.secondary_key),
    ] {
        if let Some(key) = key {
            validate_key(key).map_err(|e| invalid(field, "(not shown)", e.to_string()))?;
        }
    }
    let precondition = call.if_match();
    let (_, policy) = modify_tenant(api, scope, |tenant| {
        check_if_match(&precondition, &tenant.etag)?;
        let stored = tenant.access_policy(name).cloned();
        let keep = |given: &Option<String>, stored: Option<&String>| {
            given
                .clone()
                .or_else(|| stored.cloned())
                .unwrap_or_else(generate_key)
        };
        let policy = SharedAccessPolicy {
            key_name: stored
                .as_ref()
                .map_or_else(|| name.to_owned(), |s| s.key_name.clone()),
            primary_key: keep(&body.primary_key, stored.as_ref().map(|s| &s.primary_key)),
            secondary_key: keep(
                &body.secondary_key,
                stored.as_ref().map(|s| &s.secondary_key),
            ),
            rights: rights.clone(),
        };
        match tenant
            .access_policies
            .iter_mut()
            .find(|p| p.key_name.eq_ignore_ascii_case(name))
        {
            Some(existing) => *existing = policy.clone(),
            None => tenant.access_policies.push(policy.clone()),
        }
        keep_a_config_policy(tenant)?;
        Ok(policy)
    })
    .await?;
    // The keys are answered once, here and on regenerateKey; GETs hide them.
    Ok(wire::ok(&policy))
}

fn check_policy_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "keyName",
            name.to_owned(),
            "1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Rights as an array of names or Azure's comma-separated text
/// (`"EnrollmentRead, EnrollmentWrite"`), names matched case-insensitively.
fn parse_rights(value: &Value) -> Result<Vec<AccessRight>, ApiError> {
    let names: Vec<String> = match value {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("rights", value.to_string(), "names must be strings"))?,
        Value::String(text) => text
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => {
            return Err(invalid(
                "rights",
                value.to_string(),
                "an array of right names",
            ))
        }
    };
    let mut rights = Vec::new();
    for name in names {
        let right = AccessRight::ALL
            .into_iter()
            .find(|r| format!("{r:?}").eq_ignore_ascii_case(&name))
            .ok_or_else(|| {
                invalid(
                    "rights",
                    name.clone(),
                    "one of ServiceConfig, EnrollmentRead, EnrollmentWrite, DeviceConnect, RegistrationStatusRead, RegistrationStatusWrite",
                )
            })?;
        if !rights.contains(&right) {
            rights.push(right);
        }
    }
    if rights.is_empty() {
        return Err(invalid("rights", "[]", "a policy needs at least one right"));
    }
    Ok(rights)
}

/// Nobody may lock the tenant's administrators out of its settings.
fn keep_a_config_policy(tenant: &Tenant) -> Result<(), ApiError> {
    if tenant
        .access_policies
        .iter()
        .any(|p| p.has(AccessRight::ServiceConfig))
    {
        Ok(())
    } else {
        Err(invalid(
            "rights",
            "",
            "at least one policy must keep the ServiceConfig right",
        ))
    }
}

fn has_key(connection_string: &str) -> bool {
    connection_string.split(';').any(|part| {
        part.split_once('=').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("SharedAccessKey") && !value.trim().is_empty()
        })
    })
}

/// A connection string without its `SharedAccessKey` part.
pub(crate) fn redact_connection_string(text: &str) -> String {
    text.split(';')
        .filter(|part| {
            !part
                .split_once('=')
                .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("SharedAccessKey"))
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn hub_not_found(host: &str) -> ApiError {
    ApiError::linked_hub_not_found(host)
}

fn policy_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Shared access policy {name:?} not found."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_lose_their_key() {
        assert_eq!(
            redact_connection_string("HostName=h;SharedAccessKeyName=owner;SharedAccessKey=abc="),
            "HostName=h;SharedAccessKeyName=owner"
        );
        assert!(has_key("HostName=h;sharedaccesskey=abc"));
        assert!(!has_key("HostName=h;SharedAccessKeyName=owner"));
    }

    #[test]
    fn rights_in_both_spellings() {
        let rights = parse_rights(&serde_json::json!("enrollmentRead, ServiceConfig")).unwrap();
        assert_eq!(
            rights,
            vec![AccessRight::EnrollmentRead, AccessRight::ServiceConfig]
        );
        let err = parse_rights(&serde_json::json!(["Everything"])).unwrap_err();
        assert!(err.message.contains("rights"), "{err:?}");
    }
}
