//! The results table every bench prints: one row per phase with its count,
//! concurrency, throughput, latency percentiles (ms), failures, and how many
//! cores the process kept busy meanwhile.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::process_cpu_seconds;

/// Latencies are recorded in microseconds, up to 10 minutes.
const MAX_MICROS: u64 = 600_000_000;

/// An empty latency histogram (microseconds).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

/// Record one latency into a [`latency_histogram`].
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let _ = histogram.record(micros.clamp(1, MAX_MICROS));
}

/// Wall and CPU time since a phase started.
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    started: Instant,
    cpu: Option<f64>,
}

impl Meter {
    /// Start measuring now.
    pub fn start() -> Self {
        Meter {
            started: Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    /// Wall time so far.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Average number of cores this process kept busy so far.
    pub fn cores_busy(&self) -> Option<f64> {
        let cpu = process_cpu_seconds()? - self.cpu?;
        Some(cpu / self.started.elapsed().as_secs_f64().max(1e-9))
    }
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Operations attempted.
    pub count: u64,
    /// Operations in flight.
    pub concurrency: usize,
    /// Successful operations per second of wall time.
    pub rate: f64,
    /// Latency of successful operations, microseconds.
    pub latency: Histogram<u64>,
    /// Operations that failed.
    pub failures: u64,
    /// Cores the process kept busy (server and client together).
    pub cores_busy: Option<f64>,
}

impl Row {
    /// A row from counts measured by `meter`.
    pub fn new(
        name: impl Into<String>,
        concurrency: usize,
        latency: Histogram<u64>,
        failures: u64,
        meter: &Meter,
    ) -> Self {
        let succeeded = latency.len();
        Row {
            name: name.into(),
            count: succeeded + failures,
            concurrency,
            rate: succeeded as f64 / meter.elapsed().as_secs_f64().max(1e-9),
            latency,
            failures,
            cores_busy: meter.cores_busy(),
        }
    }

    /// A row of a swarm's report (its failures printed to stderr).
    pub fn from_swarm(
        name: &str,
        report: &dps_client::swarm::SwarmReport,
        concurrency: usize,
        meter: &Meter,
    ) -> Self {
        if report.failed() > 0 {
            eprintln!("{name}: failures {:?}", report.sample_errors);
        }
        Row {
            name: name.to_owned(),
            count: report.attempted,
            concurrency,
            rate: report.rate(),
            latency: report.latency.clone(),
            failures: report.failed(),
            cores_busy: meter.cores_busy(),
        }
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Print the row under [`print_header`].
    pub fn print(&self) {
        let cores = self
            .cores_busy
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"));
        println!(
            "{:<48} {:>8} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>5}",
            self.name,
            self.count,
            self.concurrency,
            self.rate,
            self.ms(0.50),
            self.ms(0.90),
            self.ms(0.99),
            self.latency.max() as f64 / 1000.0,
            self.failures,
            cores
        );
    }
}

/// The column titles; `count` names what a row counts (devices, requests…).
pub fn print_header(count: &str) {
    println!(
        "{:<48} {:>8} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5}",
        "phase", count, "conc", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "failed", "cores"
    );
}

/// One phase of a bench whose server, hub emulator and load generator are
/// separate processes: counts, rate, latency, and each process's CPU.
pub struct CpuPhase {
    /// What was measured.
    pub name: String,
    /// Operations attempted.
    pub count: u64,
    /// Operations that succeeded.
    pub succeeded: u64,
    /// Operations that failed.
    pub failed: u64,
    /// Operations in flight.
    pub concurrency: usize,
    /// Successful operations per second of wall time.
    pub rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// CPU seconds of the server over the phase.
    pub server_cpu: f64,
    /// CPU seconds of the hub emulator over the phase.
    pub hub_cpu: f64,
    /// CPU seconds of the load generator over the phase.
    pub client_cpu: f64,
    /// Calls the server made to hubs (any kind).
    pub hub_calls: f64,
    /// Bulk registry calls among them.
    pub bulk_calls: f64,
}

impl CpuPhase {
    /// `seconds` of CPU in µs per successful operation.
    pub fn per(&self, seconds: f64) -> f64 {
        seconds * 1e6 / self.succeeded.max(1) as f64
    }

    /// Print under [`print_cpu_header`], with the server's CPU as a ratio
    /// to `floor` (µs) when given.
    pub fn print(&self, floor: Option<f64>) {
        let server = self.per(self.server_cpu);
        let ratio = floor.map_or_else(|| "-".to_owned(), |f| format!("{:.2}", server / f));
        println!(
            "{:<38} {:>6} {:>4} {:>7.0} {:>7.1} {:>7.1} {:>8.0} {:>6} {:>7.0} {:>7.0} {:>6.3} {:>6.3} {:>5}",
            self.name,
            self.count,
            self.concurrency,
            self.rate,
            self.p50_ms,
            self.p99_ms,
            server,
            ratio,
            self.per(self.hub_cpu),
            self.per(self.client_cpu),
            self.hub_calls / self.succeeded.max(1) as f64,
            self.bulk_calls / self.succeeded.max(1) as f64,
            self.failed
        );
    }
}

/// The column titles of [`CpuPhase::print`].
pub fn print_cpu_header() {
    println!(
        "{:<38} {:>6} {:>4} {:>7} {:>7} {:>7} {:>8} {:>6} {:>7} {:>7} {:>6} {:>6} {:>5}",
        "phase",
        "count",
        "conc",
        "per s",
        "p50 ms",
        "p99 ms",
        "srv µs",
        "ratio",
        "hub µs",
        "gen µs",
        "calls",
        "bulk",
        "fail"
    );
}
