//! An individual enrollment and the registration record of the same device:
//! read together (the service API's GET shows both) and deleted together.

use std::sync::Arc;

use chrono::Utc;
use dps_model::{ETag, OperationKind, Precondition};

use super::assert_err;
use super::fixtures::{enrollment, reg, registration, scope_of, tenant};
use super::registrations::rows_by_subject;
use crate::{Entity, Store, StoreError};

/// `enrollment_with_registration` gives exactly what the two separate reads
/// give: the enrollment alone, then with the device's record once it
/// registered, never another tenant's record, nothing for a record without
/// an enrollment.
pub async fn enrollment_read_with_its_registration(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let other = store
        .create_tenant(tenant("fabrikam", "0ne00000F0F"))
        .await
        .unwrap()
        .id_scope;
    assert_eq!(
        store
            .enrollment_with_registration(&scope, &reg("dev-1"))
            .await
            .unwrap(),
        None,
        "no enrollment yet"
    );
    let written = store
        .put_enrollment(&scope, enrollment("Dev-1"), Precondition::None)
        .await
        .unwrap()
        .record;
    // The other tenant's device of the same id registers: not ours.
    let (foreign, op) = registration("dev-1", None, "5.op-foreign", Utc::now());
    store
        .commit_registration(&other, foreign, op, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .enrollment_with_registration(&scope, &reg("DEV-1"))
            .await
            .unwrap(),
        Some((written.clone(), None)),
        "the enrollment alone, any case of its id"
    );

    let (record, op) = registration("dev-1", None, "5.op-1", Utc::now());
    store
        .commit_registration(&scope, record.clone(), op, None)
        .await
        .unwrap();
    let (read, state) = store
        .enrollment_with_registration(&scope, &reg("dev-1"))
        .await
        .unwrap()
        .expect("enrolled");
    assert_eq!(read, written);
    assert_eq!(state, Some(record.clone()));
    assert_eq!(
        store.enrollment(&scope, &reg("dev-1")).await.unwrap(),
        Some(read)
    );
    assert_eq!(
        store.registration(&scope, &reg("dev-1")).await.unwrap(),
        state
    );

    // A record whose enrollment is gone (a group device, say) is not an enrollment.
    let (orphan, op) = registration("dev-2", Some("group-a"), "5.op-2", Utc::now());
    store
        .commit_registration(&scope, orphan, op, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .enrollment_with_registration(&scope, &reg("dev-2"))
            .await
            .unwrap(),
        None
    );
}

/// Deleting an enrollment with its record: both go, one `enrollmentDelete`
/// row, the etag precondition applies to the enrollment, and an enrollment
/// without a record is deleted all the same.
pub async fn delete_enrollment_takes_its_registration(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let written = store
        .put_enrollment(&scope, enrollment("Dev-1"), Precondition::None)
        .await
        .unwrap()
        .record;
    let (record, op) = registration("dev-1", None, "5.op-1", Utc::now());
    store
        .commit_registration(&scope, record, op, None)
        .await
        .unwrap();
    assert_err!(
        store
            .delete_enrollment_and_registration(
                &scope,
                &reg("DEV-1"),
                Precondition::Matches(ETag::new("stale"))
            )
            .await,
        StoreError::PreconditionFailed {
            entity: Entity::Enrollment,
            ..
        }
    );
    assert!(store
        .registration(&scope, &reg("dev-1"))
        .await
        .unwrap()
        .is_some());
    store
        .delete_enrollment_and_registration(
            &scope,
            &reg("DEV-1"),
            Precondition::Matches(written.etag.clone().expect("stamped")),
        )
        .await
        .unwrap();
    assert_eq!(store.enrollment(&scope, &reg("dev-1")).await.unwrap(), None);
    assert_eq!(
        store.registration(&scope, &reg("dev-1")).await.unwrap(),
        None
    );
    assert_err!(
        store
            .delete_enrollment_and_registration(&scope, &reg("dev-1"), Precondition::None)
            .await,
        StoreError::NotFound {
            entity: Entity::Enrollment,
            ..
        }
    );
    store
        .put_enrollment(&scope, enrollment("dev-2"), Precondition::None)
        .await
        .unwrap();
    store
        .delete_enrollment_and_registration(&scope, &reg("dev-2"), Precondition::None)
        .await
        .unwrap();
    let rows = rows_by_subject(&store, &scope).await;
    assert_eq!(
        rows.get("DEV-1").map(Vec::as_slice),
        Some(&[OperationKind::EnrollmentDelete][..]),
        "one row for the delete, none for the record that went with it"
    );
}
