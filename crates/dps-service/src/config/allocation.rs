//! Allocation settings: the custom webhook and the lowest-latency sources.

use std::path::PathBuf;
use std::time::Duration;

use dps_allocation::latency::{Cidr, LatencyTable, ProberConfig};
use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// Allocation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllocationConfig {
    /// Custom-allocation webhook timeout, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// Extra PEM files of CAs trusted for webhook TLS.
    pub webhook_trusted_ca_files: Vec<PathBuf>,
    /// The lowest-latency policy (`geoLatency`), `[allocation.geo_latency]`.
    pub geo_latency: GeoLatencyConfig,
}

impl Default for AllocationConfig {
    fn default() -> Self {
        AllocationConfig {
            webhook_timeout_ms: 5_000,
            webhook_trusted_ca_files: Vec::new(),
            geo_latency: GeoLatencyConfig::default(),
        }
    }
}

/// Where `geoLatency` learns round trips. Per device and hub, the operator
/// table answers first (the device's own path, from its source address and
/// the hub's `location`); live probes of the hubs from this server answer
/// for pairs the table does not know. A hub neither knows ranks behind the
/// others; when no candidate is known the choice is the hashed one.
///
/// ```toml
/// [allocation.geo_latency]
/// tie_tolerance_ms = 5
/// [allocation.geo_latency.table]
/// default_region = "europe"
/// ranges = [{ cidr = "10.1.0.0/16", region = "us" }]
/// round_trips = [
///   { region = "us", location = "westus", ms = 20 },
///   { region = "europe", location = "westeurope", ms = 15 },
/// ]
/// [allocation.geo_latency.probe]
/// enabled = true
/// interval_ms = 30000
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoLatencyConfig {
    /// Hubs whose round trip is within this many milliseconds of the best
    /// tie, and ties are hashed (stable per device). Default 5: more than
    /// the jitter of live probes between hubs of one region, so a device is
    /// not moved by noise, less than the gap between regions.
    pub tie_tolerance_ms: u64,
    /// The operator's table (default: empty, knows nothing).
    pub table: LatencyTableSettings,
    /// Live probing of the linked hubs.
    pub probe: LatencyProbeConfig,
}

impl Default for GeoLatencyConfig {
    fn default() -> Self {
        GeoLatencyConfig {
            tie_tolerance_ms: 5,
            table: LatencyTableSettings::default(),
            probe: LatencyProbeConfig::default(),
        }
    }
}

/// The operator's latency table: device region from its source address
/// (the longest matching range wins; outside every range, `default_region`
/// if set), then a round trip per (region, hub `location`). Names compare
/// case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyTableSettings {
    /// Region of devices outside every range (default: none, so the table
    /// knows nothing about them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    /// Address ranges and their region.
    pub ranges: Vec<LatencyRange>,
    /// Round trips per (region, hub location). Each region must be one that
    /// `ranges` or `default_region` names.
    pub round_trips: Vec<LatencyRoundTrip>,
}

/// One `ranges` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRange {
    /// `10.0.0.0/8`, `2001:db8::/32`, or one address.
    pub cidr: String,
    /// Region name.
    pub region: String,
}

/// One `round_trips` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRoundTrip {
    /// Device region.
    pub region: String,
    /// Hub `location` (as set on the linked hub).
    pub location: String,
    /// Round trip in milliseconds.
    pub ms: u64,
}

/// Live probing: every interval, the TCP handshake time from this server to
/// each policy-eligible linked hub of every tenant (port 443, or the
/// `hubs.resolve` address), smoothed. The hub list is re-read from storage
/// every round, so linked and unlinked hubs are seen within one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyProbeConfig {
    /// Probe at all (default on).
    pub enabled: bool,
    /// Time between rounds, in milliseconds (default 30 000, at least 100).
    pub interval_ms: u64,
    /// A slower handshake counts as unreachable, in milliseconds (default
    /// 2 000); an unreachable hub is dropped until it answers again.
    pub connect_timeout_ms: u64,
}

impl Default for LatencyProbeConfig {
    fn default() -> Self {
        LatencyProbeConfig {
            enabled: true,
            interval_ms: 30_000,
            connect_timeout_ms: 2_000,
        }
    }
}

impl GeoLatencyConfig {
    /// The tie tolerance.
    pub fn tie_tolerance(&self) -> Duration {
        Duration::from_millis(self.tie_tolerance_ms)
    }

    /// The table as the allocation engine takes it, checked: every error
    /// names its key.
    pub fn table(&self) -> Result<LatencyTable, ServiceError> {
        let bad = |key: String, what: String| ServiceError::Config {
            reason: format!("allocation.geo_latency.table.{key}: {what}"),
        };
        let named = |key: String, value: &str| {
            (!value.trim().is_empty())
                .then_some(())
                .ok_or_else(|| bad(key, "must not be empty".to_owned()))
        };
        let settings = &self.table;
        let mut table = LatencyTable::new();
        for (i, range) in settings.ranges.iter().enumerate() {
            let cidr = range
                .cidr
                .parse::<Cidr>()
                .map_err(|e| bad(format!("ranges[{i}].cidr"), e.to_string()))?;
            named(format!("ranges[{i}].region"), &range.region)?;
            table = table.with_range(cidr, &range.region);
        }
        if let Some(region) = &settings.default_region {
            named("default_region".to_owned(), region)?;
            table = table.with_default_region(region);
        }
        for (i, rt) in settings.round_trips.iter().enumerate() {
            named(format!("round_trips[{i}].location"), &rt.location)?;
            let declared = (settings.ranges.iter().map(|r| &r.region))
                .chain(&settings.default_region)
                .any(|r| r.eq_ignore_ascii_case(&rt.region));
            if !declared {
                let what = format!(
                    "{:?} is not the region of any range nor the default_region",
                    rt.region
                );
                return Err(bad(format!("round_trips[{i}].region"), what));
            }
            table = table.with_round_trip(&rt.region, &rt.location, Duration::from_millis(rt.ms));
        }
        Ok(table)
    }

    /// How the live prober runs (`None` when probing is off).
    pub fn prober(&self) -> Option<ProberConfig> {
        self.probe.enabled.then(|| ProberConfig {
            interval: Duration::from_millis(self.probe.interval_ms),
            connect_timeout: Duration::from_millis(self.probe.connect_timeout_ms),
            ..ProberConfig::default()
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ServiceError> {
        self.table()?;
        let probe = &self.probe;
        if probe.enabled && (probe.interval_ms < 100 || probe.connect_timeout_ms == 0) {
            return Err(ServiceError::Config {
                reason: "allocation.geo_latency.probe.interval_ms must be at least 100 and connect_timeout_ms at least 1".to_owned(),
            });
        }
        Ok(())
    }
}
