//! Server-side time of device instructions: from the pipeline call to its
//! answer, whatever the transport (TLS handshakes and the network are not
//! in it). Lock-free counters, cheap enough to be always on; a snapshot
//! taken before and after a load gives that load's percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Width of one bucket.
const BUCKET_MICROS: u64 = 50;
/// Buckets up to 250 ms; slower answers share the last one.
const BUCKETS: usize = 5_000;

/// A fixed-width histogram of durations (50 µs resolution).
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram").finish_non_exhaustive()
    }
}

impl LatencyHistogram {
    /// Count one duration.
    pub fn record(&self, elapsed: Duration) {
        let index = usize::try_from(elapsed.as_micros() / u128::from(BUCKET_MICROS))
            .unwrap_or(BUCKETS)
            .min(BUCKETS);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Counts of a [`LatencyHistogram`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencySnapshot {
    counts: Vec<u64>,
}

impl LatencySnapshot {
    /// What was recorded between `earlier` and this snapshot.
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        LatencySnapshot {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// How many durations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1), or `None`
    /// when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros((index as u64 + 1) * BUCKET_MICROS));
            }
        }
        None
    }
}

/// The server-side latency of each device instruction.
#[derive(Debug, Default)]
pub struct PipelineLatency {
    /// Register (D1), including the hub and the store commit.
    pub register: LatencyHistogram,
    /// Operation status poll (D2).
    pub poll: LatencyHistogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_load_come_from_the_difference_of_snapshots() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_secs(5));
        let before = histogram.snapshot();
        for micros in 1..=100u64 {
            histogram.record(Duration::from_micros(micros * 100));
        }
        let load = histogram.snapshot().since(&before);
        assert_eq!(load.count(), 100);
        // 100 values 0.1 ms … 10 ms: the median about 5 ms, p99 about 9.9 ms.
        assert_eq!(load.quantile(0.5), Some(Duration::from_micros(5_050)));
        assert_eq!(load.quantile(0.99), Some(Duration::from_micros(9_950)));
        assert_eq!(load.quantile(1.0), Some(Duration::from_micros(10_050)));
        assert_eq!(LatencyHistogram::default().snapshot().quantile(0.5), None);
        // The slow one before the load is not in it; it sits in the last bucket.
        assert_eq!(
            histogram.snapshot().quantile(1.0),
            Some(Duration::from_micros((BUCKETS as u64 + 1) * BUCKET_MICROS))
        );
    }
}
