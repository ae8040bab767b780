//! One structured log line per refused or failed registration, rate-limited
//! so that a flood of bad devices cannot fill the disk.
//!
//! A token bucket allows [`LINES_PER_SECOND`] lines a second on average and
//! bursts of [`BURST`]; lines beyond it are dropped and counted, and the
//! next line that passes is preceded by one "suppressed" summary with the
//! count (at most one summary per [`SUMMARY_INTERVAL`], so the summary
//! itself cannot flood either).
//!
//! Levels: INFO for what the device did wrong (refused, throttled,
//! rejected, disabled enrollment), WARN for what the operator must look at
//! (allocation, webhook or hub failures, server errors). The reason is the
//! specific one (which check refused), although the device itself only gets
//! the generic refusal. No line carries a key, a token or a connection
//! string: only the scope, the registration id, the transport, the source
//! address, the Azure error code and the reason text, which never quotes a
//! credential.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::device::Outcome;
use crate::pipeline::TransportKind;

/// Average lines a second.
pub const LINES_PER_SECOND: f64 = 20.0;
/// Lines allowed at once after a quiet period.
pub const BURST: f64 = 100.0;
/// At most one "suppressed" summary per interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// What one line says about a registration.
#[derive(Debug)]
pub struct RefusedRegistration<'a> {
    /// The instruction (`register`, `connect`, `poll`, `status`).
    pub instruction: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// The Azure error code answered (or recorded, for a failed assignment).
    pub code: i32,
    /// The ID scope, as sent.
    pub scope: &'a str,
    /// The registration id, as sent.
    pub registration_id: &'a str,
    /// The transport.
    pub transport: TransportKind,
    /// The device's address.
    pub peer: IpAddr,
    /// Why, specifically.
    pub reason: &'a str,
}

/// The rate-limited writer of those lines.
#[derive(Debug)]
pub struct RefusalLog {
    state: Mutex<Bucket>,
    rate: f64,
    burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    last_summary: Option<Instant>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(LINES_PER_SECOND, BURST)
    }
}

/// What the bucket decided for one line.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Write it (after a summary of `suppressed` dropped lines if not 0).
    Write { suppressed: u64 },
    /// Drop it.
    Drop,
}

impl RefusalLog {
    /// A log allowing `rate` lines a second, `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Self {
        RefusalLog {
            state: Mutex::new(Bucket {
                tokens: burst,
                refilled: Instant::now(),
                suppressed: 0,
                last_summary: None,
            }),
            rate,
            burst,
        }
    }

    fn admit(&self, now: Instant) -> Admission {
        let mut bucket = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            bucket.suppressed += 1;
            return Admission::Drop;
        }
        bucket.tokens -= 1.0;
        let summary_due = bucket
            .last_summary
            .is_none_or(|at| now.saturating_duration_since(at) >= SUMMARY_INTERVAL);
        if bucket.suppressed > 0 && summary_due {
            bucket.last_summary = Some(now);
            let suppressed = std::mem::take(&mut bucket.suppressed);
            return Admission::Write { suppressed };
        }
        Admission::Write { suppressed: 0 }
    }

    /// Write the line for `event`, unless the rate is exceeded.
    pub fn write(&self, event: &RefusedRegistration<'_>) {
        let Admission::Write { suppressed } = self.admit(Instant::now()) else {
            return;
        };
        if suppressed > 0 {
            tracing::warn!(
                suppressed,
                max_per_second = LINES_PER_SECOND,
                "refused or failed registration lines suppressed (rate limit)"
            );
        }
        let operator_problem = matches!(event.outcome, Outcome::Failed | Outcome::Error);
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    instruction = event.instruction,
                    outcome = event.outcome.as_str(),
                    code = event.code,
                    scope = event.scope,
                    registration_id = event.registration_id,
                    transport = event.transport.as_str(),
                    peer = %event.peer,
                    reason = event.reason,
                    "registration refused or failed"
                )
            };
        }
        if operator_problem {
            line!(warn);
        } else {
            line!(info);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_passes_the_burst_then_the_rate_with_one_summary() {
        let log = RefusalLog::new(10.0, 5.0);
        let start = Instant::now();
        let written = (0..100)
            .filter(|_| matches!(log.admit(start), Admission::Write { .. }))
            .count();
        assert_eq!(written, 5, "the burst only");
        // One second later: 10 more tokens, and the first line carries the
        // summary of the 95 dropped ones.
        let later = start + Duration::from_secs(1);
        assert_eq!(log.admit(later), Admission::Write { suppressed: 95 });
        let more = (0..100)
            .map(|_| log.admit(later))
            .filter(|a| *a == Admission::Write { suppressed: 0 })
            .count();
        assert_eq!(more, 4, "the burst cap (5) less the line already written");
        // The next summary waits for its interval.
        let soon = later + Duration::from_secs(1);
        assert_eq!(log.admit(soon), Admission::Write { suppressed: 0 });
        let after = later + SUMMARY_INTERVAL;
        assert!(matches!(
            log.admit(after),
            Admission::Write { suppressed } if suppressed > 90
        ));
    }
}
