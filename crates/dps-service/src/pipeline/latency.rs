//! Server-side time of device instructions: from the pipeline call to its
//! answer, whatever the transport (TLS handshakes and the network are not
//! in it). Lock-free counters, cheap enough to be always on.
//!
//! One source of truth for two readers: `/metrics` exposes these counts as
//! the Prometheus histograms `dps_device_register_duration_seconds` and
//! `dps_device_poll_duration_seconds` (coarser buckets, summed from the fine
//! ones at scrape time), and a benchmark takes snapshots before and after a
//! load to get that load's percentiles at 50 µs resolution.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::TransportKind;

/// Width of one fine bucket.
const BUCKET_MICROS: u64 = 50;
/// Fine buckets cover up to 250 ms.
const FINE_BUCKETS: usize = 5_000;
/// Upper edges of the slow buckets after the fine ones, in microseconds; a
/// last bucket holds whatever is slower than the last edge.
const TAIL_EDGES_MICROS: [u64; 6] = [
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];
const BUCKETS: usize = FINE_BUCKETS + TAIL_EDGES_MICROS.len() + 1;

/// The `le` edges of the exposed histograms, in seconds (`+Inf` implied).
/// Every edge up to 250 ms is a multiple of the fine bucket width.
pub const EXPOSED_EDGES_SECONDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations: 50 µs buckets up to 250 ms, then a few wide
/// ones up to 30 s.
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram").finish_non_exhaustive()
    }
}

fn bucket_of(micros: u64) -> usize {
    let fine = micros / BUCKET_MICROS;
    if fine < FINE_BUCKETS as u64 {
        return fine as usize;
    }
    let tail = TAIL_EDGES_MICROS
        .iter()
        .position(|&edge| micros <= edge)
        .unwrap_or(TAIL_EDGES_MICROS.len());
    FINE_BUCKETS + tail
}

/// The upper edge of a bucket (`None` for the last, unbounded one).
fn upper_edge_micros(index: usize) -> Option<u64> {
    match index.checked_sub(FINE_BUCKETS) {
        None => Some((index as u64 + 1) * BUCKET_MICROS),
        Some(tail) => TAIL_EDGES_MICROS.get(tail).copied(),
    }
}

impl LatencyHistogram {
    /// Count one duration.
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// Counts of a [`LatencyHistogram`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencySnapshot {
    counts: Vec<u64>,
    sum_micros: u64,
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
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
        }
    }

    /// Both snapshots' counts together.
    pub fn merged(mut self, other: &LatencySnapshot) -> LatencySnapshot {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_micros += other.sum_micros;
        self
    }

    /// How many durations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the durations.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros)
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1), or `None`
    /// when nothing was recorded. A quantile beyond the last edge (30 s)
    /// reads as that edge.
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
                let last = TAIL_EDGES_MICROS[TAIL_EDGES_MICROS.len() - 1];
                return Some(Duration::from_micros(
                    upper_edge_micros(index).unwrap_or(last),
                ));
            }
        }
        None
    }

    /// The counts per exposed bucket, [`EXPOSED_EDGES_SECONDS`] then `+Inf`,
    /// not cumulative: `(upper edge in seconds, count)`.
    pub fn exposed_buckets(&self) -> Vec<(f64, u64)> {
        let mut exposed: Vec<(f64, u64)> = EXPOSED_EDGES_SECONDS
            .iter()
            .chain(&[f64::INFINITY])
            .map(|&edge| (edge, 0))
            .collect();
        for (index, &count) in self.counts.iter().enumerate() {
            let edge = upper_edge_micros(index).map_or(f64::INFINITY, |m| m as f64 / 1e6);
            // Float edges of the fine buckets are multiples of 50 µs: compare
            // with a margin far below one bucket.
            let slot = exposed
                .iter()
                .position(|(upper, _)| edge <= upper + 1e-9)
                .unwrap_or(exposed.len() - 1);
            exposed[slot].1 += count;
        }
        exposed
    }
}

/// One histogram per transport.
#[derive(Debug, Default)]
pub struct TransportLatency {
    by_transport: [LatencyHistogram; TransportKind::ALL.len()],
}

impl TransportLatency {
    /// Count one duration of an instruction over `transport`.
    pub fn record(&self, transport: TransportKind, elapsed: Duration) {
        self.by_transport[transport.index()].record(elapsed);
    }

    /// The histogram of one transport.
    pub fn transport(&self, transport: TransportKind) -> &LatencyHistogram {
        &self.by_transport[transport.index()]
    }

    /// Every transport's counts together.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut all = self.by_transport.iter().map(LatencyHistogram::snapshot);
        let first = all
            .next()
            .unwrap_or_else(|| LatencyHistogram::default().snapshot());
        all.fold(first, |total, next| total.merged(&next))
    }
}

/// The server-side latency of each device instruction.
#[derive(Debug, Default)]
pub struct PipelineLatency {
    /// Register (D1), including the hub and the store commit.
    pub register: TransportLatency,
    /// Operation status poll (D2).
    pub poll: TransportLatency,
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
        assert_eq!(load.sum(), Duration::from_micros(100 * 101 / 2 * 100));
        // 100 values 0.1 ms … 10 ms: the median about 5 ms, p99 about 9.9 ms.
        assert_eq!(load.quantile(0.5), Some(Duration::from_micros(5_050)));
        assert_eq!(load.quantile(0.99), Some(Duration::from_micros(9_950)));
        assert_eq!(load.quantile(1.0), Some(Duration::from_micros(10_050)));
        assert_eq!(LatencyHistogram::default().snapshot().quantile(0.5), None);
        // The slow one before the load is not in it; it sits in the 5 s bucket.
        assert_eq!(
            histogram.snapshot().quantile(1.0),
            Some(Duration::from_secs(5))
        );
        histogram.record(Duration::from_secs(3600));
        assert_eq!(
            histogram.snapshot().quantile(1.0),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn exposed_buckets_sum_the_fine_ones_under_each_edge() {
        let histogram = LatencyHistogram::default();
        for micros in [100, 499, 700, 3_000, 240_000, 260_000, 40_000_000] {
            histogram.record(Duration::from_micros(micros));
        }
        let exposed = histogram.snapshot().exposed_buckets();
        assert_eq!(exposed.len(), EXPOSED_EDGES_SECONDS.len() + 1);
        let count = |edge: f64| exposed.iter().find(|(e, _)| *e == edge).unwrap().1;
        assert_eq!(count(0.0005), 2);
        assert_eq!(count(0.001), 1);
        assert_eq!(count(0.005), 1);
        assert_eq!(count(0.25), 1);
        assert_eq!(count(0.5), 1);
        assert_eq!(count(f64::INFINITY), 1);
        assert_eq!(exposed.iter().map(|(_, c)| c).sum::<u64>(), 7);
    }

    #[test]
    fn per_transport_histograms_merge_for_the_whole() {
        let latency = TransportLatency::default();
        latency.record(TransportKind::Https, Duration::from_millis(1));
        latency.record(TransportKind::Mqtt, Duration::from_millis(2));
        latency.record(TransportKind::MqttWs, Duration::from_millis(3));
        assert_eq!(latency.snapshot().count(), 3);
        assert_eq!(latency.transport(TransportKind::Mqtt).snapshot().count(), 1);
    }
}
