//! Device endpoint throttling, in the order a request meets it:
//!
//! 1. its source address's budget of failed authentications — checked (not
//!    spent) before any work, so an address that keeps failing gets `429`
//!    for the price of one map lookup;
//! 2. authentication; a refusal spends one unit of the address's budget and
//!    one of the ID scope's (known or not), and past the scope's budget
//!    further *failures* answer `429` instead of `401`;
//! 3. only an authenticated device spends its tenant's budget: registrations,
//!    or polls and status lookups.
//!
//! So a stranger's bad tokens never throttle a tenant's good devices.
//! Defaults and reasoning: [`ThrottlingConfig`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dps_model::IdScope;

use super::rate_limit::{address_key, KeyedLimiter, Limited, Rate};
use crate::config::ThrottlingConfig;
use crate::respond::ApiError;

pub(crate) struct Throttle {
    registrations: KeyedLimiter<String>,
    polls: KeyedLimiter<String>,
    failures_by_address: KeyedLimiter<IpAddr>,
    failures_by_scope: KeyedLimiter<String>,
    log: LogGate,
}

impl Throttle {
    pub(crate) fn new(config: &ThrottlingConfig) -> Self {
        fn limiter<K: std::hash::Hash + Eq + Clone>(
            per_second: u32,
            burst: u32,
            keys: usize,
        ) -> KeyedLimiter<K> {
            KeyedLimiter::new(Rate { per_second, burst }, keys)
        }
        let keys = config.max_tracked_keys;
        Throttle {
            registrations: limiter(config.registrations_per_second, config.burst, keys),
            polls: limiter(config.polls_per_second, config.polls_burst, keys),
            failures_by_address: limiter(
                config.failures_per_address_per_second,
                config.failures_per_address_burst,
                keys,
            ),
            failures_by_scope: limiter(
                config.failures_per_scope_per_second,
                config.failures_per_scope_burst,
                keys,
            ),
            log: LogGate::default(),
        }
    }

    /// Before any work: has this address failed too often lately?
    pub(crate) fn check_address(&self, peer: IpAddr) -> Result<(), ApiError> {
        self.failures_by_address
            .check(&address_key(peer))
            .map_err(|limited| {
                if self.log.open() {
                    tracing::warn!(%peer, "source address throttled after failed authentications");
                }
                throttled("Too many failed authentications from this address", limited)
            })
    }

    /// A refusal (`401`) was answered: count it against the address and the
    /// ID scope as sent. Returns the answer to give: the refusal, or `429`
    /// once the scope has seen too many failures.
    pub(crate) fn failed(&self, peer: IpAddr, id_scope: &str, refusal: ApiError) -> ApiError {
        // Over the limit already: the next check_address refuses it.
        let _ = self.failures_by_address.charge(&address_key(peer));
        // A malformed scope is no scope: only the address pays for it.
        let Ok(scope) = IdScope::new(id_scope) else {
            return refusal;
        };
        match self.failures_by_scope.charge(&scope.key()) {
            Ok(()) => refusal,
            Err(limited) => {
                if self.log.open() {
                    tracing::warn!(scope = %scope, %peer, "ID scope throttling failed authentications");
                }
                throttled("Too many failed authentications for this ID scope", limited)
            }
        }
    }

    /// An unauthenticated answer that is not a failure (the TPM challenge,
    /// also a `401` on the wire): it costs the address like a failure.
    pub(crate) fn unauthenticated(&self, peer: IpAddr) {
        let _ = self.failures_by_address.charge(&address_key(peer));
    }

    /// An authenticated device registers: spend one of its tenant's registrations.
    pub(crate) fn admit_registration(&self, scope: &IdScope) -> Result<(), ApiError> {
        self.registrations.admit(&scope.key()).map_err(|limited| {
            tracing::debug!(%scope, "registration throttled");
            throttled("Too many registrations for this ID scope", limited)
        })
    }

    /// An authenticated device polls or looks up its status.
    pub(crate) fn admit_poll(&self, scope: &IdScope) -> Result<(), ApiError> {
        self.polls.admit(&scope.key()).map_err(|limited| {
            tracing::debug!(%scope, "poll throttled");
            throttled(
                "Too many operation and status requests for this ID scope",
                limited,
            )
        })
    }
}

/// The `429` answer.
pub(crate) fn throttled(what: &str, limited: Limited) -> ApiError {
    let seconds = limited.retry_after_secs();
    ApiError::throttled(format!("{what}; retry after {seconds} s."), seconds)
}

/// Lets a warning through at most once per [`LogGate::EVERY`] seconds, so an
/// attack does not flood the log.
#[derive(Default)]
pub(crate) struct LogGate {
    last: AtomicU64,
}

impl LogGate {
    const EVERY: u64 = 10;

    pub(crate) fn open(&self) -> bool {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_secs() + Self::EVERY;
        let last = self.last.load(Ordering::Relaxed);
        now >= last + Self::EVERY
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_model::ErrorCode;

    fn scope(s: &str) -> IdScope {
        IdScope::new(s).unwrap()
    }

    #[test]
    fn registrations_burst_then_429_with_retry_after() {
        let throttle = Throttle::new(&ThrottlingConfig {
            registrations_per_second: 1,
            burst: 3,
            ..ThrottlingConfig::default()
        });
        for _ in 0..3 {
            assert!(throttle.admit_registration(&scope("0ne00000001")).is_ok());
        }
        let err = throttle
            .admit_registration(&scope("0ne00000001"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::THROTTLED);
        assert_eq!(err.retry_after, Some(1));
        // Another tenant has its own bucket; polls have their own budget.
        assert!(throttle.admit_registration(&scope("0ne00000002")).is_ok());
        assert!(throttle.admit_poll(&scope("0ne00000001")).is_ok());
    }

    #[test]
    fn on_by_default() {
        let throttle = Throttle::new(&ThrottlingConfig::default());
        let started = Instant::now();
        let admitted = (0..2_000)
            .filter(|_| throttle.admit_registration(&scope("0ne00000001")).is_ok())
            .count();
        // The burst of 400, and 200/s refilled while the loop ran.
        let allowed = 400 + (200.0 * started.elapsed().as_secs_f64()).ceil() as usize;
        assert!(
            (400..=allowed).contains(&admitted),
            "{admitted} of {allowed}"
        );
    }

    #[test]
    fn failures_stop_their_address_but_not_others() {
        let throttle = Throttle::new(&ThrottlingConfig {
            failures_per_address_per_second: 1,
            failures_per_address_burst: 3,
            ..ThrottlingConfig::default()
        });
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        let good: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check_address(bad).is_ok());
            let answer = throttle.failed(bad, "0ne00000001", ApiError::unauthorized("no"));
            assert_eq!(answer.code, ErrorCode::UNAUTHORIZED);
        }
        let refused = throttle.check_address(bad).unwrap_err();
        assert_eq!(
            (refused.code, refused.retry_after),
            (ErrorCode::THROTTLED, Some(1))
        );
        assert!(throttle.check_address(good).is_ok());
    }

    #[test]
    fn scope_failures_turn_into_429_for_known_and_unknown_scopes_alike() {
        let throttle = Throttle::new(&ThrottlingConfig {
            failures_per_scope_per_second: 1,
            failures_per_scope_burst: 2,
            ..ThrottlingConfig::default()
        });
        for id_scope in ["0ne00000001", "0NE00000001"] {
            let peer: IpAddr = "192.0.2.1".parse().unwrap();
            let answer = throttle.failed(peer, id_scope, ApiError::unauthorized("no"));
            assert_eq!(answer.code, ErrorCode::UNAUTHORIZED, "{id_scope}");
        }
        let answer = throttle.failed(
            "192.0.2.9".parse().unwrap(),
            "0ne00000001",
            ApiError::unauthorized("no"),
        );
        assert_eq!(answer.code, ErrorCode::THROTTLED);
        // Successful devices of that scope are untouched.
        assert!(throttle.admit_registration(&scope("0ne00000001")).is_ok());
        assert!(throttle.admit_poll(&scope("0ne00000001")).is_ok());
    }

    #[test]
    fn unlimited_turns_everything_off() {
        let throttle = Throttle::new(&ThrottlingConfig::unlimited());
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10_000 {
            assert!(throttle.admit_registration(&scope("0ne00000001")).is_ok());
            let answer = throttle.failed(peer, "0ne00000001", ApiError::unauthorized("no"));
            assert_eq!(answer.code, ErrorCode::UNAUTHORIZED);
        }
        assert!(throttle.check_address(peer).is_ok());
    }
}
