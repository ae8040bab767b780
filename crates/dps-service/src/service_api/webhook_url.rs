//! Webhook URLs a tenant writes (enrollments, groups, bulk operations) pass
//! the static part of the egress policy before they are stored: scheme,
//! literal addresses, names that always mean a local or metadata address,
//! and the operator's networks. What a name resolves to is checked again
//! on every call (`dps_allocation::egress`), since DNS can change.

use std::collections::BTreeSet;

use dps_allocation::egress::{EgressPolicy, EgressRefusal, EgressTarget};
use dps_model::IdScope;

use super::wire;
use crate::respond::ApiError;

const FIELD: &str = "customAllocationDefinition.webhookUrl";

/// `Ok` when `url` (if any) may be called as far as can be told now; else
/// a 400 ArgumentInvalid naming the field, the host (never the URL: its
/// query carries the function key) and the rule.
///
/// A `dps-policy://NAME` URL selects a policy registered with the server
/// (nothing is called): it must name one of `registered`.
pub(crate) fn check(
    policy: &EgressPolicy,
    registered: &BTreeSet<String>,
    scope: &IdScope,
    url: Option<&str>,
) -> Result<(), ApiError> {
    let Some(url) = url else {
        return Ok(());
    };
    if let Some(name) = crate::server::policy_name(url) {
        if registered.contains(&name) {
            return Ok(());
        }
        let reason = "no allocation policy of that name is registered with this server";
        return Err(wire::invalid(FIELD, name, reason));
    }
    let (host, refusal) = match EgressTarget::parse(url) {
        Ok(target) => match policy.check_target(&target) {
            Ok(()) => return Ok(()),
            Err(refusal) => (target.host().to_owned(), refusal),
        },
        Err(refusal) => (String::new(), refusal),
    };
    tracing::info!(id_scope = %scope, webhook = %host, reason = %refusal, "webhook URL refused by the egress policy");
    let reason = match refusal {
        EgressRefusal::InvalidUrl { .. } => refusal.to_string(),
        other => format!("refused by the egress policy: {other}"),
    };
    Err(wire::invalid(FIELD, host, reason))
}
