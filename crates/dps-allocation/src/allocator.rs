//! The engine: one implementation per policy, chosen per request.

use std::sync::Arc;
use std::time::Duration;

use dps_model::AllocationPolicy;

use crate::hubs::{Candidates, HubSet};
use crate::latency::{LatencySource, NoLatency};
use crate::policy::{GeoLatencyPolicy, HashedPolicy, StaticPolicy, WebhookConfig, WebhookPolicy};
use crate::reprovision::Decision;
use crate::request::{Allocation, AllocationRequest, Policy};
use crate::AllocationError;

/// What the built-in policies need from configuration.
#[derive(Clone)]
pub struct AllocatorConfig {
    /// How the custom webhook is called.
    pub webhook: WebhookConfig,
    /// Round trips for the lowest-latency policy (default: none known, so
    /// it behaves like `hashed`).
    pub latency: Arc<dyn LatencySource>,
    /// Round trips this close to the best tie (default 0).
    pub geo_tie_tolerance: Duration,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            webhook: WebhookConfig::default(),
            latency: Arc::new(NoLatency),
            geo_tie_tolerance: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for AllocatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllocatorConfig")
            .field("webhook", &self.webhook)
            .field("geo_tie_tolerance", &self.geo_tie_tolerance)
            .finish_non_exhaustive()
    }
}

/// Holds one [`Policy`] per `allocationPolicy` value and dispatches each
/// request to the one its [`Candidates::policy`] names. Cheap to share
/// (`Arc<Allocator>`); every method takes `&self`.
#[derive(Clone)]
pub struct Allocator {
    hashed: Arc<dyn Policy>,
    geo_latency: Arc<dyn Policy>,
    static_hub: Arc<dyn Policy>,
    custom: Arc<dyn Policy>,
}

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocator").finish_non_exhaustive()
    }
}

impl Allocator {
    /// The built-in policies, configured.
    pub fn new(config: AllocatorConfig) -> Result<Allocator, AllocationError> {
        let geo =
            GeoLatencyPolicy::new(config.latency).with_tie_tolerance(config.geo_tie_tolerance);
        Ok(Allocator {
            hashed: Arc::new(HashedPolicy),
            geo_latency: Arc::new(geo),
            static_hub: Arc::new(StaticPolicy),
            custom: Arc::new(WebhookPolicy::new(config.webhook)?),
        })
    }

    /// Replace the implementation of the policy `policy.kind()` names.
    pub fn with_policy(mut self, policy: Arc<dyn Policy>) -> Allocator {
        match policy.kind() {
            AllocationPolicy::Hashed => self.hashed = policy,
            AllocationPolicy::GeoLatency => self.geo_latency = policy,
            AllocationPolicy::Static => self.static_hub = policy,
            AllocationPolicy::Custom => self.custom = policy,
        }
        self
    }

    /// The implementation used for a policy.
    pub fn policy(&self, policy: AllocationPolicy) -> &dyn Policy {
        match policy {
            AllocationPolicy::Hashed => &*self.hashed,
            AllocationPolicy::GeoLatency => &*self.geo_latency,
            AllocationPolicy::Static => &*self.static_hub,
            AllocationPolicy::Custom => &*self.custom,
        }
    }

    /// Run the request's policy over its candidates.
    pub async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        self.policy(request.candidates.policy)
            .allocate(request)
            .await
    }

    /// Carry out a [`Decision`] of the reprovision planner.
    ///
    /// * [`Decision::Allocate`]: same as [`Allocator::allocate`].
    /// * [`Decision::KeepHub`]: no policy choice; the hub must still be
    ///   linked. Under `custom` the webhook is still called — offered only
    ///   that hub in `linkedHubs`, so it must answer with it — and its
    ///   initial twin and payload are returned.
    pub async fn resolve(
        &self,
        request: &AllocationRequest<'_>,
        decision: &Decision,
    ) -> Result<Allocation, AllocationError> {
        let hub = match decision {
            Decision::Allocate => return self.allocate(request).await,
            Decision::KeepHub(hub) => hub,
        };
        let index = request
            .hubs
            .find(hub)
            .ok_or_else(|| AllocationError::CurrentHubNotLinked { hub: hub.clone() })?;
        if request.candidates.policy != AllocationPolicy::Custom {
            return Ok(Allocation::hub(request.hubs.get(index).host_name()));
        }
        let mut narrowed = *request;
        narrowed.candidates = Candidates {
            policy: AllocationPolicy::Custom,
            hubs: HubSet::only(index),
        };
        self.custom.allocate(&narrowed).await
    }
}
