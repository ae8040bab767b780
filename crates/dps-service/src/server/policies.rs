//! Allocation policies registered with [`ServerBuilder::policy`], beside
//! the built-ins.
//!
//! On the wire a registered policy is a custom allocation whose webhook URL
//! names it: `"allocationPolicy": "custom"` with
//! `"customAllocationDefinition": {"webhookUrl": "dps-policy://NAME",
//! "apiVersion": "2021-10-01"}`. Those are Azure's own fields, so every
//! official SDK and `az iot dps enrollment` writes, reads and round-trips
//! them unchanged (a field of dps's own would be dropped by SDKs that map
//! records onto typed classes); the `dps-policy` scheme can never be a real
//! webhook. Names are compared case-insensitively and a trailing `/` is
//! ignored, as some SDKs normalise URLs (`System.Uri` lowercases the host
//! and appends one).
//!
//! The service API accepts any `dps-policy://` name (replicas may register
//! different policies); a name no policy is registered under fails the
//! registration that meets it, naming it (`WebhookUrlInvalid`).
//!
//! Enrollments choose a registered policy per enrollment or enrollment
//! group; a tenant's default policy is one of the built-ins (never
//! `custom`, as in Azure), and a built-in can be replaced server-wide with
//! [`ServerBuilder::replace_policy`].
//!
//! [`ServerBuilder::policy`]: super::ServerBuilder::policy
//! [`ServerBuilder::replace_policy`]: super::ServerBuilder::replace_policy

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use dps_allocation::{Allocation, AllocationError, AllocationRequest, Policy};
use dps_model::AllocationPolicy;

use crate::ServiceError;

/// The URL scheme of registered policies in `customAllocationDefinition.webhookUrl`.
pub const POLICY_URL_SCHEME: &str = "dps-policy";

/// The `webhookUrl` that selects the registered policy `name`:
/// `dps-policy://NAME`.
pub fn policy_url(name: &str) -> String {
    format!("{POLICY_URL_SCHEME}://{}", name.to_ascii_lowercase())
}

/// The registered policy a `webhookUrl` names (lowercase), or `None` when it
/// is a real webhook URL.
pub fn policy_name(webhook_url: &str) -> Option<String> {
    let (scheme, rest) = webhook_url.trim().split_once(':')?;
    if !scheme.eq_ignore_ascii_case(POLICY_URL_SCHEME) {
        return None;
    }
    let name = rest.trim_start_matches("//").trim_end_matches('/');
    Some(name.to_ascii_lowercase())
}

/// Registered names: 1 to 64 of ASCII letters, digits, `-`, `_` and `.`
/// (what fits a URL host and survives case folding).
pub(super) fn check_name(name: &str) -> Result<String, ServiceError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(ServiceError::Config {
            reason: format!(
                "allocation policy name {name:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'"
            ),
        });
    }
    Ok(name.to_ascii_lowercase())
}

/// The implementation of `custom`: a registered policy when the webhook URL
/// names one, else the webhook.
pub(super) struct CustomPolicies {
    pub(super) webhook: Arc<dyn Policy>,
    pub(super) named: BTreeMap<String, Arc<dyn Policy>>,
}

#[async_trait]
impl Policy for CustomPolicies {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Custom
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let name = request
            .enrollment
            .as_enrollment()
            .custom_allocation_definition()
            .and_then(|definition| policy_name(&definition.webhook_url));
        let Some(name) = name else {
            return self.webhook.allocate(request).await;
        };
        let Some(policy) = self.named.get(&name) else {
            let known: Vec<&str> = self.named.keys().map(String::as_str).collect();
            return Err(AllocationError::WebhookUrlInvalid {
                reason: format!(
                    "no allocation policy named {name:?} is registered with this server \
                     (registered: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        };
        let allocation = policy.allocate(request).await?;
        // The same rule as the webhook's answer: only an offered hub counts.
        let offered = request
            .candidates
            .hubs
            .iter()
            .map(|i| request.hubs.get(i).host_name())
            .find(|hub| hub.eq_ignore_ascii_case(&allocation.hub_host_name));
        match offered {
            Some(hub) => Ok(Allocation {
                hub_host_name: hub.to_owned(),
                ..allocation
            }),
            None => Err(AllocationError::WebhookHubNotLinked {
                host: policy_url(&name),
                hub: allocation.hub_host_name,
                linked: request.hubs.names(request.candidates.hubs),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_urls_survive_sdk_normalisation() {
        assert_eq!(policy_url("By-Tag"), "dps-policy://by-tag");
        for url in [
            "dps-policy://by-tag",
            "DPS-Policy://BY-TAG/",
            "dps-policy:by-tag",
            " dps-policy://by-tag ",
        ] {
            assert_eq!(policy_name(url).as_deref(), Some("by-tag"), "{url}");
        }
        assert_eq!(policy_name("https://example.com/allocate"), None);
        assert!(check_name("by-tag.v2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("by tag").is_err());
    }
}
