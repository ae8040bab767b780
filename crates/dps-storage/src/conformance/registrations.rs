//! Registration records, device operations and their atomic commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use dps_model::{
    ETag, EnrollmentGroupId, IdScope, OperationKind, OperationRecord, Precondition,
    RegistrationStatus,
};

use super::assert_err;
use super::fixtures::{reg, registration, scope_of, tenant};
use crate::{Entity, PageRequest, Store, StoreError};

fn bill(scope: &IdScope, kind: OperationKind, id: &str) -> Option<OperationRecord> {
    Some(OperationRecord::now(scope, kind, Some(id.to_owned())))
}

/// Billing rows of the tenant over the last and next day, by subject.
pub(super) async fn rows_by_subject(
    store: &Arc<dyn Store>,
    scope: &IdScope,
) -> BTreeMap<String, Vec<OperationKind>> {
    let now = Utc::now();
    let mut by_subject: BTreeMap<String, Vec<OperationKind>> = BTreeMap::new();
    for row in store
        .operations(
            scope,
            now - Duration::days(1),
            now + Duration::days(1),
            1_000_000,
        )
        .await
        .unwrap()
    {
        by_subject
            .entry(row.subject.clone().unwrap_or_default())
            .or_default()
            .push(row.kind);
    }
    by_subject
}

/// Commit, read back (any case), poll the operation, re-register.
pub async fn commit_and_read_registrations(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let now = Utc::now();
    let (record, op) = registration("Device-A", None, "5.op-1", now);
    store
        .commit_registration(
            &scope,
            record.clone(),
            op.clone(),
            bill(&scope, OperationKind::Registration, "Device-A"),
        )
        .await
        .unwrap();
    let found = store
        .registration(&scope, &reg("device-a"))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(found, record, "stored exactly as given");
    assert_eq!(found.registration_id.as_str(), "Device-A");
    assert_eq!(
        store
            .registration_operation(&scope, "5.op-1")
            .await
            .unwrap(),
        Some(op.clone())
    );
    assert_eq!(
        store
            .registration_operation(&scope, "5.op-unknown")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.count_registrations(&scope).await.unwrap(), 1);

    // Re-registration replaces the record and adds an operation; both operations stay.
    let (mut again, op2) = registration("DEVICE-A", None, "5.op-2", now + Duration::seconds(5));
    again.created = record.created;
    again.status = RegistrationStatus::Assigned;
    again.assigned_hub = Some("hub-b.example".to_owned());
    store
        .commit_registration(
            &scope,
            again.clone(),
            op2.clone(),
            bill(&scope, OperationKind::ReRegistration, "DEVICE-A"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.registration(&scope, &reg("device-a")).await.unwrap(),
        Some(again)
    );
    assert_eq!(
        store
            .registration_operation(&scope, "5.op-1")
            .await
            .unwrap(),
        Some(op)
    );
    assert_eq!(
        store
            .registration_operation(&scope, "5.op-2")
            .await
            .unwrap(),
        Some(op2)
    );
    assert_eq!(store.count_registrations(&scope).await.unwrap(), 1);

    // A failed registration is stored without a billing row.
    let (mut failed, op3) = registration("dev-b", None, "5.op-3", now);
    failed.status = RegistrationStatus::Failed;
    failed.error_code = Some(400_209);
    store
        .commit_registration(&scope, failed, op3, None)
        .await
        .unwrap();
    assert_eq!(store.count_registrations(&scope).await.unwrap(), 2);

    let rows = rows_by_subject(&store, &scope).await;
    assert_eq!(
        rows.get("Device-A").map(Vec::as_slice),
        Some(&[OperationKind::Registration][..])
    );
    assert_eq!(
        rows.get("DEVICE-A").map(Vec::as_slice),
        Some(&[OperationKind::ReRegistration][..])
    );
    assert_eq!(rows.get("dev-b"), None);
}

/// A commit that fails stores nothing: no record, no operation, no billing row.
pub async fn commit_is_all_or_nothing(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let now = Utc::now();
    let (record, op) = registration("dev-1", None, "5.shared-op", now);
    store
        .commit_registration(
            &scope,
            record,
            op,
            bill(&scope, OperationKind::Registration, "dev-1"),
        )
        .await
        .unwrap();

    // Duplicate operation id: refused after nothing else was kept.
    let (record, op) = registration("dev-2", None, "5.shared-op", now);
    assert_err!(
        store
            .commit_registration(&scope, record, op, bill(&scope, OperationKind::Registration, "dev-2"))
            .await,
        StoreError::AlreadyExists { entity: Entity::RegistrationOperation, ref id } if id == "5.shared-op"
    );
    assert_eq!(
        store.registration(&scope, &reg("dev-2")).await.unwrap(),
        None
    );
    assert!(!rows_by_subject(&store, &scope).await.contains_key("dev-2"));
    let kept = store
        .registration_operation(&scope, "5.shared-op")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.registration_id.as_str(),
        "dev-1",
        "the first operation is untouched"
    );

    // Duplicate operation id on a re-registration: the old record stays as it was.
    let before = store
        .registration(&scope, &reg("dev-1"))
        .await
        .unwrap()
        .unwrap();
    let (mut moved, op) = registration("dev-1", None, "5.shared-op", now);
    moved.assigned_hub = Some("hub-moved.example".to_owned());
    assert_err!(
        store
            .commit_registration(
                &scope,
                moved,
                op,
                bill(&scope, OperationKind::ReRegistration, "dev-1"),
            )
            .await,
        StoreError::AlreadyExists {
            entity: Entity::RegistrationOperation,
            ..
        }
    );
    assert_eq!(
        store.registration(&scope, &reg("dev-1")).await.unwrap(),
        Some(before)
    );
    assert_eq!(
        rows_by_subject(&store, &scope)
            .await
            .get("dev-1")
            .map(Vec::as_slice),
        Some(&[OperationKind::Registration][..]),
        "no billing row for the refused commit"
    );

    // Unknown tenant.
    let nowhere = IdScope::new("0ne0000NONE").unwrap();
    let (record, op) = registration("dev-3", None, "5.op-3", now);
    assert_err!(
        store
            .commit_registration(&nowhere, record, op, bill(&nowhere, OperationKind::Registration, "dev-3"))
            .await,
        StoreError::UnknownTenant { ref id_scope } if *id_scope == nowhere
    );
    assert_eq!(
        store.registration(&nowhere, &reg("dev-3")).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .registration_operation(&nowhere, "5.op-3")
            .await
            .unwrap(),
        None
    );

    // A billing row of another tenant.
    let (record, op) = registration("dev-4", None, "5.op-4", now);
    assert_err!(
        store
            .commit_registration(
                &scope,
                record,
                op,
                bill(&nowhere, OperationKind::Registration, "dev-4")
            )
            .await,
        StoreError::ScopeMismatch { .. }
    );
    assert_eq!(
        store.registration(&scope, &reg("dev-4")).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .registration_operation(&scope, "5.op-4")
            .await
            .unwrap(),
        None
    );

    // Concurrent commits, every tenth one refused: group commit (when the
    // backend batches) must roll back the refused ones alone.
    let refused = |i: usize| i % 10 == 7;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let (store, scope) = (Arc::clone(&store), scope.clone());
        tasks.spawn(async move {
            let op_id = if refused(i) {
                "5.shared-op".to_owned()
            } else {
                format!("5.batch-{i}")
            };
            let id = format!("batch-{i}");
            let (record, op) = registration(&id, None, &op_id, now);
            let row = bill(&scope, OperationKind::Registration, &id);
            (i, store.commit_registration(&scope, record, op, row).await)
        });
    }
    join_refusing(tasks, refused).await;
    let rows = rows_by_subject(&store, &scope).await;
    for i in 0..300 {
        let id = format!("batch-{i}");
        let stored = store.registration(&scope, &reg(&id)).await.unwrap();
        assert_eq!(stored.is_some(), !refused(i), "{id}");
        assert_eq!(rows.contains_key(&id), !refused(i), "{id}");
    }
    assert_eq!(store.count_registrations(&scope).await.unwrap(), 1 + 270);
}

/// Wait for every numbered commit: the `refused` ones failed with
/// `AlreadyExists` (a taken operation id), the others succeeded.
pub(super) async fn join_refusing(
    mut tasks: tokio::task::JoinSet<(usize, Result<(), StoreError>)>,
    refused: impl Fn(usize) -> bool,
) {
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.expect("task ran");
        if refused(i) {
            assert_err!(result, StoreError::AlreadyExists { .. });
        } else {
            result.unwrap();
        }
    }
}

/// 1,000 concurrent commits: all stored, each with exactly one billing row.
pub async fn concurrent_commits_all_stored(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let now = Utc::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (store, scope) = (Arc::clone(&store), scope.clone());
        tasks.spawn(async move {
            let id = format!("swarm-{i:04}");
            let (record, op) = registration(&id, Some("swarm"), &format!("5.swarm-{i}"), now);
            store
                .commit_registration(
                    &scope,
                    record,
                    op,
                    bill(&scope, OperationKind::Registration, &id),
                )
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task ran").unwrap();
    }
    assert_eq!(store.count_registrations(&scope).await.unwrap(), 1000);
    let rows = rows_by_subject(&store, &scope).await;
    assert_eq!(rows.len(), 1000);
    for i in 0..1000 {
        let id = format!("swarm-{i:04}");
        assert!(
            store
                .registration(&scope, &reg(&id))
                .await
                .unwrap()
                .is_some(),
            "{id}"
        );
        assert!(store
            .registration_operation(&scope, &format!("5.swarm-{i}"))
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            rows.get(&id).map(Vec::as_slice),
            Some(&[OperationKind::Registration][..]),
            "{id}"
        );
    }
}

/// Deleting a record honours `If-Match` and bills `registrationStateDelete`.
pub async fn delete_registration_with_billing(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let (record, op) = registration("dev-1", None, "5.op-1", Utc::now());
    store
        .commit_registration(&scope, record.clone(), op, None)
        .await
        .unwrap();
    assert_err!(
        store.delete_registration(&scope, &reg("DEV-1"), Precondition::Matches(ETag::new("stale"))).await,
        StoreError::PreconditionFailed { entity: Entity::Registration, ref actual, .. } if *actual == record.etag
    );
    store
        .delete_registration(
            &scope,
            &reg("DEV-1"),
            Precondition::Matches(record.etag.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        store.registration(&scope, &reg("dev-1")).await.unwrap(),
        None
    );
    assert_err!(
        store
            .delete_registration(&scope, &reg("dev-1"), Precondition::None)
            .await,
        StoreError::NotFound {
            entity: Entity::Registration,
            ..
        }
    );
    let rows = rows_by_subject(&store, &scope).await;
    assert_eq!(
        rows.get("DEV-1").map(Vec::as_slice),
        Some(&[OperationKind::RegistrationStateDelete][..])
    );
    assert_eq!(rows.len(), 1, "the refused deletes billed nothing");
}

/// Records of one group page in id order; other groups and ungrouped records stay out.
pub async fn list_registrations_by_group(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let now = Utc::now();
    let mut expected = Vec::new();
    for i in 0..60 {
        let id = format!("dev-{i:02}");
        let group = match i % 3 {
            0 => Some("Group-A"),
            1 => Some("group-b"),
            _ => None,
        };
        if i % 3 == 0 {
            expected.push(id.clone());
        }
        let (record, op) = registration(&id, group, &format!("5.op-{i}"), now);
        store
            .commit_registration(&scope, record, op, None)
            .await
            .unwrap();
    }
    let group = EnrollmentGroupId::new("GROUP-a").unwrap();
    let mut seen = Vec::new();
    let mut request = PageRequest::first(6);
    loop {
        let page = store
            .list_registrations_by_group(&scope, &group, &request)
            .await
            .unwrap();
        for r in &page.items {
            assert_eq!(
                r.enrollment_group_id.as_ref().map(|g| g.as_str()),
                Some("Group-A")
            );
        }
        seen.extend(
            page.items
                .into_iter()
                .map(|r| r.registration_id.as_str().to_owned()),
        );
        match page.continuation {
            Some(token) => request = PageRequest::after(token, 6),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let none = EnrollmentGroupId::new("group-z").unwrap();
    let page = store
        .list_registrations_by_group(&scope, &none, &PageRequest::first(6))
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.continuation.is_none());

    // A device that re-registers without its group leaves the group's listing.
    let (record, op) = registration("dev-00", None, "5.op-moved", now);
    store
        .commit_registration(&scope, record, op, None)
        .await
        .unwrap();
    let page = store
        .list_registrations_by_group(&scope, &group, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(page.items.len(), expected.len() - 1);
}

/// Operations older than the cutoff are purged (in every tenant); records stay.
pub async fn purge_old_operations(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let other = store
        .create_tenant(tenant("other", "0ne00000E0E"))
        .await
        .unwrap()
        .id_scope;
    let now = Utc::now();
    for (i, age_hours) in [48, 30, 25, 23, 1].into_iter().enumerate() {
        for s in [&scope, &other] {
            let (record, op) = registration(
                &format!("dev-{i}"),
                None,
                &format!("5.op-{i}"),
                now - Duration::hours(age_hours),
            );
            store
                .commit_registration(s, record, op, None)
                .await
                .unwrap();
        }
    }
    let purged = store
        .purge_registration_operations(now - Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(purged, 6);
    for s in [&scope, &other] {
        for i in 0..5 {
            let op = store
                .registration_operation(s, &format!("5.op-{i}"))
                .await
                .unwrap();
            assert_eq!(op.is_some(), i >= 3, "op-{i}");
            assert!(store
                .registration(s, &reg(&format!("dev-{i}")))
                .await
                .unwrap()
                .is_some());
        }
    }
    assert_eq!(
        store
            .purge_registration_operations(now - Duration::hours(24))
            .await
            .unwrap(),
        0
    );
}
