//! Tenants: create, find, replace, delete (with everything that belongs to them).

use std::sync::Arc;

use chrono::Duration;
use dps_model::{ETag, IdScope, OperationKind, OperationRecord, Precondition, RegistrationId};

use super::assert_err;
use super::fixtures::{enrollment, group, registration, tenant};
use crate::{Entity, PageRequest, Store, StoreError};

/// Create, get by scope (any case) and name, list, replace under etags, delete.
pub async fn tenant_lifecycle(store: Arc<dyn Store>) {
    let created = store
        .create_tenant(tenant("beta", "0ne0000BBBB"))
        .await
        .unwrap();
    assert_ne!(
        created.etag,
        ETag::new("client-supplied"),
        "the store sets the etag"
    );
    store
        .create_tenant(tenant("alpha", "0ne0000AAAA"))
        .await
        .unwrap();

    assert_err!(
        store.create_tenant(tenant("gamma", "0NE0000bbbb")).await,
        StoreError::AlreadyExists {
            entity: Entity::Tenant,
            ..
        }
    );
    assert_err!(
        store.create_tenant(tenant("beta", "0ne0000CCCC")).await,
        StoreError::AlreadyExists { entity: Entity::Tenant, ref id } if id == "beta"
    );

    let scope = IdScope::new("0NE0000bbbb").unwrap();
    let found = store
        .tenant(&scope)
        .await
        .unwrap()
        .expect("found by scope in any case");
    assert_eq!(found, created);
    assert_eq!(found.id_scope.as_str(), "0ne0000BBBB", "spelling kept");
    assert_eq!(
        store.tenant_by_name("beta").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.tenant_by_name("nobody").await.unwrap(), None);
    assert_eq!(
        store
            .tenant(&IdScope::new("0ne0000ZZZZ").unwrap())
            .await
            .unwrap(),
        None
    );
    let names: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);

    // Replace: etag checked, new etag, creation time kept, name uniqueness kept.
    let mut changed = created.clone();
    changed.synchronous_register = true;
    changed.created = created.created + Duration::days(1);
    assert_err!(
        store
            .replace_tenant(changed.clone(), Precondition::Matches(ETag::new("stale")))
            .await,
        StoreError::PreconditionFailed { entity: Entity::Tenant, ref expected, ref actual, .. }
            if *expected == ETag::new("stale") && *actual == created.etag
    );
    let replaced = store
        .replace_tenant(changed.clone(), Precondition::Matches(created.etag.clone()))
        .await
        .unwrap();
    assert!(replaced.synchronous_register);
    assert_ne!(replaced.etag, created.etag);
    assert_eq!(replaced.created, created.created, "creation time kept");
    assert_eq!(store.tenant(&scope).await.unwrap(), Some(replaced.clone()));

    let mut renamed = replaced.clone();
    renamed.name = "alpha".to_owned();
    assert_err!(
        store.replace_tenant(renamed.clone(), Precondition::None).await,
        StoreError::AlreadyExists { entity: Entity::Tenant, ref id } if id == "alpha"
    );
    renamed.name = "delta".to_owned();
    let renamed = store
        .replace_tenant(renamed, Precondition::Exists)
        .await
        .unwrap();
    assert_eq!(
        store.tenant_by_name("delta").await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(
        store.tenant_by_name("beta").await.unwrap(),
        None,
        "old name released"
    );
    store
        .create_tenant(tenant("beta", "0ne0000CCCC"))
        .await
        .unwrap();

    assert_err!(
        store
            .replace_tenant(tenant("omega", "0ne0000ZZZZ"), Precondition::None)
            .await,
        StoreError::NotFound {
            entity: Entity::Tenant,
            ..
        }
    );

    // Delete under etags.
    assert_err!(
        store
            .delete_tenant(&scope, Precondition::Matches(created.etag.clone()))
            .await,
        StoreError::PreconditionFailed { .. }
    );
    store
        .delete_tenant(&scope, Precondition::Matches(renamed.etag.clone()))
        .await
        .unwrap();
    assert_eq!(store.tenant(&scope).await.unwrap(), None);
    assert_eq!(store.tenant_by_name("delta").await.unwrap(), None);
    assert_err!(
        store.delete_tenant(&scope, Precondition::None).await,
        StoreError::NotFound {
            entity: Entity::Tenant,
            ..
        }
    );
    let names: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
}

/// Deleting a tenant deletes its enrollments, groups, registrations,
/// operations and billing rows; a tenant re-created with the same scope starts empty.
pub async fn delete_tenant_removes_everything(store: Arc<dyn Store>) {
    let doomed = store
        .create_tenant(tenant("doomed", "0ne0000D00D"))
        .await
        .unwrap();
    let kept = store
        .create_tenant(tenant("kept", "0ne0000KEEP"))
        .await
        .unwrap();
    let now = crate::time::now();
    for t in [&doomed, &kept] {
        let scope = &t.id_scope;
        store
            .put_enrollment(scope, enrollment("dev-1"), Precondition::None)
            .await
            .unwrap();
        store
            .put_enrollment_group(scope, group("grp-1"), Precondition::None)
            .await
            .unwrap();
        let (record, op) = registration("dev-1", Some("grp-1"), "op-1", now);
        let bill = OperationRecord::now(scope, OperationKind::Registration, Some("dev-1".into()));
        store
            .commit_registration(scope, record, op, Some(bill))
            .await
            .unwrap();
    }
    store
        .delete_tenant(&doomed.id_scope, Precondition::None)
        .await
        .unwrap();

    let far = (now - Duration::days(1), now + Duration::days(1));
    let id = RegistrationId::new("dev-1").unwrap();
    let grp = dps_model::EnrollmentGroupId::new("grp-1").unwrap();
    store
        .create_tenant(tenant("doomed", "0ne0000D00D"))
        .await
        .unwrap();
    let scope = &doomed.id_scope;
    assert_eq!(store.enrollment(scope, &id).await.unwrap(), None);
    assert_eq!(store.enrollment_group(scope, &grp).await.unwrap(), None);
    assert!(store
        .list_enrollments(scope, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store.all_enrollment_groups(scope).await.unwrap().is_empty());
    assert_eq!(store.registration(scope, &id).await.unwrap(), None);
    assert_eq!(
        store.registration_operation(scope, "op-1").await.unwrap(),
        None
    );
    assert_eq!(store.count_registrations(scope).await.unwrap(), 0);
    assert_eq!(
        store
            .operation_report(scope, far.0, far.1)
            .await
            .unwrap()
            .total,
        0
    );

    let scope = &kept.id_scope;
    assert!(store.enrollment(scope, &id).await.unwrap().is_some());
    assert!(store.enrollment_group(scope, &grp).await.unwrap().is_some());
    assert!(store.registration(scope, &id).await.unwrap().is_some());
    assert!(store
        .registration_operation(scope, "op-1")
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .operation_report(scope, far.0, far.1)
            .await
            .unwrap()
            .total,
        3
    );
}
