//! X.509 chain verification off the async workers (issue #15: one request's
//! chain, verified inline, stalled the workers every other device and the
//! service API share).
//!
//! A verification runs on Tokio's blocking threads, at most
//! `[attestation] pool_threads` at once (a semaphore; default one per core).
//! A request that finds every slot taken waits up to `pool_queue_timeout_ms`
//! and is then answered `429` (`THROTTLED`, `Retry-After: 1`): the SDKs back
//! off and retry on 429, and a busy verifier is a capacity limit like a
//! throttle, not a fault of the server. The slot is held by the blocking
//! task itself, so a client that hangs up cannot leave work running
//! unaccounted for.
//!
//! SAS tokens (about a microsecond to check) and individual X.509 enrollments
//! (one parse and one hash) stay on the async workers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dps_attestation::x509::ChainLimits;
use tokio::sync::Semaphore;

use crate::config::AttestationLimits;
use crate::respond::ApiError;

/// Seconds a refused device is asked to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// At most one saturation warning per this many seconds.
const WARN_EVERY_SECS: u64 = 10;

/// The bounded verification pool, with the chain limits it applies.
pub(crate) struct AttestPool {
    slots: Arc<Semaphore>,
    threads: usize,
    queue_timeout: Duration,
    limits: ChainLimits,
    last_warning: AtomicU64,
}

impl AttestPool {
    pub(crate) fn new(config: &AttestationLimits) -> Self {
        let threads = config.threads();
        AttestPool {
            slots: Arc::new(Semaphore::new(threads)),
            threads,
            queue_timeout: config.queue_timeout(),
            limits: config.chain_limits(),
            last_warning: AtomicU64::new(0),
        }
    }

    /// The chain limits verifications must apply.
    pub(crate) fn limits(&self) -> &ChainLimits {
        &self.limits
    }

    /// Run `job` on a verification thread, once one is free.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let queued = Instant::now();
        let slot =
            match tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
                .await
            {
                Ok(Ok(slot)) => slot,
                // Timed out (or, never in practice, closed): refuse politely.
                Ok(Err(_)) | Err(_) => return Err(self.busy(queued.elapsed())),
            };
        let waited = queued.elapsed();
        let outcome = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let started = Instant::now();
            (job(), started.elapsed())
        })
        .await;
        match outcome {
            Ok((value, took)) => {
                tracing::debug!(
                    waited_us = waited.as_micros() as u64,
                    took_us = took.as_micros() as u64,
                    "X.509 chain verified on the attestation pool"
                );
                Ok(value)
            }
            Err(err) => Err(ApiError::internal(format!(
                "X.509 verification thread failed: {err}"
            ))),
        }
    }

    fn busy(&self, waited: Duration) -> ApiError {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + WARN_EVERY_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                threads = self.threads,
                waited_ms = waited.as_millis() as u64,
                "X.509 verification pool saturated: devices answered 429 (logged once per {WARN_EVERY_SECS} s)"
            );
        }
        ApiError::throttled(
            format!("The server is busy verifying certificates; retry after {RETRY_AFTER_SECS} s."),
            RETRY_AFTER_SECS,
        )
    }
}

impl Default for AttestPool {
    fn default() -> Self {
        AttestPool::new(&AttestationLimits::default())
    }
}

impl super::Pipeline {
    /// Apply `[attestation]`: the chain limits and the size of the
    /// verification pool (the defaults apply otherwise).
    pub fn with_attestation_limits(mut self, limits: &AttestationLimits) -> Self {
        self.attest = AttestPool::new(limits);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_model::ErrorCode;

    fn pool(threads: usize, timeout_ms: u64) -> AttestPool {
        AttestPool::new(&AttestationLimits {
            pool_threads: threads,
            pool_queue_timeout_ms: timeout_ms,
            ..AttestationLimits::default()
        })
    }

    #[tokio::test]
    async fn jobs_run_off_the_async_worker_and_return_their_value() {
        let pool = pool(1, 1_000);
        let caller = std::thread::current().id();
        let (value, thread) = pool
            .run(|| (6 * 7, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, caller);
    }

    #[tokio::test]
    async fn a_saturated_pool_refuses_with_429_after_the_queue_timeout() {
        let pool = Arc::new(pool(1, 50));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(move || hold.recv().ok()).await })
        };
        // Let the first job take the only slot.
        while pool.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let refused = pool.run(|| ()).await.unwrap_err();
        let waited = started.elapsed();
        assert_eq!(refused.code, ErrorCode::THROTTLED);
        assert_eq!(refused.retry_after, Some(RETRY_AFTER_SECS));
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap().unwrap(), Some(()));
        // The slot is free again.
        assert_eq!(pool.run(|| 1).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_abandoned_request_keeps_its_slot_until_the_work_ends() {
        let pool = Arc::new(pool(1, 20));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let abandoned = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(move || hold.recv().ok()).await })
        };
        while pool.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        // The work still runs: no second job may start beside it.
        assert!(pool.run(|| ()).await.is_err());
        release.send(()).unwrap();
        let mut freed = false;
        for _ in 0..200 {
            if pool.slots.available_permits() == 1 {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(freed, "the slot was not given back");
    }
}
