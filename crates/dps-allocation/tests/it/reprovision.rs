//! The reprovision planner (spec §6.4): the table, and invariants.

use dps_allocation::{
    plan_after_allocation, plan_before_allocation, Decision, ReprovisionPlan, TwinAction,
};
use dps_model::{RegistrationRecord, RegistrationStatus, RegistrationSubstatus, ReprovisionPolicy};
use proptest::prelude::*;
use serde_json::json;

use RegistrationSubstatus::*;

const CURRENT_API: &str = "2021-06-01";
const LEGACY_API: &str = "2018-04-01";
const PRE_SUBSTATUS_API: &str = "2019-03-31";

fn record(hub: Option<&str>, status: RegistrationStatus) -> RegistrationRecord {
    serde_json::from_value(json!({
        "registrationId": "dev-1",
        "attestationType": "symmetricKey",
        "created": "2024-01-01T00:00:00Z",
        "lastUpdated": "2024-01-01T00:00:00Z",
        "assignedHub": hub,
        "deviceId": "dev-1",
        "status": status,
        "etag": "e1"
    }))
    .expect("record")
}

fn on(hub: &str) -> RegistrationRecord {
    record(Some(hub), RegistrationStatus::Assigned)
}

fn policy(update: bool, migrate: bool) -> Option<ReprovisionPolicy> {
    Some(ReprovisionPolicy {
        update_hub_assignment: update,
        migrate_device_data: migrate,
    })
}

fn plan(
    previous: Option<&RegistrationRecord>,
    policy: Option<ReprovisionPolicy>,
    api: &str,
    allocated: &str,
) -> ReprovisionPlan {
    plan_after_allocation(previous, policy, api, allocated)
}

fn expect(
    target: &str,
    twin: TwinAction,
    delete_from: Option<&str>,
    substatus: RegistrationSubstatus,
) -> ReprovisionPlan {
    ReprovisionPlan {
        target_hub: target.to_owned(),
        twin,
        delete_from: delete_from.map(str::to_owned),
        substatus,
    }
}

#[test]
fn first_registration_allocates_and_applies_the_initial_twin() {
    for p in [None, policy(true, true), policy(false, false)] {
        for api in [LEGACY_API, CURRENT_API] {
            assert_eq!(plan_before_allocation(None, p, api), Decision::Allocate);
            assert_eq!(
                plan(None, p, api, "b"),
                expect("b", TwinAction::ApplyInitial, None, InitialAssignment)
            );
        }
    }
    // A record without a hub (e.g. a failed first attempt) is no assignment.
    let failed = record(None, RegistrationStatus::Failed);
    assert_eq!(
        plan_before_allocation(Some(&failed), None, CURRENT_API),
        Decision::Allocate
    );
    assert_eq!(
        plan(Some(&failed), None, CURRENT_API, "b").substatus,
        InitialAssignment
    );
}

#[test]
fn migrate_moves_the_twin_and_deletes_from_the_old_hub() {
    let prev = on("a");
    assert_eq!(
        plan_before_allocation(Some(&prev), policy(true, true), CURRENT_API),
        Decision::Allocate
    );
    assert_eq!(
        plan(Some(&prev), policy(true, true), CURRENT_API, "b"),
        expect(
            "b",
            TwinAction::MigrateFrom("a".into()),
            Some("a"),
            DeviceDataMigrated
        )
    );
}

#[test]
fn reset_creates_from_the_initial_twin_and_deletes_from_the_old_hub() {
    let prev = on("a");
    assert_eq!(
        plan(Some(&prev), policy(true, false), CURRENT_API, "b"),
        expect("b", TwinAction::ApplyInitial, Some("a"), DeviceDataReset)
    );
}

#[test]
fn same_hub_keeps_or_factory_resets_the_twin() {
    let prev = on("hub-a");
    assert_eq!(
        plan(Some(&prev), policy(true, true), CURRENT_API, "HUB-A"),
        expect(
            "hub-a",
            TwinAction::KeepExisting,
            None,
            ReprovisionedToInitialAssignment
        )
    );
    assert_eq!(
        plan(Some(&prev), policy(true, false), CURRENT_API, "hub-a"),
        expect(
            "hub-a",
            TwinAction::ResetToInitial,
            None,
            ReprovisionedToInitialAssignment
        )
    );
    // Devices before 2019-04-15 don't know the newer substatus.
    assert_eq!(
        plan(Some(&prev), policy(true, true), PRE_SUBSTATUS_API, "hub-a").substatus,
        InitialAssignment
    );
    assert_eq!(
        plan(Some(&prev), policy(true, true), "2019-04-15", "hub-a").substatus,
        ReprovisionedToInitialAssignment
    );
}

#[test]
fn never_reprovision_keeps_the_hub() {
    let prev = on("a");
    for migrate in [true, false] {
        assert_eq!(
            plan_before_allocation(Some(&prev), policy(false, migrate), CURRENT_API),
            Decision::KeepHub("a".into())
        );
        assert_eq!(
            plan(Some(&prev), policy(false, migrate), CURRENT_API, "a"),
            expect(
                "a",
                TwinAction::KeepExisting,
                None,
                ReprovisionedToInitialAssignment
            )
        );
    }
}

#[test]
fn legacy_devices_without_a_policy_stick_to_their_hub() {
    let prev = on("a");
    for api in [LEGACY_API, "2017-11-15"] {
        assert_eq!(
            plan_before_allocation(Some(&prev), None, api),
            Decision::KeepHub("a".into())
        );
        assert_eq!(
            plan(Some(&prev), None, api, "b"),
            expect("a", TwinAction::KeepExisting, None, InitialAssignment)
        );
    }
    // With a policy, or a newer device, the policy (default: migrate) applies.
    assert_eq!(
        plan_before_allocation(Some(&prev), policy(true, true), LEGACY_API),
        Decision::Allocate
    );
    assert_eq!(
        plan_before_allocation(Some(&prev), None, "2018-09-01-preview"),
        Decision::Allocate
    );
    assert_eq!(
        plan(Some(&prev), None, CURRENT_API, "b"),
        expect(
            "b",
            TwinAction::MigrateFrom("a".into()),
            Some("a"),
            DeviceDataMigrated
        )
    );
}

#[test]
fn a_failed_record_that_names_a_hub_still_counts() {
    let prev = record(Some("a"), RegistrationStatus::Failed);
    assert_eq!(
        plan(Some(&prev), policy(true, true), CURRENT_API, "b"),
        expect(
            "b",
            TwinAction::MigrateFrom("a".into()),
            Some("a"),
            DeviceDataMigrated
        )
    );
}

fn any_policy() -> impl Strategy<Value = Option<ReprovisionPolicy>> {
    prop::option::of(
        (any::<bool>(), any::<bool>()).prop_map(|(u, m)| ReprovisionPolicy {
            update_hub_assignment: u,
            migrate_device_data: m,
        }),
    )
}

fn any_api() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "2017-11-15",
        "2018-04-01",
        "2018-09-01-preview",
        "2018-11-01",
        "2019-03-31",
        "2019-04-15",
        "2021-06-01",
        "2025-07-01-preview",
        "garbage",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    /// Invariants of every plan.
    #[test]
    fn planner_invariants(
        previous_hub in prop::option::of("[a-c]"),
        policy in any_policy(),
        api in any_api(),
        allocated in "[a-c]",
    ) {
        let previous = previous_hub.as_deref().map(on);
        let decision = plan_before_allocation(previous.as_ref(), policy, &api);
        // The caller passes the kept hub when told to keep it.
        let allocated = match &decision {
            Decision::KeepHub(hub) => hub.clone(),
            Decision::Allocate => allocated,
        };
        let plan = plan_after_allocation(previous.as_ref(), policy, &api, &allocated);

        match &previous_hub {
            None => {
                prop_assert_eq!(&decision, &Decision::Allocate);
                prop_assert_eq!(&plan.target_hub, &allocated);
                prop_assert_eq!(&plan.twin, &TwinAction::ApplyInitial);
                prop_assert_eq!(plan.substatus, InitialAssignment);
            }
            Some(old) => {
                // updateHubAssignment=false → never move.
                if policy.is_some_and(|p| !p.update_hub_assignment) {
                    prop_assert_eq!(&decision, &Decision::KeepHub(old.clone()));
                    prop_assert_eq!(&plan.target_hub, old);
                }
                let moved = !plan.target_hub.eq_ignore_ascii_case(old);
                // Delete from the old hub exactly when the device moved.
                prop_assert_eq!(plan.delete_from.is_some(), moved);
                if let Some(from) = &plan.delete_from {
                    prop_assert_eq!(from, old);
                }
                // Moved substatuses only for moves; a move never keeps the twin in place.
                prop_assert_eq!(
                    moved,
                    matches!(plan.substatus, DeviceDataMigrated | DeviceDataReset)
                );
                if moved {
                    prop_assert!(!matches!(plan.twin, TwinAction::KeepExisting | TwinAction::ResetToInitial));
                } else {
                    prop_assert!(matches!(plan.twin, TwinAction::KeepExisting | TwinAction::ResetToInitial));
                }
            }
        }
        // The newer substatus only for devices that know it.
        if plan.substatus == ReprovisionedToInitialAssignment {
            prop_assert!(api.as_str() >= "2019-04-15");
        }
    }
}
