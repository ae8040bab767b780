//! Live round-trip measurements from this server to each hub.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::LatencySource;
use crate::hubs::PreparedHub;

/// The latest smoothed round trip per hub host, shared between a
/// [`LiveProber`] (writer) and the lowest-latency policy (reader).
#[derive(Debug, Default)]
pub struct LiveLatency {
    by_host: RwLock<HashMap<String, Duration>>,
}

impl LiveLatency {
    /// An empty table.
    pub fn new() -> LiveLatency {
        LiveLatency::default()
    }

    /// The current value for a hub host name (case-insensitive).
    pub fn get(&self, hub_host_name: &str) -> Option<Duration> {
        let map = self.by_host.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&hub_host_name.to_ascii_lowercase()).copied()
    }

    /// Fold a new sample in: `new = old + smoothing × (sample − old)`.
    pub fn record(&self, hub_host_name: &str, sample: Duration, smoothing: f64) {
        let mut map = self.by_host.write().unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(hub_host_name.to_ascii_lowercase())
            .or_insert(sample);
        let old = entry.as_secs_f64();
        let smoothed = old + smoothing.clamp(0.0, 1.0) * (sample.as_secs_f64() - old);
        *entry = Duration::from_secs_f64(smoothed.max(0.0));
    }

    /// Drop a hub (unreachable, or no longer probed).
    pub fn forget(&self, hub_host_name: &str) {
        let mut map = self.by_host.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(&hub_host_name.to_ascii_lowercase());
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut map = self.by_host.write().unwrap_or_else(PoisonError::into_inner);
        map.retain(|host, _| keep(host));
    }
}

impl LatencySource for LiveLatency {
    fn round_trip(&self, _source_ip: Option<IpAddr>, hub: &PreparedHub) -> Option<Duration> {
        let map = self.by_host.read().unwrap_or_else(PoisonError::into_inner);
        map.get(hub.host_key()).copied()
    }
}

/// A hub to probe and where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The hub host name the measurement is recorded under.
    pub hub_host_name: String,
    /// `host:port` to connect to.
    pub address: String,
}

impl ProbeTarget {
    /// Probe the hub's HTTPS port (`{host}:443`).
    pub fn https(hub_host_name: &str) -> ProbeTarget {
        ProbeTarget {
            hub_host_name: hub_host_name.to_owned(),
            address: format!("{hub_host_name}:443"),
        }
    }
}

/// How the prober behaves.
#[derive(Clone, Debug)]
pub struct ProberConfig {
    /// Time between rounds (default 30 s).
    pub interval: Duration,
    /// A connect that takes longer counts as a failure (default 2 s).
    pub connect_timeout: Duration,
    /// Weight of a new sample in the running average, 0..=1 (default 0.3).
    pub smoothing: f64,
}

impl Default for ProberConfig {
    fn default() -> Self {
        ProberConfig {
            interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            smoothing: 0.3,
        }
    }
}

/// Measures, every interval, the TCP handshake time to each target and feeds
/// a [`LiveLatency`].
///
/// The handshake is exactly one network round trip, which is what the policy
/// compares; a TLS handshake or an HTTP `HEAD` would add the hub's CPU time
/// and our own. Name resolution happens before the clock starts. A target
/// that cannot be reached is forgotten, so it ranks behind every hub with a
/// measurement until it answers again.
#[derive(Clone, Debug)]
pub struct LiveProber {
    latency: Arc<LiveLatency>,
    targets: Arc<RwLock<Vec<ProbeTarget>>>,
    config: ProberConfig,
}

impl LiveProber {
    /// A prober writing into `latency`, with no targets yet.
    pub fn new(latency: Arc<LiveLatency>, config: ProberConfig) -> LiveProber {
        LiveProber {
            latency,
            targets: Arc::default(),
            config,
        }
    }

    /// Replace the targets (e.g. when tenants link or unlink hubs); hubs no
    /// longer probed are dropped from the table.
    pub fn set_targets(&self, targets: Vec<ProbeTarget>) {
        self.latency.retain(|host| {
            targets
                .iter()
                .any(|t| t.hub_host_name.eq_ignore_ascii_case(host))
        });
        *self.targets.write().unwrap_or_else(PoisonError::into_inner) = targets;
    }

    /// Probe every target once, concurrently, and record the results.
    pub async fn probe_once(&self) {
        let targets = self
            .targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut probes = tokio::task::JoinSet::new();
        for target in targets {
            let timeout = self.config.connect_timeout;
            probes.spawn(async move {
                let result = measure(&target.address, timeout).await;
                (target, result)
            });
        }
        while let Some(joined) = probes.join_next().await {
            let Ok((target, result)) = joined else {
                continue;
            };
            match result {
                Some(rtt) => self
                    .latency
                    .record(&target.hub_host_name, rtt, self.config.smoothing),
                None => {
                    tracing::debug!(hub = %target.hub_host_name, "latency probe failed");
                    self.latency.forget(&target.hub_host_name);
                }
            }
        }
    }

    /// Run rounds forever on the current tokio runtime, the first at once.
    /// Dropping the handle stops the task.
    pub fn spawn(self) -> ProberHandle {
        let interval = self.config.interval.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                self.probe_once().await;
            }
        });
        ProberHandle { task }
    }
}

/// The running prober; dropping it stops the task.
#[derive(Debug)]
pub struct ProberHandle {
    task: JoinHandle<()>,
}

impl Drop for ProberHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One handshake time, or `None` when resolution or connection fails.
async fn measure(address: &str, timeout: Duration) -> Option<Duration> {
    let addr = tokio::time::timeout(timeout, tokio::net::lookup_host(address))
        .await
        .ok()?
        .ok()?
        .next()?;
    let start = Instant::now();
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let elapsed = start.elapsed();
    drop(stream);
    Some(elapsed)
}
