//! Per-tenant registration throttling: a token bucket per ID scope. Over the
//! limit, the device gets `429` with `Retry-After`, which every official SDK
//! treats as "try again later".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use dps_model::{ErrorCode, IdScope};

use crate::config::ThrottlingConfig;
use crate::respond::ApiError;

pub(crate) struct Throttle {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Throttle {
    pub(crate) fn new(config: &ThrottlingConfig) -> Self {
        Throttle {
            rate: f64::from(config.registrations_per_second),
            burst: f64::from(config.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one registration from the tenant's bucket, or say how long to wait.
    pub(crate) fn admit(&self, scope: &IdScope) -> Result<(), ApiError> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(scope.key()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        let mut error = ApiError::new(
            ErrorCode::THROTTLED,
            format!(
                "Too many registrations for this ID scope (limit {} per second); retry after {wait} s.",
                self.rate
            ),
        );
        error.retry_after = Some(wait);
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let throttle = Throttle::new(&ThrottlingConfig {
            registrations_per_second: 1,
            burst: 3,
        });
        let scope = IdScope::new("0ne00000001").unwrap();
        for _ in 0..3 {
            assert!(throttle.admit(&scope).is_ok());
        }
        let err = throttle.admit(&scope).unwrap_err();
        assert_eq!(err.code, ErrorCode::THROTTLED);
        assert_eq!(err.retry_after, Some(1));
        // Another tenant has its own bucket.
        assert!(throttle
            .admit(&IdScope::new("0ne00000002").unwrap())
            .is_ok());
    }

    #[test]
    fn unlimited_by_default() {
        let throttle = Throttle::new(&ThrottlingConfig::default());
        let scope = IdScope::new("0ne00000001").unwrap();
        assert!((0..10_000).all(|_| throttle.admit(&scope).is_ok()));
    }
}
