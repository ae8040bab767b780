//! Individual enrollments and groups: etags, case, billing, concurrency, paging.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use dps_model::{ETag, EnrollmentGroupId, IdScope, OperationKind, Precondition};

use super::assert_err;
use super::fixtures::{enrollment, group, reg, scope_of};
use crate::{Entity, PageRequest, Store, StoreError, WriteOutcome};

fn grp(id: &str) -> EnrollmentGroupId {
    EnrollmentGroupId::new(id).unwrap()
}

/// Billing counts of the tenant over the last and next day.
async fn billed(store: &Arc<dyn Store>, scope: &IdScope) -> BTreeMap<OperationKind, u64> {
    let now = crate::time::now();
    store
        .operation_report(scope, now - Duration::days(1), now + Duration::days(1))
        .await
        .unwrap()
        .totals
}

/// Preconditions on individual enrollments: the typed error of each conflict,
/// stamping of etag and timestamps.
pub async fn enrollment_etag_conflicts(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let id = reg("dev-1");
    assert_err!(
        store.put_enrollment(&scope, enrollment("dev-1"), Precondition::Exists).await,
        StoreError::NotFound { entity: Entity::Enrollment, ref id } if id == "dev-1"
    );
    assert_err!(
        store
            .put_enrollment(
                &scope,
                enrollment("dev-1"),
                Precondition::Matches(ETag::new("x"))
            )
            .await,
        StoreError::NotFound {
            entity: Entity::Enrollment,
            ..
        }
    );
    let first = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::Absent)
        .await
        .unwrap();
    assert_eq!(first.outcome, WriteOutcome::Created);
    let tag1 = first.record.etag.clone().expect("etag set");
    let created = first.record.created_date_time_utc.expect("created set");
    assert_eq!(first.record.last_updated_date_time_utc, Some(created));
    assert_eq!(
        store.enrollment(&scope, &id).await.unwrap(),
        Some(first.record.clone())
    );

    assert_err!(
        store.put_enrollment(&scope, enrollment("dev-1"), Precondition::Absent).await,
        StoreError::AlreadyExists { entity: Entity::Enrollment, ref id } if id == "dev-1"
    );

    let mut changed = enrollment("dev-1");
    changed.iot_hubs = Some(vec!["hub-a.example".to_owned()]);
    // Client-sent read-only fields are overwritten by the store.
    changed.created_date_time_utc = Some(created - Duration::days(30));
    let second = store
        .put_enrollment(&scope, changed, Precondition::Matches(tag1.clone()))
        .await
        .unwrap();
    assert_eq!(second.outcome, WriteOutcome::Replaced);
    let tag2 = second.record.etag.clone().unwrap();
    assert_ne!(tag2, tag1, "every write makes a new etag");
    assert_eq!(
        second.record.created_date_time_utc,
        Some(created),
        "creation time kept"
    );
    assert!(second.record.last_updated_date_time_utc.unwrap() >= created);
    assert_eq!(
        store.enrollment(&scope, &id).await.unwrap(),
        Some(second.record.clone())
    );

    assert_err!(
        store
            .put_enrollment(&scope, enrollment("dev-1"), Precondition::Matches(tag1.clone()))
            .await,
        StoreError::PreconditionFailed { entity: Entity::Enrollment, ref expected, ref actual, .. }
            if *expected == tag1 && *actual == tag2
    );
    // Quoted and weak forms of the current tag match.
    let quoted = ETag::new(format!("W/\"{}\"", tag2.as_str()));
    let third = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::Matches(quoted))
        .await
        .unwrap();
    let tag3 = third.record.etag.clone().unwrap();
    let fourth = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::Exists)
        .await
        .unwrap();
    assert_eq!(fourth.outcome, WriteOutcome::Replaced);
    assert_ne!(fourth.record.etag.clone().unwrap(), tag3);
    let fifth = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap();
    assert_eq!(fifth.outcome, WriteOutcome::Replaced);

    // Deletes.
    assert_err!(
        store
            .delete_enrollment(&scope, &id, Precondition::Matches(tag1.clone()))
            .await,
        StoreError::PreconditionFailed {
            entity: Entity::Enrollment,
            ..
        }
    );
    assert_err!(
        store
            .delete_enrollment(&scope, &id, Precondition::Absent)
            .await,
        StoreError::AlreadyExists {
            entity: Entity::Enrollment,
            ..
        }
    );
    store
        .delete_enrollment(
            &scope,
            &id,
            Precondition::Matches(fifth.record.etag.clone().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(store.enrollment(&scope, &id).await.unwrap(), None);
    assert_err!(
        store
            .delete_enrollment(&scope, &id, Precondition::None)
            .await,
        StoreError::NotFound {
            entity: Entity::Enrollment,
            ..
        }
    );
    // Recreated after delete: a new creation time.
    let again = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::Absent)
        .await
        .unwrap();
    assert_eq!(again.outcome, WriteOutcome::Created);
    assert!(again.record.created_date_time_utc.unwrap() >= created);
}

/// The same preconditions on enrollment groups.
pub async fn group_etag_conflicts(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let id = grp("group-1");
    assert_err!(
        store
            .put_enrollment_group(&scope, group("group-1"), Precondition::Exists)
            .await,
        StoreError::NotFound {
            entity: Entity::EnrollmentGroup,
            ..
        }
    );
    let first = store
        .put_enrollment_group(&scope, group("group-1"), Precondition::Absent)
        .await
        .unwrap();
    assert_eq!(first.outcome, WriteOutcome::Created);
    let tag1 = first.record.etag.clone().unwrap();
    assert_err!(
        store
            .put_enrollment_group(&scope, group("group-1"), Precondition::Absent)
            .await,
        StoreError::AlreadyExists {
            entity: Entity::EnrollmentGroup,
            ..
        }
    );
    let second = store
        .put_enrollment_group(
            &scope,
            group("group-1"),
            Precondition::Matches(tag1.clone()),
        )
        .await
        .unwrap();
    assert_eq!(second.outcome, WriteOutcome::Replaced);
    assert_eq!(
        second.record.created_date_time_utc,
        first.record.created_date_time_utc
    );
    assert_err!(
        store
            .put_enrollment_group(&scope, group("group-1"), Precondition::Matches(tag1.clone()))
            .await,
        StoreError::PreconditionFailed { entity: Entity::EnrollmentGroup, ref expected, .. }
            if *expected == tag1
    );
    assert_eq!(
        store.enrollment_group(&scope, &id).await.unwrap(),
        Some(second.record.clone())
    );
    assert_err!(
        store
            .delete_enrollment_group(&scope, &id, Precondition::Matches(tag1))
            .await,
        StoreError::PreconditionFailed { .. }
    );
    store
        .delete_enrollment_group(&scope, &id, Precondition::Exists)
        .await
        .unwrap();
    assert_eq!(store.enrollment_group(&scope, &id).await.unwrap(), None);
    assert_err!(
        store
            .delete_enrollment_group(&scope, &id, Precondition::None)
            .await,
        StoreError::NotFound {
            entity: Entity::EnrollmentGroup,
            ..
        }
    );
}

/// Ids are found in any case and keep the spelling of the latest write.
pub async fn case_insensitive_ids(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    store
        .put_enrollment(&scope, enrollment("MyDevice"), Precondition::Absent)
        .await
        .unwrap();
    for spelling in ["mydevice", "MYDEVICE", "MyDevice"] {
        let found = store
            .enrollment(&scope, &reg(spelling))
            .await
            .unwrap()
            .expect("found");
        assert_eq!(found.registration_id.as_str(), "MyDevice");
    }
    assert_err!(
        store
            .put_enrollment(&scope, enrollment("MYDEVICE"), Precondition::Absent)
            .await,
        StoreError::AlreadyExists { .. }
    );
    let replaced = store
        .put_enrollment(&scope, enrollment("MYDEVICE"), Precondition::None)
        .await
        .unwrap();
    assert_eq!(replaced.outcome, WriteOutcome::Replaced);
    let found = store
        .enrollment(&scope, &reg("mydevice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.registration_id.as_str(), "MYDEVICE");
    let page = store
        .list_enrollments(&scope, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "one record, whatever the case");

    store
        .put_enrollment_group(&scope, group("Group-A"), Precondition::Absent)
        .await
        .unwrap();
    let found = store
        .enrollment_group(&scope, &grp("GROUP-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.enrollment_group_id.as_str(), "Group-A");
    store
        .delete_enrollment_group(&scope, &grp("group-a"), Precondition::None)
        .await
        .unwrap();
    store
        .delete_enrollment(&scope, &reg("myDEVICE"), Precondition::None)
        .await
        .unwrap();
    assert_eq!(
        store.enrollment(&scope, &reg("MyDevice")).await.unwrap(),
        None
    );

    // ID scopes too.
    let other_case = IdScope::new(scope.as_str().to_ascii_lowercase()).unwrap();
    store
        .put_enrollment(&other_case, enrollment("dev-2"), Precondition::None)
        .await
        .unwrap();
    assert!(store
        .enrollment(&scope, &reg("dev-2"))
        .await
        .unwrap()
        .is_some());
}

/// Writes under an unknown ID scope fail with `UnknownTenant`; reads find nothing.
pub async fn unknown_tenant_is_typed(store: Arc<dyn Store>) {
    let known = scope_of(&store).await;
    store
        .put_enrollment(&known, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap();
    let scope = IdScope::new("0ne0000NONE").unwrap();
    let unknown = |err: &StoreError| matches!(err, StoreError::UnknownTenant { id_scope } if *id_scope == scope);
    let err = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap_err();
    assert!(unknown(&err), "{err:?}");
    let err = store
        .put_enrollment_group(&scope, group("g"), Precondition::None)
        .await
        .unwrap_err();
    assert!(unknown(&err), "{err:?}");
    let err = store
        .delete_enrollment(&scope, &reg("dev-1"), Precondition::None)
        .await
        .unwrap_err();
    assert!(unknown(&err), "{err:?}");
    let err = store
        .delete_enrollment_group(&scope, &grp("g"), Precondition::None)
        .await
        .unwrap_err();
    assert!(unknown(&err), "{err:?}");
    let err = store
        .import_enrollments(&scope, vec![enrollment("dev-1")])
        .await
        .unwrap_err();
    assert!(unknown(&err), "{err:?}");
    let row = dps_model::OperationRecord::now(&scope, OperationKind::EnrollmentRead, None);
    let err = store.record_operation(row).await.unwrap_err();
    assert!(unknown(&err), "{err:?}");
    let err = store
        .delete_registration(&scope, &reg("dev-1"), Precondition::None)
        .await
        .unwrap_err();
    assert!(unknown(&err), "{err:?}");

    assert_eq!(store.enrollment(&scope, &reg("dev-1")).await.unwrap(), None);
    assert!(store
        .list_enrollments(&scope, &PageRequest::first(5))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .all_enrollment_groups(&scope)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.count_registrations(&scope).await.unwrap(), 0);
}

/// Each successful enrollment or group write bills exactly one row of its
/// kind; refused writes bill nothing.
pub async fn billing_rows_for_enrollment_writes(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    store
        .put_enrollment(&scope, enrollment("e1"), Precondition::None)
        .await
        .unwrap();
    store
        .put_enrollment(&scope, enrollment("e2"), Precondition::Absent)
        .await
        .unwrap();
    store
        .put_enrollment(&scope, enrollment("e1"), Precondition::Exists)
        .await
        .unwrap();
    store
        .delete_enrollment(&scope, &reg("e2"), Precondition::None)
        .await
        .unwrap();
    store
        .put_enrollment_group(&scope, group("g1"), Precondition::None)
        .await
        .unwrap();
    store
        .put_enrollment_group(&scope, group("g1"), Precondition::None)
        .await
        .unwrap();
    store
        .put_enrollment_group(&scope, group("g1"), Precondition::None)
        .await
        .unwrap();
    store
        .delete_enrollment_group(&scope, &grp("g1"), Precondition::None)
        .await
        .unwrap();
    // Refused: none of these bills.
    assert!(store
        .put_enrollment(&scope, enrollment("e1"), Precondition::Absent)
        .await
        .is_err());
    assert!(store
        .put_enrollment(
            &scope,
            enrollment("e1"),
            Precondition::Matches(ETag::new("no"))
        )
        .await
        .is_err());
    assert!(store
        .delete_enrollment(&scope, &reg("e2"), Precondition::None)
        .await
        .is_err());
    assert!(store
        .delete_enrollment_group(&scope, &grp("g1"), Precondition::None)
        .await
        .is_err());
    // Imports are not billed.
    store
        .import_enrollments(&scope, vec![enrollment("e9")])
        .await
        .unwrap();

    let expected: BTreeMap<OperationKind, u64> = [
        (OperationKind::EnrollmentCreate, 2),
        (OperationKind::EnrollmentUpdate, 1),
        (OperationKind::EnrollmentDelete, 1),
        (OperationKind::GroupCreate, 1),
        (OperationKind::GroupUpdate, 2),
        (OperationKind::GroupDelete, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(billed(&store, &scope).await, expected);

    let now = crate::time::now();
    let rows = store
        .operations(
            &scope,
            now - Duration::days(1),
            now + Duration::days(1),
            100,
        )
        .await
        .unwrap();
    let e2_rows: Vec<OperationKind> = rows
        .iter()
        .filter(|r| r.subject.as_deref() == Some("e2"))
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        e2_rows,
        [
            OperationKind::EnrollmentCreate,
            OperationKind::EnrollmentDelete
        ]
    );
}

/// Sixteen concurrent writers replacing with the same `If-Match`: exactly one wins.
pub async fn concurrent_writers_one_etag_one_winner(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let first = store
        .put_enrollment(&scope, enrollment("contended"), Precondition::Absent)
        .await
        .unwrap();
    let tag = first.record.etag.clone().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (store, scope, tag) = (Arc::clone(&store), scope.clone(), tag.clone());
        tasks.spawn(async move {
            let mut e = enrollment("contended");
            e.iot_hubs = Some(vec![format!("hub-{i}.example")]);
            store
                .put_enrollment(&scope, e, Precondition::Matches(tag))
                .await
        });
    }
    let (mut wins, mut conflicts) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        match done.expect("task ran") {
            Ok(written) => wins.push(written.record),
            Err(StoreError::PreconditionFailed { expected, .. }) => {
                assert_eq!(expected, tag);
                conflicts += 1;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one writer wins");
    assert_eq!(conflicts, 15);
    let stored = store
        .enrollment(&scope, &reg("contended"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, wins[0]);
    assert_eq!(
        billed(&store, &scope)
            .await
            .get(&OperationKind::EnrollmentUpdate),
        Some(&1)
    );
}
