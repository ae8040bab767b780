//! Where the lowest-latency policy learns round-trip times.
//!
//! * [`LatencyTable`]: configured by the operator: device region from its
//!   source address (CIDR ranges, with an optional default region) × hub
//!   `location` → round-trip time.
//! * [`LiveLatency`] + [`LiveProber`]: a background task measures the TCP
//!   handshake time from this server to each hub host.
//! * [`Layered`]: ask one source, then another. The allocator asks the table
//!   first (it describes the *device's* path to the hub, which is what
//!   matters) and the live measurements second (this server's own path,
//!   a proxy for devices that reached this replica because it is near them).

mod cidr;
mod live;
pub(crate) mod table;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use cidr::Cidr;
pub use live::{LiveLatency, LiveProber, ProbeTarget, ProberConfig};
pub use table::{LatencyTable, LatencyTableConfig, RegionRange, RoundTrip};

use crate::hubs::{HubSet, HubTable, PreparedHub};

/// A source of device-to-hub round-trip times. Called on the registration
/// path for every candidate hub, so it must answer from memory, quickly.
pub trait LatencySource: Send + Sync {
    /// The round trip from a device at `source_ip` (if known) to `hub`, or
    /// `None` when this source knows nothing about that pair.
    fn round_trip(&self, source_ip: Option<IpAddr>, hub: &PreparedHub) -> Option<Duration>;

    /// The round trips to every hub of `set`, written at each hub's index
    /// in `out`. By default each hub is asked on its own; [`Layered`]
    /// answers the whole set from one layer, so that figures of different
    /// kinds are never compared with each other.
    fn round_trips(
        &self,
        source_ip: Option<IpAddr>,
        hubs: &HubTable,
        set: HubSet,
        out: &mut [Option<Duration>; HubTable::MAX_HUBS],
    ) {
        for index in set.iter() {
            out[index.get()] = self.round_trip(source_ip, hubs.get(index));
        }
    }
}

impl<T: LatencySource + ?Sized> LatencySource for Arc<T> {
    fn round_trip(&self, source_ip: Option<IpAddr>, hub: &PreparedHub) -> Option<Duration> {
        (**self).round_trip(source_ip, hub)
    }

    fn round_trips(
        &self,
        source_ip: Option<IpAddr>,
        hubs: &HubTable,
        set: HubSet,
        out: &mut [Option<Duration>; HubTable::MAX_HUBS],
    ) {
        (**self).round_trips(source_ip, hubs, set, out)
    }
}

/// Two sources by precedence. For a candidate set, the first answers when
/// it knows at least one of the hubs (hubs it does not know rank behind
/// those it knows); only when it knows none does the second answer. A
/// table's device-to-hub figure and this server's own measured round trip
/// are different quantities, so one set is never ranked on a mix of both.
#[derive(Clone, Debug)]
pub struct Layered<A, B> {
    /// Asked first.
    pub first: A,
    /// Asked when the first knows none of the candidates.
    pub then: B,
}

impl<A: LatencySource, B: LatencySource> LatencySource for Layered<A, B> {
    fn round_trip(&self, source_ip: Option<IpAddr>, hub: &PreparedHub) -> Option<Duration> {
        self.first
            .round_trip(source_ip, hub)
            .or_else(|| self.then.round_trip(source_ip, hub))
    }

    fn round_trips(
        &self,
        source_ip: Option<IpAddr>,
        hubs: &HubTable,
        set: HubSet,
        out: &mut [Option<Duration>; HubTable::MAX_HUBS],
    ) {
        self.first.round_trips(source_ip, hubs, set, out);
        if set.iter().any(|index| out[index.get()].is_some()) {
            return;
        }
        self.then.round_trips(source_ip, hubs, set, out);
    }
}

/// A source that knows nothing: every hub ties, so the lowest-latency
/// policy falls back to the hashed choice.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLatency;

impl LatencySource for NoLatency {
    fn round_trip(&self, _: Option<IpAddr>, _: &PreparedHub) -> Option<Duration> {
        None
    }
}
