//! `static`: the single hub named on the enrollment.

use async_trait::async_trait;
use dps_model::AllocationPolicy;

use crate::request::{Allocation, AllocationRequest, Policy};
use crate::AllocationError;

/// The hub named on the enrollment. [`crate::candidate_hubs`] already
/// resolved and checked it (exactly one name, linked); this policy only
/// refuses a request whose candidate set is not a single hub.
#[derive(Clone, Copy, Debug, Default)]
pub struct StaticPolicy;

#[async_trait]
impl Policy for StaticPolicy {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Static
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let set = request.candidates.hubs;
        let mut hubs = set.iter();
        match (hubs.next(), hubs.next()) {
            (Some(only), None) => Ok(Allocation::hub(request.hubs.get(only).host_name())),
            _ => Err(AllocationError::StaticHubCount {
                named: request.hubs.names(set),
            }),
        }
    }
}
