//! The tenant's linked hubs prepared for allocation, and the candidate set of
//! one request (spec §6.2).

use dps_model::{AllocationPolicy, Enrollment, LinkedHub};

use crate::hash;
use crate::AllocationError;

/// A linked hub with what the policies need precomputed.
#[derive(Clone, Debug)]
pub struct PreparedHub {
    host_name: String,
    host_key: String,
    weight: u32,
    inverse_weight: f64,
    apply_allocation_policy: bool,
    location: Option<String>,
    location_key: Option<String>,
    seed: u64,
}

impl PreparedHub {
    /// The host name as linked (original spelling).
    pub fn host_name(&self) -> &str {
        &self.host_name
    }
    /// `allocationWeight`, clamped to 1..=1000.
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// `applyAllocationPolicy`.
    pub fn apply_allocation_policy(&self) -> bool {
        self.apply_allocation_policy
    }
    /// `location` (region), used by the lowest-latency policy.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }
    /// The host name lower-cased (the key latency sources store it under).
    pub fn host_key(&self) -> &str {
        &self.host_key
    }
    /// The location lower-cased.
    pub fn location_key(&self) -> Option<&str> {
        self.location_key.as_deref()
    }
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }
    pub(crate) fn inverse_weight(&self) -> f64 {
        self.inverse_weight
    }
}

/// Position of a hub in its [`HubTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HubIndex(u8);

impl HubIndex {
    /// The position as a number.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// A set of hubs of one [`HubTable`], as a bit mask (no allocation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HubSet(u64);

impl HubSet {
    /// No hub.
    pub const EMPTY: HubSet = HubSet(0);

    /// The set holding one hub.
    pub fn only(index: HubIndex) -> HubSet {
        HubSet(1 << index.0)
    }
    /// Add a hub.
    pub fn insert(&mut self, index: HubIndex) {
        self.0 |= 1 << index.0;
    }
    /// Is the hub in the set?
    pub fn contains(self, index: HubIndex) -> bool {
        self.0 & (1 << index.0) != 0
    }
    /// Number of hubs.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// No hub at all?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The hubs in table order.
    pub fn iter(self) -> impl Iterator<Item = HubIndex> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let index = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(HubIndex(index))
        })
    }
}

/// A tenant's linked hubs, prepared once (host-name hash seeds, weights) and
/// reused for every registration until the tenant's hubs change.
#[derive(Clone, Debug)]
pub struct HubTable {
    hubs: Vec<PreparedHub>,
}

impl HubTable {
    /// The most hubs a table holds (Azure allows 50 per instance).
    pub const MAX_HUBS: usize = 64;

    /// Prepare the tenant's linked hubs. Weights outside 1..=1000 are clamped
    /// (the service API refuses them; a stored bad value must not divide by zero).
    pub fn new(linked_hubs: &[LinkedHub]) -> Result<HubTable, AllocationError> {
        if linked_hubs.len() > Self::MAX_HUBS {
            return Err(AllocationError::TooManyLinkedHubs {
                count: linked_hubs.len(),
                max: Self::MAX_HUBS,
            });
        }
        let hubs = linked_hubs
            .iter()
            .map(|hub| {
                let weight = hub.allocation_weight.clamp(1, 1000);
                PreparedHub {
                    host_name: hub.host_name.clone(),
                    host_key: hub.host_name.to_ascii_lowercase(),
                    weight,
                    inverse_weight: 1.0 / f64::from(weight),
                    apply_allocation_policy: hub.apply_allocation_policy,
                    location: hub.location.clone(),
                    location_key: hub.location.as_ref().map(|l| l.to_ascii_lowercase()),
                    seed: hash::hash_name(&hub.host_name),
                }
            })
            .collect();
        Ok(HubTable { hubs })
    }

    /// Number of hubs.
    pub fn len(&self) -> usize {
        self.hubs.len()
    }
    /// No linked hub?
    pub fn is_empty(&self) -> bool {
        self.hubs.is_empty()
    }
    /// The hub at a position.
    pub fn get(&self, index: HubIndex) -> &PreparedHub {
        &self.hubs[index.get()]
    }
    /// The position of a host name (case-insensitive; the first of duplicates).
    pub fn find(&self, host_name: &str) -> Option<HubIndex> {
        self.hubs
            .iter()
            .position(|h| h.host_name.eq_ignore_ascii_case(host_name))
            .map(|i| HubIndex(i as u8))
    }
    /// Every hub.
    pub fn all(&self) -> HubSet {
        if self.hubs.len() == 64 {
            HubSet(u64::MAX)
        } else {
            HubSet((1u64 << self.hubs.len()) - 1)
        }
    }
    /// The hubs with `applyAllocationPolicy=true`.
    pub fn policy_eligible(&self) -> HubSet {
        let mut set = HubSet::EMPTY;
        for (i, hub) in self.hubs.iter().enumerate() {
            if hub.apply_allocation_policy {
                set.insert(HubIndex(i as u8));
            }
        }
        set
    }
    /// The host names of a set, in table order.
    pub fn names(&self, set: HubSet) -> Vec<String> {
        set.iter().map(|i| self.get(i).host_name.clone()).collect()
    }
}

/// The policy that applies to a request and the hubs it may choose from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidates {
    /// Enrollment `allocationPolicy`, else the tenant default.
    pub policy: AllocationPolicy,
    /// Never empty when built by [`candidate_hubs`].
    pub hubs: HubSet,
}

/// The policy and candidate hubs for an enrollment (spec §6.2).
///
/// * policy = the enrollment's `allocationPolicy`, else `default_policy`;
/// * `static`: the one hub named by `iotHubs`, else by the legacy
///   `iotHubHostName`; it must be linked, and it may have
///   `applyAllocationPolicy=false` (naming it is the point of static);
/// * other policies: the enrollment's `iotHubs` that are linked, else all
///   linked hubs; hubs with `applyAllocationPolicy=false` are left out.
///
/// Names in `iotHubs` that are not linked are **ignored** (a hub unlinked
/// after the enrollment was written must not break its other hubs); if none
/// is left the error says which names were tried. The legacy
/// `iotHubHostName` is only read by `static`.
pub fn candidate_hubs(
    enrollment: &dyn Enrollment,
    hubs: &HubTable,
    default_policy: AllocationPolicy,
) -> Result<Candidates, AllocationError> {
    let policy = enrollment.allocation_policy().unwrap_or(default_policy);
    let named = enrollment.iot_hubs();
    if policy == AllocationPolicy::Static {
        let hub = match (named, enrollment.iot_hub_host_name()) {
            ([one], _) => one.as_str(),
            ([], Some(legacy)) if !legacy.is_empty() => legacy,
            _ => {
                let mut names: Vec<String> = named.to_vec();
                names.extend(enrollment.iot_hub_host_name().map(str::to_owned));
                return Err(AllocationError::StaticHubCount { named: names });
            }
        };
        let index = hubs
            .find(hub)
            .ok_or_else(|| AllocationError::StaticHubNotLinked {
                hub: hub.to_owned(),
            })?;
        return Ok(Candidates {
            policy,
            hubs: HubSet::only(index),
        });
    }

    let eligible = hubs.policy_eligible();
    let considered = if named.is_empty() {
        hubs.all()
    } else {
        let mut linked = HubSet::EMPTY;
        for name in named {
            if let Some(index) = hubs.find(name) {
                linked.insert(index);
            }
        }
        if linked.is_empty() {
            return Err(AllocationError::NoCandidateHub {
                policy,
                reason: format!(
                    "none of the enrollment's iotHubs ({}) is linked to this provisioning service",
                    named.join(", ")
                ),
            });
        }
        linked
    };
    let chosen = HubSet(considered.0 & eligible.0);
    if chosen.is_empty() {
        let reason = if hubs.is_empty() {
            "this provisioning service has no linked hub".to_owned()
        } else {
            format!(
                "the hubs that could be used ({}) all have applyAllocationPolicy=false",
                hubs.names(considered).join(", ")
            )
        };
        return Err(AllocationError::NoCandidateHub { policy, reason });
    }
    Ok(Candidates {
        policy,
        hubs: chosen,
    })
}
