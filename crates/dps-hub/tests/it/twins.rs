//! Twins: initial twin, reset, keep, patch with etags, migration between hubs.

use dps_hub::wire::Twin;
use dps_hub::{
    ensure_device, migrate_device, DeviceProvisioning, HubError, IfMatch, IotHub, MigrationMode,
    TwinAction,
};
use serde_json::json;

use crate::support::{id, initial_twin, sas_request, Fixture, HUB_A, HUB_B};

fn twin_json(twin: &Twin) -> (serde_json::Value, serde_json::Value) {
    let content = twin.content();
    (json!(content.tags), json!(content.desired))
}

#[tokio::test]
async fn initial_twin_is_applied_reset_and_kept() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    let initial = initial_twin(json!({
        "tags": {"site": "north", "floor": {"n": 2}},
        "properties": {"desired": {"interval": 30, "nested": {"a": "b"}}}
    }));
    let done = ensure_device(&hub, &sas_request("t-1", Some(initial.clone())))
        .await
        .unwrap();
    assert!(done.created);
    let written = done.twin.expect("the initial twin was written");
    assert_eq!(
        twin_json(&written),
        (
            json!({"site": "north", "floor": {"n": 2}}),
            json!({"interval": 30, "nested": {"a": "b"}})
        )
    );
    let stored = fx.sim.twin(HUB_A, "t-1").unwrap();
    assert_eq!(twin_json(&stored), twin_json(&written));
    assert!(stored.desired().unwrap().contains_key("$metadata"));
    assert_eq!(stored.desired_version(), Some(2));

    // The operator changes the twin on the hub…
    let patch: Twin = serde_json::from_value(json!({
        "tags": {"site": null, "owner": "ops"},
        "properties": {"desired": {"interval": 60}}
    }))
    .unwrap();
    let patched = hub
        .patch_twin(&id("t-1"), &patch, IfMatch::Any)
        .await
        .unwrap();
    assert_eq!(
        twin_json(&patched),
        (
            json!({"floor": {"n": 2}, "owner": "ops"}),
            json!({"interval": 60, "nested": {"a": "b"}})
        )
    );

    // …a re-registration that keeps the twin leaves that alone…
    let keep = DeviceProvisioning {
        twin_action: TwinAction::Keep,
        ..sas_request("t-1", Some(initial.clone()))
    };
    let kept = ensure_device(&hub, &keep).await.unwrap();
    assert!(!kept.created && kept.twin.is_none());
    assert_eq!(
        twin_json(&fx.sim.twin(HUB_A, "t-1").unwrap()),
        twin_json(&patched)
    );

    // …and a reset puts the initial twin back, dropping what was added.
    let reset = ensure_device(&hub, &sas_request("t-1", Some(initial)))
        .await
        .unwrap();
    assert_eq!(twin_json(&reset.twin.unwrap()), twin_json(&written));
}

#[tokio::test]
async fn twin_etags_guard_writes_and_versions_grow() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    ensure_device(&hub, &sas_request("t-2", None))
        .await
        .unwrap();
    let twin = hub.get_twin(&id("t-2")).await.unwrap();
    let etag = twin.etag.clone().unwrap();
    let patch: Twin = serde_json::from_value(json!({"properties": {"desired": {"x": 1}}})).unwrap();
    let first = hub
        .patch_twin(&id("t-2"), &patch, IfMatch::Etag(etag.clone()))
        .await
        .unwrap();
    assert_eq!(first.version, twin.version.map(|v| v + 1));
    match hub
        .patch_twin(&id("t-2"), &patch, IfMatch::Etag(etag))
        .await
    {
        Err(HubError::PreconditionFailed {
            status: 412,
            device_id,
            ..
        }) => {
            assert_eq!(device_id, "t-2")
        }
        other => panic!("expected 412, got {other:?}"),
    }
    let replaced = hub
        .replace_twin(
            &id("t-2"),
            &patch,
            IfMatch::Etag(first.etag.clone().unwrap()),
        )
        .await
        .unwrap();
    assert!(replaced.version > first.version);
    assert!(matches!(
        hub.get_twin(&id("missing")).await,
        Err(HubError::DeviceNotFound { status: 404, .. })
    ));
}

#[tokio::test]
async fn migrate_copies_the_twin_and_removes_the_old_identity() {
    let fx = Fixture::start().await;
    let (a, b) = (fx.client(HUB_A), fx.client(HUB_B));
    let initial = initial_twin(json!({"tags": {"v": "initial"}}));
    ensure_device(&a, &sas_request("m-1", Some(initial.clone())))
        .await
        .unwrap();
    let changed: Twin = serde_json::from_value(json!({
        "tags": {"v": "changed"},
        "properties": {"desired": {"fw": "2.0"}}
    }))
    .unwrap();
    a.patch_twin(&id("m-1"), &changed, IfMatch::Any)
        .await
        .unwrap();

    let moved = migrate_device(
        &a,
        &b,
        &sas_request("m-1", Some(initial.clone())),
        MigrationMode::CopyTwin,
    )
    .await
    .unwrap();
    assert!(moved.data_migrated && moved.removed_from_source);
    assert!(moved.provisioned.created);
    assert_eq!(fx.sim.device(HUB_A, "m-1"), None);
    assert_eq!(
        twin_json(&fx.sim.twin(HUB_B, "m-1").unwrap()),
        (json!({"v": "changed"}), json!({"fw": "2.0"}))
    );

    // Moving back with a reset starts from the initial twin.
    let back = migrate_device(
        &b,
        &a,
        &sas_request("m-1", Some(initial.clone())),
        MigrationMode::ResetToInitial,
    )
    .await
    .unwrap();
    assert!(!back.data_migrated && back.removed_from_source);
    assert_eq!(fx.sim.device(HUB_B, "m-1"), None);
    assert_eq!(
        twin_json(&fx.sim.twin(HUB_A, "m-1").unwrap()),
        (json!({"v": "initial"}), json!({}))
    );

    // A device the old hub no longer has falls back to the initial twin.
    let orphan = migrate_device(
        &b,
        &a,
        &sas_request("m-2", Some(initial)),
        MigrationMode::CopyTwin,
    )
    .await
    .unwrap();
    assert!(!orphan.data_migrated && !orphan.removed_from_source);
    assert_eq!(
        twin_json(&fx.sim.twin(HUB_A, "m-2").unwrap()).0,
        json!({"v": "initial"})
    );
}

#[tokio::test]
async fn migration_from_a_dead_hub_fails_without_touching_the_new_one() {
    let fx = Fixture::start().await;
    let (a, b) = (
        fx.client_with(
            HUB_A,
            &fx.options
                .clone()
                .retry_deadline(std::time::Duration::from_millis(300)),
        ),
        fx.client(HUB_B),
    );
    ensure_device(&a, &sas_request("m-3", None)).await.unwrap();
    fx.sim.set_fault(HUB_A, dps_hub_sim::Fault::Status(503));
    let err = migrate_device(&a, &b, &sas_request("m-3", None), MigrationMode::CopyTwin)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HubError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(fx.sim.device(HUB_B, "m-3"), None);
    assert!(fx.sim.device(HUB_A, "m-3").is_some());
}
