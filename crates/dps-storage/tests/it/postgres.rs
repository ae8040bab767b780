//! PostgreSQL-only behaviour: several stores (as several replicas would
//! open) on one database, migrations started at once, reconnecting,
//! connection failures. Each test uses its own scratch schema and passes
//! without running (after saying so) when there is no PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use dps_model::{ETag, IdScope, OperationKind, OperationRecord, Precondition, RegistrationId};
use dps_storage::conformance::{enrollment, registration, tenant};
use dps_storage::postgres::scratch::ScratchSchema;
use dps_storage::{
    MigrationLock, PageRequest, PostgresOptions, PostgresStore, Store, StoreError, WriteOutcome,
};
use sqlx::Connection;

fn small(lock: MigrationLock) -> PostgresOptions {
    PostgresOptions {
        max_connections: 3,
        min_connections: 0,
        migration_lock: lock,
        ..PostgresOptions::default()
    }
}

/// Three stores on one schema, as three replicas would have.
async fn replicas(schema: &ScratchSchema) -> Vec<Arc<dyn Store>> {
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::connect(schema.url(), small(MigrationLock::Advisory))
            .await
            .expect("connect");
        stores.push(Arc::new(store));
    }
    stores
}

async fn billed(store: &dyn Store, scope: &IdScope) -> BTreeMap<OperationKind, u64> {
    let now = Utc::now();
    store
        .operation_report(scope, now - Duration::hours(1), now + Duration::hours(1))
        .await
        .unwrap()
        .totals
}

async fn raw(schema: &ScratchSchema) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(schema.url())
        .await
        .expect("raw connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_on_one_record_get_exactly_one_winner() {
    let Some(schema) = ScratchSchema::create().await else {
        return;
    };
    let stores = replicas(&schema).await;
    let scope = stores[0]
        .create_tenant(tenant("contoso", "0ne00000A0A"))
        .await
        .unwrap()
        .id_scope;

    // Create-only writes of one id through every replica at once: one creates.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (store, scope) = (Arc::clone(&stores[i % 3]), scope.clone());
        tasks.spawn(async move {
            store
                .put_enrollment(&scope, enrollment("contended"), Precondition::Absent)
                .await
        });
    }
    let mut created = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(written) => created.push(written),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one create wins");
    let tag = created[0].record.etag.clone().unwrap();

    // If-Match writes with the same etag through every replica: one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (store, scope, tag) = (Arc::clone(&stores[i % 3]), scope.clone(), tag.clone());
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
        match done.unwrap() {
            Ok(written) => wins.push(written.record),
            Err(StoreError::PreconditionFailed { expected, .. }) => {
                assert_eq!(expected, tag);
                conflicts += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((wins.len(), conflicts), (1, 23));
    for store in &stores {
        let stored = store
            .enrollment(&scope, &RegistrationId::new("contended").unwrap())
            .await
            .unwrap();
        assert_eq!(
            stored.as_ref(),
            Some(&wins[0]),
            "every replica reads the winner"
        );
    }

    // Unconditional writes through every replica: all succeed, one after the
    // other, each billed once with the outcome it really had.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..15 {
        let (store, scope) = (Arc::clone(&stores[i % 3]), scope.clone());
        tasks.spawn(async move {
            store
                .put_enrollment(&scope, enrollment("free-for-all"), Precondition::None)
                .await
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.unwrap().unwrap().outcome);
    }
    let creates = outcomes
        .iter()
        .filter(|o| **o == WriteOutcome::Created)
        .count();
    assert_eq!(creates, 1, "{outcomes:?}");
    let totals = billed(stores[1].as_ref(), &scope).await;
    assert_eq!(totals.get(&OperationKind::EnrollmentCreate), Some(&2));
    assert_eq!(
        totals.get(&OperationKind::EnrollmentUpdate),
        Some(&(1 + 14))
    );

    // If-Match deletes racing: one delete, one billing row.
    let current = stores[2]
        .enrollment(&scope, &RegistrationId::new("contended").unwrap())
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..9 {
        let (store, scope, tag) = (Arc::clone(&stores[i % 3]), scope.clone(), current.clone());
        tasks.spawn(async move {
            store
                .delete_enrollment(
                    &scope,
                    &RegistrationId::new("contended").unwrap(),
                    Precondition::Matches(tag),
                )
                .await
        });
    }
    let mut deleted = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(()) => deleted += 1,
            Err(StoreError::NotFound { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(deleted, 1);
    let totals = billed(stores[0].as_ref(), &scope).await;
    assert_eq!(totals.get(&OperationKind::EnrollmentDelete), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_committed_through_every_replica_are_all_stored_once() {
    let Some(schema) = ScratchSchema::create().await else {
        return;
    };
    let stores = replicas(&schema).await;
    let scope = stores[0]
        .create_tenant(tenant("fabrikam", "0ne00000F0F"))
        .await
        .unwrap()
        .id_scope;
    let now = Utc::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..600 {
        let (store, scope) = (Arc::clone(&stores[i % 3]), scope.clone());
        tasks.spawn(async move {
            // Devices 0..300, each registered twice through two replicas.
            let id = format!("dev-{:03}", i % 300);
            let (record, op) = registration(&id, None, &format!("5.op-{i}"), now);
            let kind = if i < 300 {
                OperationKind::Registration
            } else {
                OperationKind::ReRegistration
            };
            let row = OperationRecord::now(&scope, kind, Some(id));
            store
                .commit_registration(&scope, record, op, Some(row))
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    for store in &stores {
        assert_eq!(store.count_registrations(&scope).await.unwrap(), 300);
    }
    let totals = billed(stores[2].as_ref(), &scope).await;
    assert_eq!(totals.get(&OperationKind::Registration), Some(&300));
    assert_eq!(totals.get(&OperationKind::ReRegistration), Some(&300));
    for i in [0, 299, 300, 599] {
        assert!(stores[(i + 1) % 3]
            .registration_operation(&scope, &format!("5.op-{i}"))
            .await
            .unwrap()
            .is_some());
    }
    // The same operation id through another replica is refused, nothing kept.
    let (record, op) = registration("dev-new", None, "5.op-7", now);
    let refused = stores[1]
        .commit_registration(
            &scope,
            record,
            op,
            Some(OperationRecord::now(
                &scope,
                OperationKind::Registration,
                Some("dev-new".into()),
            )),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::AlreadyExists { .. })),
        "{refused:?}"
    );
    assert_eq!(stores[0].count_registrations(&scope).await.unwrap(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_once() {
    for lock in [MigrationLock::Advisory, MigrationLock::None] {
        let Some(schema) = ScratchSchema::create().await else {
            return;
        };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let url = schema.url().to_owned();
            tasks.spawn(async move { PostgresStore::connect(&url, small(lock)).await });
        }
        let mut stores = Vec::new();
        while let Some(done) = tasks.join_next().await {
            stores.push(done.unwrap().unwrap_or_else(|e| panic!("{lock:?}: {e:?}")));
        }
        let mut conn = raw(&schema).await;
        let versions: Vec<(i64,)> = sqlx::query_as("SELECT version FROM schema_migrations")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(versions, vec![(1,), (2,), (3,)], "{lock:?}");
        // And the schema works.
        let scope = stores[4]
            .create_tenant(tenant("contoso", "0ne00000A0A"))
            .await
            .unwrap()
            .id_scope;
        assert!(stores[0].tenant(&scope).await.unwrap().is_some());
        for store in stores {
            store.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reconnecting_and_newer_schemas_are_refused() {
    let Some(schema) = ScratchSchema::create().await else {
        return;
    };
    let store = schema.store().await;
    let scope = store
        .create_tenant(tenant("contoso", "0ne00000A0A"))
        .await
        .unwrap()
        .id_scope;
    let written = store
        .put_enrollment(&scope, enrollment("Dev-1"), Precondition::Absent)
        .await
        .unwrap();
    let (record, op) = registration("Dev-1", None, "5.op-1", Utc::now());
    store
        .commit_registration(&scope, record.clone(), op.clone(), None)
        .await
        .unwrap();
    store.close().await;
    let err = store
        .enrollment(&scope, &RegistrationId::new("dev-1").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err:?}");

    let store = schema.store().await;
    let id = RegistrationId::new("DEV-1").unwrap();
    assert_eq!(
        store.enrollment(&scope, &id).await.unwrap(),
        Some(written.record)
    );
    assert_eq!(store.registration(&scope, &id).await.unwrap(), Some(record));
    assert_eq!(
        store
            .registration_operation(&scope, "5.op-1")
            .await
            .unwrap(),
        Some(op)
    );
    store.close().await;

    let mut conn = raw(&schema).await;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_us) VALUES (999, 'future', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let err = PostgresStore::connect(schema.url(), small(MigrationLock::Advisory))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 999,
                known: 3
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_byte_ordered_whatever_the_collation() {
    let Some(schema) = ScratchSchema::create().await else {
        return;
    };
    let store = schema.store().await;
    let scope = store
        .create_tenant(tenant("contoso", "0ne00000A0A"))
        .await
        .unwrap()
        .id_scope;
    // Natural-language collations ignore punctuation; byte order does not.
    let ids = ["ab", "a-c", "a.b", "a_b", "a:b", "a0", "A-B", "b", "a-b-c"];
    let batch = ids.iter().map(|id| enrollment(id)).collect();
    store.import_enrollments(&scope, batch).await.unwrap();
    let page = store
        .list_enrollments(&scope, &PageRequest::first(100))
        .await
        .unwrap();
    let listed: Vec<String> = page.items.iter().map(|e| e.registration_id.key()).collect();
    let mut expected: Vec<String> = ids.iter().map(|id| id.to_ascii_lowercase()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(listed, expected);

    // Tenants too, by name.
    for (i, name) in ["b-tenant", "a_tenant", "a-tenant", "B"].iter().enumerate() {
        store
            .create_tenant(tenant(name, &format!("0ne0000B00{i}")))
            .await
            .unwrap();
    }
    let names: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_enrollment_can_take_its_record_along() {
    let Some(schema) = ScratchSchema::create().await else {
        return;
    };
    let store = schema.store().await;
    let scope = store
        .create_tenant(tenant("contoso", "0ne00000A0A"))
        .await
        .unwrap()
        .id_scope;
    let written = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap();
    let (record, op) = registration("dev-1", None, "5.op-1", Utc::now());
    store
        .commit_registration(&scope, record, op, None)
        .await
        .unwrap();
    let id = RegistrationId::new("DEV-1").unwrap();
    let stale = store
        .delete_enrollment_and_registration(&scope, &id, Precondition::Matches(ETag::new("old")))
        .await;
    assert!(
        matches!(stale, Err(StoreError::PreconditionFailed { .. })),
        "{stale:?}"
    );
    assert!(store.registration(&scope, &id).await.unwrap().is_some());
    store
        .delete_enrollment_and_registration(
            &scope,
            &id,
            Precondition::Matches(written.record.etag.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(store.enrollment(&scope, &id).await.unwrap(), None);
    assert_eq!(store.registration(&scope, &id).await.unwrap(), None);
    let totals = billed(&store, &scope).await;
    assert_eq!(totals.get(&OperationKind::EnrollmentDelete), Some(&1));
    assert_eq!(totals.get(&OperationKind::RegistrationStateDelete), None);
    let missing = store
        .delete_enrollment_and_registration(&scope, &id, Precondition::None)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_without_the_password() {
    // Port 1 on loopback: nothing listens there.
    let err = PostgresStore::connect(
        "postgres://dps:s3cret@127.0.0.1:1/dps",
        PostgresOptions {
            connect_timeout_ms: 2_000,
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap_err();
    match &err {
        StoreError::Connect { target, .. } => {
            assert_eq!(target, "postgres://dps@127.0.0.1:1/dps");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("s3cret"));
    let err = PostgresStore::connect("mysql://nope", PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
}
