//! Service API throttling, outside the token checks themselves: a source
//! address that keeps failing authentication gets `429` before its token is
//! looked at, and an authenticated caller spends its tenant's budget (the
//! operator has one of its own; the anonymous OpenAPI document costs the
//! address nothing). Defaults and reasoning:
//! [`ThrottlingConfig`](crate::config::ThrottlingConfig).

use std::net::IpAddr;

use super::auth::Caller;
use crate::config::ThrottlingConfig;
use crate::pipeline::rate_limit::{address_key, KeyedLimiter, Rate};
use crate::pipeline::throttled;
use crate::respond::ApiError;

/// The budget key of operator requests (never an ID scope: those start `0ne`).
const OPERATOR: &str = "operator";

pub(crate) struct ServiceThrottle {
    per_tenant: KeyedLimiter<String>,
    failures_by_address: KeyedLimiter<IpAddr>,
}

impl ServiceThrottle {
    pub(crate) fn new(config: &ThrottlingConfig) -> Self {
        ServiceThrottle {
            per_tenant: KeyedLimiter::new(
                Rate {
                    per_second: config.service_requests_per_second,
                    burst: config.service_burst,
                },
                config.max_tracked_keys,
            ),
            failures_by_address: KeyedLimiter::new(
                Rate {
                    per_second: config.failures_per_address_per_second,
                    burst: config.failures_per_address_burst,
                },
                config.max_tracked_keys,
            ),
        }
    }

    /// Before the token is checked: has this address failed too often?
    pub(crate) fn check_address(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(peer) = peer else { return Ok(()) };
        self.failures_by_address
            .check(&address_key(peer))
            .map_err(|limited| {
                tracing::debug!(%peer, "service API address throttled after failed authentications");
                throttled(
                    "Too many failed authentications from this address",
                    limited,
                )
            })
    }

    /// The token was refused (`401`).
    pub(crate) fn failed(&self, peer: Option<IpAddr>) {
        if let Some(peer) = peer {
            let _ = self.failures_by_address.charge(&address_key(peer));
        }
    }

    /// An authenticated request: spend one of its tenant's requests.
    pub(crate) fn admit(&self, caller: &Caller) -> Result<(), ApiError> {
        let key = match caller {
            Caller::Anonymous => return Ok(()),
            Caller::Operator => OPERATOR.to_owned(),
            Caller::Tenant { id_scope, .. } => id_scope.key(),
        };
        self.per_tenant.admit(&key).map_err(|limited| {
            tracing::debug!(tenant = %key, "service API request throttled");
            throttled("Too many service API requests for this tenant", limited)
        })
    }
}

#[cfg(test)]
mod tests {
    use dps_model::{ErrorCode, IdScope};

    use super::*;

    fn tenant(scope: &str) -> Caller {
        Caller::Tenant {
            id_scope: IdScope::new(scope).unwrap(),
            policy: "provisioningserviceowner".to_owned(),
        }
    }

    #[test]
    fn each_tenant_and_the_operator_have_their_own_budget() {
        let throttle = ServiceThrottle::new(&ThrottlingConfig {
            service_requests_per_second: 1,
            service_burst: 2,
            ..ThrottlingConfig::default()
        });
        for _ in 0..2 {
            assert!(throttle.admit(&tenant("0ne00000001")).is_ok());
        }
        let refused = throttle.admit(&tenant("0ne00000001")).unwrap_err();
        assert_eq!(
            (refused.code, refused.retry_after),
            (ErrorCode::THROTTLED, Some(1))
        );
        assert!(throttle.admit(&tenant("0ne00000002")).is_ok());
        assert!(throttle.admit(&Caller::Operator).is_ok());
        assert!((0..100).all(|_| throttle.admit(&Caller::Anonymous).is_ok()));
    }

    #[test]
    fn failing_addresses_are_stopped_before_their_tokens_are_read() {
        let throttle = ServiceThrottle::new(&ThrottlingConfig {
            failures_per_address_per_second: 1,
            failures_per_address_burst: 2,
            ..ThrottlingConfig::default()
        });
        let bad = Some("192.0.2.1".parse().unwrap());
        for _ in 0..2 {
            assert!(throttle.check_address(bad).is_ok());
            throttle.failed(bad);
        }
        assert_eq!(
            throttle.check_address(bad).unwrap_err().code,
            ErrorCode::THROTTLED
        );
        assert!(throttle
            .check_address(Some("192.0.2.2".parse().unwrap()))
            .is_ok());
    }
}
