//! The checks of the hub battery, one public function per rule.

use serde_json::json;

use super::devices::{id, initial_twin, key, primary_key, sas_device, sas_provisioning};
use super::{assert_err, assert_names_hub, TestHub};
use crate::wire::{AuthenticationType, DeviceStatus, Twin};
use crate::{
    ensure_device, remove_device, DeviceAuth, DeviceProvisioning, HubError, IfMatch, TwinAction,
    TwinContent,
};

fn etag_of(etag: &Option<String>, what: &str) -> String {
    etag.clone()
        .unwrap_or_else(|| panic!("{what} must carry an etag"))
}

/// A create returns the identity as stored (id, etag, enabled, the keys
/// given); a read returns the same; the twin of a new identity is empty.
pub async fn create_then_read_identity_and_twin(fixture: &TestHub) {
    let hub = &*fixture.hub;
    let created = hub
        .put_device(&sas_device("battery-1", 1), IfMatch::None)
        .await
        .expect("create");
    assert_eq!(created.device_id, "battery-1");
    let etag = etag_of(&created.etag, "a created identity");
    assert_eq!(created.status_or_default(), DeviceStatus::Enabled);
    assert_eq!(created.authentication_type(), AuthenticationType::Sas);
    assert_eq!(primary_key(&created), Some(key(1).to_base64().as_str()));

    let read = hub.get_device(&id("battery-1")).await.expect("read");
    assert_eq!(read.device_id, "battery-1");
    assert_eq!(
        read.etag.as_deref(),
        Some(etag.as_str()),
        "a read keeps the etag"
    );
    assert_eq!(primary_key(&read), primary_key(&created));

    let twin = hub.get_twin(&id("battery-1")).await.expect("twin");
    assert_eq!(twin.device_id.as_deref(), Some("battery-1"));
    etag_of(&twin.etag, "a twin");
    assert!(
        twin.content().is_empty(),
        "a new identity's twin is empty: {twin:?}"
    );
}

/// A create on a taken id fails with a conflict naming hub and device,
/// and leaves the stored identity alone.
pub async fn create_on_a_taken_id_is_a_conflict(fixture: &TestHub) {
    let hub = &*fixture.hub;
    let first = hub
        .put_device(&sas_device("battery-taken", 1), IfMatch::None)
        .await
        .expect("create");
    let err = hub
        .put_device(&sas_device("battery-taken", 9), IfMatch::None)
        .await
        .expect_err("a second create must fail");
    assert_names_hub(hub, &err);
    assert_err!(Err::<(), _>(err.clone()), HubError::Conflict { ref device_id, status: 409, .. } if device_id == "battery-taken");
    assert!(!err.is_retryable(), "a conflict is not retryable");
    let stored = hub.get_device(&id("battery-taken")).await.expect("read");
    assert_eq!(
        stored.etag, first.etag,
        "the refused create changed nothing"
    );
    assert_eq!(primary_key(&stored), Some(key(1).to_base64().as_str()));
}

/// `If-Match: *` needs an existing record; an etag must be the current one;
/// every write gives a new etag.
pub async fn writes_need_the_current_etag(fixture: &TestHub) {
    let hub = &*fixture.hub;
    assert_err!(
        hub.put_device(&sas_device("battery-etag", 1), IfMatch::Any)
            .await,
        HubError::DeviceNotFound { .. }
    );
    let created = hub
        .put_device(&sas_device("battery-etag", 1), IfMatch::None)
        .await
        .expect("create");
    let old = etag_of(&created.etag, "a created identity");
    let updated = hub
        .put_device(&sas_device("battery-etag", 3), IfMatch::Etag(old.clone()))
        .await
        .expect("an update with the current etag");
    let new = etag_of(&updated.etag, "an updated identity");
    assert_ne!(new, old, "a write must change the etag");
    assert_eq!(primary_key(&updated), Some(key(3).to_base64().as_str()));
    let err = hub
        .put_device(&sas_device("battery-etag", 5), IfMatch::Etag(old))
        .await
        .expect_err("a stale etag must fail");
    assert_names_hub(hub, &err);
    assert_err!(
        Err::<(), _>(err),
        HubError::PreconditionFailed { status: 412, .. }
    );
    let again = hub
        .put_device(&sas_device("battery-etag", 7), IfMatch::Any)
        .await
        .expect("If-Match * on an existing record");
    assert_ne!(again.etag.as_deref(), Some(new.as_str()));
    let read = hub.get_device(&id("battery-etag")).await.expect("read");
    assert_eq!(primary_key(&read), Some(key(7).to_base64().as_str()));
}

/// Replace sets tags and desired properties; patch merges and `null`
/// deletes; a stale twin etag fails.
pub async fn twin_replace_patch_and_etags(fixture: &TestHub) {
    let hub = &*fixture.hub;
    let device = id("battery-twin");
    hub.put_device(&sas_device("battery-twin", 1), IfMatch::None)
        .await
        .expect("create");
    let content = TwinContent::from_initial(Some(&initial_twin("gold")));
    let replaced = hub
        .replace_twin(&device, &content.to_twin(), IfMatch::Any)
        .await
        .expect("replace");
    assert_eq!(replaced.content(), content);
    let stale = etag_of(&replaced.etag, "a written twin");

    let patch: Twin = serde_json::from_value(json!({
        "tags": { "battery": null, "added": true },
        "properties": { "desired": { "mode": null, "extra": "x" } }
    }))
    .expect("patch JSON");
    let patched = hub
        .patch_twin(&device, &patch, IfMatch::Etag(stale.clone()))
        .await
        .expect("patch with the current etag");
    let expected: Twin = serde_json::from_value(json!({
        "tags": { "added": true },
        "properties": { "desired": { "interval": 30, "extra": "x" } }
    }))
    .expect("JSON");
    assert_eq!(patched.content(), expected.content(), "merge, null deletes");
    assert_ne!(
        patched.etag.as_deref(),
        Some(stale.as_str()),
        "a write changes the twin etag"
    );
    let read = hub.get_twin(&device).await.expect("read");
    assert_eq!(read.content(), expected.content());

    let err = hub
        .replace_twin(&device, &content.to_twin(), IfMatch::Etag(stale))
        .await
        .expect_err("a stale twin etag must fail");
    assert_err!(Err::<(), _>(err), HubError::PreconditionFailed { .. });
    assert_eq!(
        hub.get_twin(&device).await.expect("read").content(),
        expected.content()
    );
}

/// Delete checks the etag, takes the twin, is final, and a re-created
/// identity starts afresh.
pub async fn delete_takes_the_twin_and_is_final(fixture: &TestHub) {
    let hub = &*fixture.hub;
    let device = id("battery-delete");
    let created = ensure_device(
        hub,
        &sas_provisioning("battery-delete", 1, Some(initial_twin("x"))),
    )
    .await
    .expect("provision");
    assert!(created.created);
    assert_err!(
        hub.delete_device(&device, IfMatch::Etag("\"stale\"".to_owned()))
            .await,
        HubError::PreconditionFailed { .. }
    );
    let current = etag_of(&created.device.etag, "a created identity");
    hub.delete_device(&device, IfMatch::Etag(current))
        .await
        .expect("delete with the current etag");
    assert_err!(
        hub.get_device(&device).await,
        HubError::DeviceNotFound { .. }
    );
    assert_err!(hub.get_twin(&device).await, HubError::DeviceNotFound { .. });
    assert_err!(
        hub.delete_device(&device, IfMatch::Any).await,
        HubError::DeviceNotFound { .. }
    );
    assert!(
        !remove_device(hub, &device).await.expect("remove"),
        "already gone"
    );
    let again = ensure_device(hub, &sas_provisioning("battery-delete", 2, None))
        .await
        .expect("re-create");
    assert!(again.created, "a deleted id is free again");
    let twin = hub.get_twin(&device).await.expect("twin");
    assert!(
        twin.content().is_empty(),
        "the old twin did not survive: {twin:?}"
    );
}

/// Every operation on an unknown id is `DeviceNotFound` (404) naming the hub
/// and the device, and is not retryable.
pub async fn missing_devices_are_not_found(fixture: &TestHub) {
    let hub = &*fixture.hub;
    let ghost = id("battery-ghost");
    let twin = Twin::default();
    let errors = [
        hub.get_device(&ghost).await.map(|_| ()),
        hub.get_twin(&ghost).await.map(|_| ()),
        hub.replace_twin(&ghost, &twin, IfMatch::Any)
            .await
            .map(|_| ()),
        hub.patch_twin(&ghost, &twin, IfMatch::Any)
            .await
            .map(|_| ()),
        hub.delete_device(&ghost, IfMatch::Any).await,
    ];
    for result in errors {
        let err = result.expect_err("an unknown device");
        assert_names_hub(hub, &err);
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(err.status(), Some(404), "{err}");
        assert_err!(Err::<(), _>(err), HubError::DeviceNotFound { ref device_id, .. } if device_id == "battery-ghost");
    }
}

/// `Dev-A` and `dev-a` are two devices, as on IoT Hub.
pub async fn device_ids_are_case_sensitive(fixture: &TestHub) {
    let hub = &*fixture.hub;
    hub.put_device(&sas_device("Battery-Case", 1), IfMatch::None)
        .await
        .expect("create");
    assert_err!(
        hub.get_device(&id("battery-case")).await,
        HubError::DeviceNotFound { .. }
    );
    hub.put_device(&sas_device("battery-case", 5), IfMatch::None)
        .await
        .expect("another device");
    let upper = hub.get_device(&id("Battery-Case")).await.expect("read");
    let lower = hub.get_device(&id("battery-case")).await.expect("read");
    assert_eq!(upper.device_id, "Battery-Case");
    assert_eq!(primary_key(&upper), Some(key(1).to_base64().as_str()));
    assert_eq!(primary_key(&lower), Some(key(5).to_base64().as_str()));
}

/// X.509 (thumbprint and CA) identities and IoT Edge capabilities are stored as given.
pub async fn x509_and_edge_identities(fixture: &TestHub) {
    let hub = &*fixture.hub;
    let thumbprint = "AB".repeat(32);
    let mut request = sas_provisioning("battery-x509", 1, None);
    request.auth = DeviceAuth::X509Thumbprint {
        primary: thumbprint.clone(),
        secondary: None,
    };
    request.capabilities.iot_edge = true;
    ensure_device(hub, &request)
        .await
        .expect("thumbprint device");
    let stored = hub.get_device(&id("battery-x509")).await.expect("read");
    assert_eq!(stored.authentication_type(), AuthenticationType::SelfSigned);
    let prints = stored
        .authentication
        .and_then(|a| a.x509_thumbprint)
        .expect("thumbprints stored");
    assert_eq!(
        prints.primary_thumbprint.as_deref(),
        Some(thumbprint.as_str())
    );
    assert_eq!(
        prints.secondary_thumbprint.as_deref(),
        Some(thumbprint.as_str())
    );
    assert!(
        stored.capabilities.is_some_and(|c| c.iot_edge),
        "edge capability kept"
    );

    let ca = DeviceProvisioning {
        auth: DeviceAuth::CertificateAuthority,
        ..sas_provisioning("battery-ca", 1, None)
    };
    ensure_device(hub, &ca).await.expect("CA device");
    let stored = hub.get_device(&id("battery-ca")).await.expect("read");
    assert_eq!(
        stored.authentication_type(),
        AuthenticationType::CertificateAuthority
    );
}

/// [`ensure_device`] run again converges: same identity, `created` only the
/// first time, the twin as asked (applied, kept, or rewritten).
pub async fn ensure_device_converges(fixture: &TestHub) {
    let hub = &*fixture.hub;
    let device = id("battery-ensure");
    let request = sas_provisioning("battery-ensure", 1, Some(initial_twin("first")));
    let expected = TwinContent::from_initial(request.initial_twin.as_ref());
    let first = ensure_device(hub, &request).await.expect("first run");
    assert!(first.created);
    assert_eq!(
        first.twin.as_ref().map(Twin::content),
        Some(expected.clone())
    );
    let second = ensure_device(hub, &request).await.expect("second run");
    assert!(!second.created, "the second run finds the identity");
    assert_eq!(second.device.device_id, "battery-ensure");
    assert_eq!(
        hub.get_twin(&device).await.expect("twin").content(),
        expected
    );

    let keep = DeviceProvisioning {
        initial_twin: Some(initial_twin("ignored")),
        twin_action: TwinAction::Keep,
        ..request.clone()
    };
    let kept = ensure_device(hub, &keep).await.expect("keep run");
    assert!(kept.twin.is_none(), "Keep leaves the twin untouched");
    assert_eq!(
        hub.get_twin(&device).await.expect("twin").content(),
        expected
    );

    let moved = TwinContent::from_initial(Some(&initial_twin("migrated")));
    let write = DeviceProvisioning {
        twin_action: TwinAction::Write(moved.clone()),
        ..request
    };
    ensure_device(hub, &write).await.expect("write run");
    assert_eq!(hub.get_twin(&device).await.expect("twin").content(), moved);
}

/// Eight registrations of one device at once all succeed and exactly one
/// of them created it.
pub async fn concurrent_creates_have_one_winner(fixture: &TestHub) {
    let mut tasks = tokio::task::JoinSet::new();
    for byte in 0..8u8 {
        let hub = fixture.hub.clone();
        tasks.spawn(async move {
            hub.create_or_update_device(&sas_device("battery-race", byte))
                .await
        });
    }
    let mut created = 0;
    while let Some(joined) = tasks.join_next().await {
        let (device, new) = joined.expect("no panic").expect("every writer succeeds");
        assert_eq!(device.device_id, "battery-race");
        created += usize::from(new);
    }
    assert_eq!(created, 1, "exactly one writer created the identity");
}

/// While the hub is down, failures are retryable errors naming the hub;
/// afterwards it serves again. Passes without running when the fixture has
/// no [`super::HubOutage`].
pub async fn outage_errors_are_retryable(fixture: &TestHub) {
    let Some(outage) = fixture.outage() else {
        return;
    };
    let hub = &*fixture.hub;
    let request = sas_provisioning("battery-outage", 1, Some(initial_twin("o")));
    outage.begin();
    let read = hub.get_device(&id("battery-outage")).await;
    let write = ensure_device(hub, &request).await.map(|_| ());
    outage.end();
    for result in [read.map(|_| ()), write] {
        let err = result.expect_err("a dead hub must fail");
        assert!(
            err.is_retryable(),
            "a dead hub's failure must be retryable: {err}"
        );
        assert_names_hub(hub, &err);
    }
    let done = ensure_device(hub, &request).await.expect("the hub is back");
    assert_eq!(done.device.device_id, "battery-outage");
}
