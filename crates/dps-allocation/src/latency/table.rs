//! The configured latency table: device region × hub location → round trip.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{Cidr, LatencySource};
use crate::hubs::PreparedHub;
use crate::AllocationError;

/// Device region from its source address, then a round-trip time per
/// (device region, hub `location`). Region and location names compare
/// case-insensitively. The longest matching range decides a device's
/// region; a device outside every range is in the default region, if one is
/// configured, else the table knows nothing about it.
#[derive(Clone, Debug, Default)]
pub struct LatencyTable {
    ranges: Vec<(Cidr, usize)>,
    default_region: Option<usize>,
    regions: Vec<Region>,
}

#[derive(Clone, Debug)]
struct Region {
    name: String,
    round_trips: HashMap<String, Duration>,
}

/// [`LatencyTable`] as a configuration file writes it:
///
/// ```toml
/// default_region = "europe"
/// ranges = [ { cidr = "10.1.0.0/16", region = "us" } ]
/// round_trips = [
///   { region = "us", location = "westus", ms = 20 },
///   { region = "europe", location = "westeurope", ms = 15 },
/// ]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTableConfig {
    /// Region of devices outside every range.
    #[serde(default)]
    pub default_region: Option<String>,
    /// Address ranges and their region.
    #[serde(default)]
    pub ranges: Vec<RegionRange>,
    /// Round trips per (region, hub location).
    #[serde(default)]
    pub round_trips: Vec<RoundTrip>,
}

/// One `ranges` entry.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionRange {
    /// `10.0.0.0/8`, `2001:db8::/32`.
    pub cidr: String,
    /// Region name.
    pub region: String,
}

/// One `round_trips` entry.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundTrip {
    /// Device region.
    pub region: String,
    /// Hub `location`.
    pub location: String,
    /// Round trip in milliseconds.
    pub ms: u64,
}

impl LatencyTable {
    /// An empty table (knows nothing).
    pub fn new() -> LatencyTable {
        LatencyTable::default()
    }

    /// Build from configuration; a bad CIDR is an error naming it.
    pub fn from_config(config: &LatencyTableConfig) -> Result<LatencyTable, AllocationError> {
        let mut table = LatencyTable::new();
        for range in &config.ranges {
            table = table.with_range(range.cidr.parse()?, &range.region);
        }
        if let Some(region) = &config.default_region {
            table = table.with_default_region(region);
        }
        for rt in &config.round_trips {
            table = table.with_round_trip(&rt.region, &rt.location, Duration::from_millis(rt.ms));
        }
        Ok(table)
    }

    /// Devices in `range` are in `region`.
    pub fn with_range(mut self, range: Cidr, region: &str) -> LatencyTable {
        let index = self.region_index(region);
        self.ranges.push((range, index));
        // Longest prefix first, so the first match is the most specific.
        self.ranges
            .sort_by_key(|(range, _)| std::cmp::Reverse(range.prefix()));
        self
    }

    /// Devices outside every range (or of unknown address) are in `region`.
    pub fn with_default_region(mut self, region: &str) -> LatencyTable {
        self.default_region = Some(self.region_index(region));
        self
    }

    /// From `region` to hubs in `location` takes `round_trip`.
    pub fn with_round_trip(
        mut self,
        region: &str,
        location: &str,
        round_trip: Duration,
    ) -> LatencyTable {
        let index = self.region_index(region);
        self.regions[index]
            .round_trips
            .insert(location.to_ascii_lowercase(), round_trip);
        self
    }

    /// The region of a device address, if the table places it.
    pub fn region_of(&self, source_ip: Option<IpAddr>) -> Option<&str> {
        self.region_index_of(source_ip)
            .map(|i| self.regions[i].name.as_str())
    }

    fn region_index_of(&self, source_ip: Option<IpAddr>) -> Option<usize> {
        source_ip
            .and_then(|ip| {
                self.ranges
                    .iter()
                    .find(|(range, _)| range.contains(ip))
                    .map(|&(_, region)| region)
            })
            .or(self.default_region)
    }

    fn region_index(&mut self, name: &str) -> usize {
        if let Some(i) = self
            .regions
            .iter()
            .position(|r| r.name.eq_ignore_ascii_case(name))
        {
            return i;
        }
        self.regions.push(Region {
            name: name.to_owned(),
            round_trips: HashMap::new(),
        });
        self.regions.len() - 1
    }
}

impl LatencySource for LatencyTable {
    fn round_trip(&self, source_ip: Option<IpAddr>, hub: &PreparedHub) -> Option<Duration> {
        let region = self.region_index_of(source_ip)?;
        let location = hub.location_key()?;
        self.regions[region].round_trips.get(location).copied()
    }
}
