//! Request limits per tenant and per source address (`[throttling]`), each
//! applied by every replica on its own.
//!
//! ```toml
//! [throttling]
//! registrations_per_second = 200
//! burst = 400
//! polls_per_second = 1000
//! polls_burst = 2000
//! service_requests_per_second = 200
//! service_burst = 1000
//! failures_per_address_per_second = 5
//! failures_per_address_burst = 50
//! failures_per_scope_per_second = 100
//! failures_per_scope_burst = 1000
//! max_tracked_keys = 65536
//! ```

use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// Request limits. A rate of 0 turns that limit off.
///
/// Tenant budgets are charged only **after** the caller authenticated, so a
/// stranger's bad tokens never spend a tenant's budget; failed
/// authentications have budgets of their own, per source address and per ID
/// scope. Over a limit the caller gets `429` (code 429001) with
/// `Retry-After`, which every official SDK treats as "try again later".
///
/// Defaults and why (all per replica: N replicas admit N times as much):
///
/// * **Registrations: 200/s per tenant, burst 400.** The cloud service allows
///   200 registrations per *minute* per unit; a self-hosted server should not
///   be stricter than a fleet's real need, and a whole factory line or a
///   fleet-wide reprovisioning stays well below 200/s. It still keeps one
///   tenant from taking a replica (a 2-core replica completes ~1,500
///   registrations/s, see BENCHMARKING.md) from the others.
/// * **Polls and status lookups: 1,000/s per tenant, burst 2,000.** Each
///   registration is followed by one to a few polls (devices poll every
///   `device.retry_after_seconds`); five polls per admitted registration
///   leaves room for slow assignments while capping a tenant whose devices
///   poll in a loop.
/// * **Service API: 200 requests/s per tenant, burst 1,000.** Enrollment
///   management is scripts and portals, not devices; the cloud allows 2,000
///   operations per minute per unit. The burst lets an import script create
///   a thousand enrollments at once (bulk requests carry many per request).
///   Operator requests (tenant management) share one budget of their own.
/// * **Failed authentications per source address: 5/s, burst 50.** A device
///   that authenticates fails only when misconfigured, and then a few times;
///   an address past the burst gets `429` *before* any signature or chain is
///   checked, so a flood of bad tokens costs one map lookup each. A good
///   device at another address never notices. Devices behind the same NAT
///   as the attacker share its budget, which is why the burst is generous.
///   IPv6 addresses count per /64. Every `401` counts, the TPM challenge
///   included (it is a `401` too, and unauthenticated work).
/// * **Failed authentications per ID scope: 100/s, burst 1,000.** Catches an
///   attack spread over many addresses. Over it, *failures* answer `429`
///   instead of `401` — devices that authenticate are never refused because
///   of it. Unknown scopes are counted the same way, so the answer does not
///   tell which scopes exist.
/// * **At most 65,536 keys tracked** per limit (addresses, scopes); beyond,
///   the key closest to idle is forgotten, so memory stays bounded under a
///   flood of addresses while the most abusive stay limited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottlingConfig {
    /// Register instructions per second per tenant.
    pub registrations_per_second: u32,
    /// Registrations admitted at once above the rate.
    pub burst: u32,
    /// Polls (operation status) and status lookups per second per tenant.
    pub polls_per_second: u32,
    /// Polls admitted at once above the rate.
    pub polls_burst: u32,
    /// Service API requests per second per tenant (the operator has one
    /// budget of its own).
    pub service_requests_per_second: u32,
    /// Service API requests admitted at once above the rate.
    pub service_burst: u32,
    /// Failed authentications (any `401`) per second per source address.
    pub failures_per_address_per_second: u32,
    /// Failed authentications per address at once.
    pub failures_per_address_burst: u32,
    /// Failed authentications per second per ID scope, known or not.
    pub failures_per_scope_per_second: u32,
    /// Failed authentications per scope at once.
    pub failures_per_scope_burst: u32,
    /// Keys (addresses, scopes, tenants) each limit tracks at most.
    pub max_tracked_keys: usize,
}

impl Default for ThrottlingConfig {
    fn default() -> Self {
        ThrottlingConfig {
            registrations_per_second: 200,
            burst: 400,
            polls_per_second: 1_000,
            polls_burst: 2_000,
            service_requests_per_second: 200,
            service_burst: 1_000,
            failures_per_address_per_second: 5,
            failures_per_address_burst: 50,
            failures_per_scope_per_second: 100,
            failures_per_scope_burst: 1_000,
            max_tracked_keys: 65_536,
        }
    }
}

impl ThrottlingConfig {
    /// No limit at all (benchmarks, and tests that measure throughput).
    pub fn unlimited() -> Self {
        ThrottlingConfig {
            registrations_per_second: 0,
            polls_per_second: 0,
            service_requests_per_second: 0,
            failures_per_address_per_second: 0,
            failures_per_scope_per_second: 0,
            ..ThrottlingConfig::default()
        }
    }

    /// Refuse settings that cannot work.
    pub fn validate(&self) -> Result<(), ServiceError> {
        if self.max_tracked_keys == 0 {
            return Err(ServiceError::Config {
                reason: "throttling.max_tracked_keys must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_by_default_and_settable_one_by_one() {
        let config: ThrottlingConfig = toml::from_str("polls_per_second = 7").unwrap();
        assert_eq!(config.polls_per_second, 7);
        assert_eq!(config.registrations_per_second, 200);
        assert_eq!(config.failures_per_address_burst, 50);
        assert!(toml::from_str::<ThrottlingConfig>("nonsense = 1").is_err());
    }

    #[test]
    fn zero_keys_is_refused() {
        let config = ThrottlingConfig {
            max_tracked_keys: 0,
            ..ThrottlingConfig::default()
        };
        assert!(
            matches!(config.validate(), Err(ServiceError::Config { reason }) if reason.contains("max_tracked_keys"))
        );
    }
}
