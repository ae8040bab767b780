//! `hashed`: evenly weighted distribution by weighted rendezvous hashing.

use async_trait::async_trait;
use dps_model::AllocationPolicy;

use crate::hash;
use crate::hubs::{HubIndex, HubSet, HubTable};
use crate::request::{Allocation, AllocationRequest, Policy};
use crate::AllocationError;

/// Weighted rendezvous (highest random weight) hashing.
///
/// Each hub `i` draws `u_i` in (0, 1) from a fixed hash of (registration id
/// lower-cased, hub host name lower-cased); the hub with the smallest
/// `-ln(u_i) / w_i` wins. Those keys are exponential random variables with
/// rates `w_i`, so hub `i` wins with probability `w_i / Σw` exactly, a
/// device's hub depends only on its own id and the hub set, and adding a hub
/// moves only the devices the new hub wins (about `w_new / Σw`). The
/// registration-id hash is computed once per request and each hub's hash
/// state once per [`HubTable`], so a choice costs one short hash plus one
/// mix and one logarithm per candidate, and no allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashedPolicy;

impl HashedPolicy {
    /// The chosen hub, or `None` for an empty set.
    pub fn choose(registration_id: &str, hubs: &HubTable, set: HubSet) -> Option<HubIndex> {
        let device = hash::hash_name(registration_id);
        let mut best: Option<(f64, HubIndex)> = None;
        for index in set.iter() {
            let hub = hubs.get(index);
            let u = hash::unit_interval(hash::combine(device, hub.seed()));
            let key = -u.ln() * hub.inverse_weight();
            // Strictly smaller: on an exact tie the earlier table entry wins,
            // which keeps the choice deterministic.
            if best.is_none_or(|(best_key, _)| key < best_key) {
                best = Some((key, index));
            }
        }
        best.map(|(_, index)| index)
    }
}

#[async_trait]
impl Policy for HashedPolicy {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Hashed
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let index = HashedPolicy::choose(
            request.registration_id.as_str(),
            request.hubs,
            request.candidates.hubs,
        )
        .ok_or_else(|| AllocationError::NoCandidateHub {
            policy: AllocationPolicy::Hashed,
            reason: "the candidate set is empty".to_owned(),
        })?;
        Ok(Allocation::hub(request.hubs.get(index).host_name()))
    }
}
