//! The JSON shapes of the settings routes: what they answer (never a key)
//! and what they accept.

use dps_model::{AccessRight, AllocationPolicy, ETag, LinkedHub, SharedAccessPolicy, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::settings::redact_connection_string;

/// A linked hub as answered: the connection string without its key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkedHubView<'a> {
    pub(crate) host_name: &'a str,
    pub(crate) connection_string: String,
    pub(crate) allocation_weight: u32,
    pub(crate) apply_allocation_policy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<&'a str>,
}

impl<'a> LinkedHubView<'a> {
    pub(crate) fn of(hub: &'a LinkedHub) -> Self {
        LinkedHubView {
            host_name: &hub.host_name,
            connection_string: redact_connection_string(&hub.connection_string),
            allocation_weight: hub.allocation_weight,
            apply_allocation_policy: hub.apply_allocation_policy,
            location: hub.location.as_deref(),
        }
    }
}

/// A policy as listed: name and rights, never keys.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicySummary<'a> {
    pub(crate) key_name: &'a str,
    pub(crate) rights: &'a [AccessRight],
}

impl<'a> PolicySummary<'a> {
    pub(crate) fn of(policy: &'a SharedAccessPolicy) -> Self {
        PolicySummary {
            key_name: &policy.key_name,
            rights: &policy.rights,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SettingsView<'a> {
    pub(crate) default_allocation_policy: AllocationPolicy,
    pub(crate) synchronous_register: bool,
    pub(crate) etag: &'a ETag,
}

impl<'a> SettingsView<'a> {
    pub(crate) fn of(tenant: &'a Tenant) -> Self {
        SettingsView {
            default_allocation_policy: tenant.default_allocation_policy,
            synchronous_register: tenant.synchronous_register,
            etag: &tenant.etag,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SettingsBody {
    #[serde(default)]
    pub(crate) default_allocation_policy: Option<AllocationPolicy>,
    #[serde(default)]
    pub(crate) synchronous_register: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkedHubBody {
    pub(crate) connection_string: String,
    #[serde(default = "one")]
    pub(crate) allocation_weight: u32,
    #[serde(default = "yes")]
    pub(crate) apply_allocation_policy: bool,
    #[serde(default)]
    pub(crate) location: Option<String>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicyBody {
    pub(crate) rights: Value,
    #[serde(default)]
    pub(crate) primary_key: Option<String>,
    #[serde(default)]
    pub(crate) secondary_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegenerateBody {
    pub(crate) key_type: String,
}
