//! `geoLatency`: the hub with the lowest round trip to the device.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dps_model::AllocationPolicy;

use super::hashed::HashedPolicy;
use crate::hubs::{HubSet, HubTable};
use crate::latency::{LatencySource, NoLatency};
use crate::request::{Allocation, AllocationRequest, Policy};
use crate::AllocationError;
use std::net::IpAddr;

/// Lowest latency, ties broken by the hashed policy.
///
/// Hubs whose round trip is within `tie_tolerance` of the best one tie; a
/// hub the latency source knows nothing about ranks behind every hub it
/// knows, and when it knows none of the candidates they all tie, so the
/// policy degrades to `hashed` instead of failing.
#[derive(Clone)]
pub struct GeoLatencyPolicy {
    source: Arc<dyn LatencySource>,
    tie_tolerance: Duration,
}

impl std::fmt::Debug for GeoLatencyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoLatencyPolicy")
            .field("tie_tolerance", &self.tie_tolerance)
            .finish_non_exhaustive()
    }
}

impl Default for GeoLatencyPolicy {
    fn default() -> Self {
        GeoLatencyPolicy::new(Arc::new(NoLatency))
    }
}

impl GeoLatencyPolicy {
    /// A policy reading `source`, with exact ties only.
    pub fn new(source: Arc<dyn LatencySource>) -> GeoLatencyPolicy {
        GeoLatencyPolicy {
            source,
            tie_tolerance: Duration::ZERO,
        }
    }

    /// Treat round trips within `tolerance` of the best as equal (useful with
    /// live measurements, which jitter).
    pub fn with_tie_tolerance(mut self, tolerance: Duration) -> GeoLatencyPolicy {
        self.tie_tolerance = tolerance;
        self
    }

    /// The hubs of `set` that tie for the lowest latency.
    pub fn fastest(&self, source_ip: Option<IpAddr>, hubs: &HubTable, set: HubSet) -> HubSet {
        let mut round_trips = [None; HubTable::MAX_HUBS];
        self.source
            .round_trips(source_ip, hubs, set, &mut round_trips);
        let best = set
            .iter()
            .filter_map(|index| round_trips[index.get()])
            .min();
        let Some(best) = best else {
            return set;
        };
        let limit = best.saturating_add(self.tie_tolerance);
        let mut fastest = HubSet::EMPTY;
        for index in set.iter() {
            if round_trips[index.get()].is_some_and(|rtt| rtt <= limit) {
                fastest.insert(index);
            }
        }
        fastest
    }
}

#[async_trait]
impl Policy for GeoLatencyPolicy {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::GeoLatency
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let fastest = self.fastest(
            request.device.source_ip,
            request.hubs,
            request.candidates.hubs,
        );
        let index = HashedPolicy::choose(request.registration_id.as_str(), request.hubs, fastest)
            .ok_or_else(|| AllocationError::NoCandidateHub {
            policy: AllocationPolicy::GeoLatency,
            reason: "the candidate set is empty".to_owned(),
        })?;
        Ok(Allocation::hub(request.hubs.get(index).host_name()))
    }
}
