//! What a swarm run measured.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::export::SwarmSample;
use super::plan::DeviceKind;
use crate::ClientError;

/// Latencies are recorded in microseconds, up to 10 minutes.
pub(super) const HISTOGRAM_MAX_MICROS: u64 = 600_000_000;

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
        .expect("constant bounds within hdrhistogram's limits")
}

/// The outcome of a swarm run.
#[derive(Clone, Debug)]
pub struct SwarmReport {
    /// Devices attempted.
    pub attempted: u64,
    /// Devices assigned to a hub.
    pub succeeded: u64,
    /// Devices that failed, by error class and service code (`authentication/401002`).
    pub failures: BTreeMap<String, u64>,
    /// Wall time from the first device's start to the last device's end.
    pub elapsed: Duration,
    /// Time from a device's start (new client, new TLS connection) to its
    /// assignment, in microseconds; successful devices only.
    pub latency: Histogram<u64>,
    /// Assigned devices per hub.
    pub per_hub: BTreeMap<String, u64>,
    /// Assigned devices per kind.
    pub per_kind: BTreeMap<DeviceKind, u64>,
    /// Up to ten failure messages, for diagnosis.
    pub sample_errors: Vec<String>,
    /// When the swarm started (wall clock; the HdrHistogram log's base time).
    pub started_at: SystemTime,
    /// Whether the devices waited the service's `Retry-After` between
    /// register and poll (no poll interval given).
    pub honoured_retry_after: bool,
    /// One sample per device, in plan order, when
    /// [`SwarmConfig::keep_samples`](super::SwarmConfig::keep_samples) is set.
    pub samples: Vec<SwarmSample>,
}

impl SwarmReport {
    pub(crate) fn empty() -> Self {
        SwarmReport {
            attempted: 0,
            succeeded: 0,
            failures: BTreeMap::new(),
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            per_hub: BTreeMap::new(),
            per_kind: BTreeMap::new(),
            sample_errors: Vec::new(),
            started_at: SystemTime::UNIX_EPOCH,
            honoured_retry_after: false,
            samples: Vec::new(),
        }
    }

    pub(crate) fn record_success(&mut self, kind: DeviceKind, hub: &str, elapsed: Duration) {
        self.attempted += 1;
        self.succeeded += 1;
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let _ = self.latency.record(micros.clamp(1, HISTOGRAM_MAX_MICROS));
        *self.per_hub.entry(hub.to_owned()).or_default() += 1;
        *self.per_kind.entry(kind).or_default() += 1;
    }

    pub(crate) fn record_failure(&mut self, registration_id: &str, error: &ClientError) {
        self.attempted += 1;
        let key = match error.error_code() {
            Some(code) => format!("{}/{code}", error.class()),
            None => error.class().to_owned(),
        };
        *self.failures.entry(key).or_default() += 1;
        if self.sample_errors.len() < 10 {
            self.sample_errors
                .push(format!("{registration_id}: {error}"));
        }
    }

    pub(crate) fn merge(&mut self, other: SwarmReport) {
        self.attempted += other.attempted;
        self.succeeded += other.succeeded;
        for (key, n) in other.failures {
            *self.failures.entry(key).or_default() += n;
        }
        let _ = self.latency.add(&other.latency);
        for (hub, n) in other.per_hub {
            *self.per_hub.entry(hub).or_default() += n;
        }
        for (kind, n) in other.per_kind {
            *self.per_kind.entry(kind).or_default() += n;
        }
        for message in other.sample_errors {
            if self.sample_errors.len() < 10 {
                self.sample_errors.push(message);
            }
        }
        self.samples.extend(other.samples);
    }

    /// Devices that failed.
    pub fn failed(&self) -> u64 {
        self.attempted - self.succeeded
    }

    /// Successful registrations per second of wall time.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.succeeded as f64 / seconds
        } else {
            0.0
        }
    }

    /// A latency quantile (0.0..=1.0) in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The largest relative deviation of a hub's count from an even split
    /// over `hubs` hubs (0.02 = 2 %). Hubs that got nothing count too.
    pub fn max_hub_deviation(&self, hubs: usize) -> f64 {
        if hubs == 0 || self.succeeded == 0 {
            return 0.0;
        }
        let even = self.succeeded as f64 / hubs as f64;
        let mut worst: f64 = if self.per_hub.len() < hubs { 1.0 } else { 0.0 };
        for count in self.per_hub.values() {
            worst = worst.max((*count as f64 - even).abs() / even);
        }
        worst
    }

    /// A hint when the median latency is mostly time spent waiting for the
    /// service's `Retry-After` (whole seconds, at least 1 s on dps) rather
    /// than work: dps finishes a registration before it answers `202`, so
    /// with the default poll the swarm measures the wait, not the server.
    pub fn retry_after_hint(&self) -> Option<String> {
        if !self.honoured_retry_after || self.succeeded == 0 {
            return None;
        }
        let p50 = self.latency_ms(0.50);
        let waited = (p50 / 1000.0).floor() * 1000.0;
        (waited >= 1000.0 && waited >= 0.75 * p50).then(|| {
            format!(
                "p50 {p50:.0} ms is mostly the service's Retry-After (whole seconds before \
                 each poll), not its work; rerun with --poll-interval-ms 0 to measure the \
                 service (dps answers the first poll at once)"
            )
        })
    }

    /// The report as JSON (for `--json`).
    pub fn to_json(&self) -> Value {
        json!({
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "failed": self.failed(),
            "failures": self.failures,
            "elapsedSeconds": self.elapsed.as_secs_f64(),
            "registrationsPerSecond": self.rate(),
            "latencyMs": {
                "p50": self.latency_ms(0.50),
                "p90": self.latency_ms(0.90),
                "p99": self.latency_ms(0.99),
                "max": self.latency.max() as f64 / 1000.0,
            },
            "perHub": self.per_hub,
            "perKind": self.per_kind.iter().map(|(k, v)| (k.as_str(), *v)).collect::<BTreeMap<_, _>>(),
            "sampleErrors": self.sample_errors,
            "hints": self.retry_after_hint().into_iter().collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for SwarmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "devices     {} attempted, {} assigned, {} failed",
            self.attempted,
            self.succeeded,
            self.failed()
        )?;
        for (class, n) in &self.failures {
            writeln!(f, "  failed    {class}: {n}")?;
        }
        writeln!(
            f,
            "rate        {:.0} registrations/s over {:.2} s",
            self.rate(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "latency     p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.latency_ms(0.50),
            self.latency_ms(0.90),
            self.latency_ms(0.99),
            self.latency.max() as f64 / 1000.0
        )?;
        for (kind, n) in &self.per_kind {
            writeln!(f, "  kind      {kind:<10} {n}")?;
        }
        let total = self.succeeded.max(1) as f64;
        for (hub, n) in &self.per_hub {
            writeln!(
                f,
                "  hub       {hub:<30} {n:>8} ({:.2} %)",
                *n as f64 * 100.0 / total
            )?;
        }
        for message in &self.sample_errors {
            writeln!(f, "  error     {message}")?;
        }
        if let Some(hint) = self.retry_after_hint() {
            writeln!(f, "hint        {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(latencies_ms: &[u64], honoured: bool) -> SwarmReport {
        let mut report = SwarmReport::empty();
        report.honoured_retry_after = honoured;
        for ms in latencies_ms {
            report.record_success(DeviceKind::Symmetric, "hub", Duration::from_millis(*ms));
        }
        report
    }

    #[test]
    fn the_hint_appears_only_when_retry_after_dominates() {
        // About one Retry-After of waiting each: the hint, in text and JSON.
        let waiting = report(&[1004, 1010, 1012, 1030, 1100], true);
        let hint = waiting.retry_after_hint().expect("a hint");
        assert!(hint.contains("--poll-interval-ms 0"), "{hint}");
        assert!(
            waiting.to_string().contains("hint        p50 1"),
            "{waiting}"
        );
        assert_eq!(waiting.to_json()["hints"][0], hint.as_str());
        // Fast answers, a slow server (1.8 s of work is not a 1 s wait), or
        // a fixed poll interval: no hint.
        for quiet in [
            report(&[3, 4, 5, 6, 7], true),
            report(&[1800, 1810, 1820], true),
            report(&[1004, 1010, 1012], false),
            report(&[], true),
        ] {
            assert_eq!(quiet.retry_after_hint(), None, "{quiet}");
            assert_eq!(quiet.to_json()["hints"], serde_json::json!([]));
        }
    }
}
