//! What a registration does to a device that may already be assigned
//! (spec §6.4). Pure functions, no I/O.
//!
//! The planner works in two steps so the service can skip allocation when
//! the hub is kept:
//!
//! 1. [`plan_before_allocation`] says whether to run the policy
//!    ([`Decision::Allocate`]) or keep the device's hub ([`Decision::KeepHub`]);
//!    [`crate::Allocator::resolve`] carries that out (under `KeepHub` the
//!    custom webhook is still called, offered only the current hub, for its
//!    payload).
//! 2. [`plan_after_allocation`] turns the outcome into what to do on the hubs
//!    and which substatus to record.
//!
//! | previous | policy | hub | twin | delete old | substatus |
//! |---|---|---|---|---|---|
//! | none | any | allocated | apply initial | — | initialAssignment |
//! | on hub A | legacy sticky (no policy, api ≤ 2018-04-01) | A | keep | — | initialAssignment |
//! | on hub A | updateHubAssignment=false | A | keep | — | reprovisionedToInitialAssignment¹ |
//! | on hub A | update, migrate; allocated A | A | keep | — | reprovisionedToInitialAssignment¹ |
//! | on hub A | update, reset; allocated A | A | reset to initial ("factory reset") | — | reprovisionedToInitialAssignment¹ |
//! | on hub A | update, migrate; allocated B | B | migrate from A | A | deviceDataMigrated |
//! | on hub A | update, reset; allocated B | B | apply initial | A | deviceDataReset |
//!
//! ¹ `initialAssignment` for device api-versions before 2019-04-15, which
//! do not know the newer value.
//!
//! Choices where the spec is silent: a previous record counts as an
//! assignment when it names a hub, whatever its status (a failed
//! re-registration leaves the identity where it was, and the hub must know
//! it is the same device); an enrollment without `reprovisionPolicy` used by
//! a current device gets the default policy (update, migrate); a same-hub
//! re-registration under migrateDeviceData=false resets the twin to the
//! initial twin, which is how the portal describes "reset to initial config"
//! and gives devices a factory reset by re-registering.

use dps_model::{RegistrationRecord, RegistrationSubstatus, ReprovisionPolicy};

/// Whether to run the allocation policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run the policy over the candidate hubs.
    Allocate,
    /// Keep the device on this hub (no policy choice; the custom webhook is
    /// still called for its payload).
    KeepHub(String),
}

/// What to do with the device twin on the target hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TwinAction {
    /// Create the device with the initial twin (webhook's, else the enrollment's).
    ApplyInitial,
    /// Copy the device's twin (tags, desired properties, capabilities) from
    /// this hub.
    MigrateFrom(String),
    /// The device exists on the target hub: overwrite its twin with the
    /// initial twin.
    ResetToInitial,
    /// The device exists on the target hub: leave its twin alone.
    KeepExisting,
}

/// The outcome of a registration on the hubs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReprovisionPlan {
    /// Where the device ends up.
    pub target_hub: String,
    /// What happens to its twin there.
    pub twin: TwinAction,
    /// The hub to delete the device from after the move, if it moved.
    pub delete_from: Option<String>,
    /// The substatus to record.
    pub substatus: RegistrationSubstatus,
}

/// Device api-versions up to this one know nothing of reprovisioning.
const LAST_LEGACY_API: (u16, u8, u8) = (2018, 4, 1);
/// The first device api-version that knows `reprovisionedToInitialAssignment`.
const FIRST_REPROVISIONED_SUBSTATUS_API: (u16, u8, u8) = (2019, 4, 15);

/// The date of an api-version (`2019-03-31`, `2018-09-01-preview`). An
/// unparsable value counts as current: only versions known to be old get
/// old behaviour.
fn api_date(api_version: &str) -> Option<(u16, u8, u8)> {
    let date = api_version.get(..10)?;
    let mut parts = date.split('-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    Some((year, month, day))
}

fn is_legacy_api(api_version: &str) -> bool {
    api_date(api_version).is_some_and(|d| d <= LAST_LEGACY_API)
}

fn knows_reprovisioned_substatus(api_version: &str) -> bool {
    api_date(api_version).is_none_or(|d| d >= FIRST_REPROVISIONED_SUBSTATUS_API)
}

/// The hub the previous record puts the device on, if any.
fn previous_hub(previous: Option<&RegistrationRecord>) -> Option<&str> {
    previous
        .and_then(|record| record.assigned_hub.as_deref())
        .filter(|hub| !hub.is_empty())
}

/// Whether the device keeps its hub regardless of the policy's choice.
fn keeps_hub(policy: Option<ReprovisionPolicy>, api_version: &str) -> bool {
    match policy {
        None => is_legacy_api(api_version),
        Some(policy) => !policy.update_hub_assignment,
    }
}

/// Step 1: run the policy, or keep the current hub?
pub fn plan_before_allocation(
    previous: Option<&RegistrationRecord>,
    policy: Option<ReprovisionPolicy>,
    api_version: &str,
) -> Decision {
    match previous_hub(previous) {
        Some(hub) if keeps_hub(policy, api_version) => Decision::KeepHub(hub.to_owned()),
        _ => Decision::Allocate,
    }
}

/// Step 2: given the hub the allocation produced (under
/// [`Decision::KeepHub`], the kept hub), what happens on the hubs. The
/// target is the previous hub whenever step 1 said to keep it, whatever
/// `allocated_hub` is.
pub fn plan_after_allocation(
    previous: Option<&RegistrationRecord>,
    policy: Option<ReprovisionPolicy>,
    api_version: &str,
    allocated_hub: &str,
) -> ReprovisionPlan {
    let Some(old_hub) = previous_hub(previous) else {
        return ReprovisionPlan {
            target_hub: allocated_hub.to_owned(),
            twin: TwinAction::ApplyInitial,
            delete_from: None,
            substatus: RegistrationSubstatus::InitialAssignment,
        };
    };
    let same_hub_substatus = if knows_reprovisioned_substatus(api_version) {
        RegistrationSubstatus::ReprovisionedToInitialAssignment
    } else {
        RegistrationSubstatus::InitialAssignment
    };
    if keeps_hub(policy, api_version) {
        return ReprovisionPlan {
            target_hub: old_hub.to_owned(),
            twin: TwinAction::KeepExisting,
            delete_from: None,
            substatus: same_hub_substatus,
        };
    }
    let migrate = policy.unwrap_or_default().migrate_device_data;
    if allocated_hub.eq_ignore_ascii_case(old_hub) {
        return ReprovisionPlan {
            target_hub: old_hub.to_owned(),
            twin: if migrate {
                TwinAction::KeepExisting
            } else {
                TwinAction::ResetToInitial
            },
            delete_from: None,
            substatus: same_hub_substatus,
        };
    }
    ReprovisionPlan {
        target_hub: allocated_hub.to_owned(),
        twin: if migrate {
            TwinAction::MigrateFrom(old_hub.to_owned())
        } else {
            TwinAction::ApplyInitial
        },
        delete_from: Some(old_hub.to_owned()),
        substatus: if migrate {
            RegistrationSubstatus::DeviceDataMigrated
        } else {
            RegistrationSubstatus::DeviceDataReset
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_dates() {
        assert_eq!(api_date("2019-03-31"), Some((2019, 3, 31)));
        assert_eq!(api_date("2018-09-01-preview"), Some((2018, 9, 1)));
        assert_eq!(api_date("junk"), None);
        assert!(is_legacy_api("2018-04-01"));
        assert!(is_legacy_api("2017-11-15"));
        assert!(!is_legacy_api("2018-09-01-preview"));
        assert!(!is_legacy_api("nonsense"));
        assert!(!knows_reprovisioned_substatus("2019-03-31"));
        assert!(knows_reprovisioned_substatus("2019-04-15"));
        assert!(knows_reprovisioned_substatus("2021-06-01"));
        assert!(knows_reprovisioned_substatus("nonsense"));
    }
}
