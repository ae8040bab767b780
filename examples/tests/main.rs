//! Every example run end to end, and each example's part through the
//! public conformance battery of its kind: `ByRegion` through
//! `policy_battery!`, `AuditedStore` through `store_battery!`, `Inventory`
//! through `hub_battery!`.

// The examples' files, as modules (their `main` is not called here).
#[allow(dead_code)]
#[path = "../custom_hub.rs"]
pub mod custom_hub;
#[allow(dead_code)]
#[path = "../custom_policy.rs"]
pub mod custom_policy;
#[allow(dead_code)]
#[path = "../custom_store.rs"]
pub mod custom_store;
#[allow(dead_code)]
#[path = "../in_process.rs"]
pub mod in_process;

use dps_service::embedded::EMULATED_HUB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_provisions_a_device_and_reads_its_registration() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = in_process::run(dir.path()).await.unwrap();
    assert_eq!(outcome.device_id, "thermostat-1");
    assert_eq!(outcome.assigned_hub, EMULATED_HUB);
    assert_eq!(outcome.record["registrationId"], "thermostat-1");
    assert_eq!(outcome.record["assignedHub"], EMULATED_HUB);
    assert_eq!(outcome.record["status"], "assigned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_policy_sends_each_device_to_its_region() {
    let dir = tempfile::tempdir().unwrap();
    let assigned = custom_policy::run(dir.path()).await.unwrap();
    let expected = [
        ("meter-eu-1", "hub-eu.localhost"),
        ("meter-us-1", "hub-us.localhost"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(device, hub)| (device.to_string(), hub.to_string()))
        .collect();
    assert_eq!(assigned, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_store_audits_every_write_of_a_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let trail = custom_store::run(dir.path()).await.unwrap();
    for write in [
        "create_tenant: ok",
        "put_enrollment: ok",
        "commit_registration: ok",
    ] {
        assert!(
            trail.iter().any(|entry| entry == write),
            "{write} missing from {trail:?}"
        );
    }
    assert!(
        trail
            .iter()
            .all(|entry| !entry.starts_with("tenant") && !entry.starts_with("enrollment:")),
        "reads are not audited: {trail:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_hub_records_the_identity_in_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let device = custom_hub::run(dir.path()).await.unwrap();
    assert_eq!(device.device_id, "sensor-7");
    let keys = device
        .authentication
        .and_then(|a| a.symmetric_key)
        .expect("SAS keys");
    assert!(keys.primary_key.is_some_and(|k| !k.is_empty()));
}

/// `ByRegion` keeps the contract of every allocation policy.
mod custom_policy_battery {
    use std::sync::Arc;

    use dps_allocation::conformance::TestPolicy;

    async fn fresh() -> TestPolicy {
        TestPolicy::new(Arc::new(crate::custom_policy::ByRegion))
    }

    dps_allocation::policy_battery!(fresh);
}

/// `AuditedStore` (over the memory store) keeps the contract of every store.
mod custom_store_battery {
    use std::sync::Arc;

    use dps_storage::conformance::TestStore;
    use dps_storage::MemoryStore;

    use crate::custom_store::{AuditedStore, Auditor};

    async fn fresh() -> TestStore {
        let store = AuditedStore::new(MemoryStore::new(), Auditor::default());
        TestStore::new(Arc::new(store), ())
    }

    dps_storage::store_battery!(fresh);
}

/// The inventory-backed hub keeps the contract of every hub.
mod custom_hub_battery {
    use std::sync::Arc;

    use dps_hub::conformance::TestHub;

    async fn fresh() -> TestHub {
        TestHub::new(Arc::new(crate::custom_hub::inventory_hub(
            "inventory.localhost",
        )))
    }

    dps_hub::hub_battery!(fresh);
}
