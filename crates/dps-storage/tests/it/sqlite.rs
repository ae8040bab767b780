//! SQLite-only behaviour.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dps_model::{OperationKind, OperationRecord, Precondition, RegistrationId};
use dps_storage::conformance::{enrollment, registration, tenant};
use dps_storage::{SqliteOptions, SqliteStore, Store, StoreError, Synchronous};

async fn open(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default())
        .await
        .expect("open")
}

/// A store holding tenant `contoso` (`0ne00000A0A`) with enrollment `dev-1`.
async fn open_enrolled(path: &std::path::Path) -> (SqliteStore, dps_model::IdScope) {
    let store = open(path).await;
    let scope = store
        .create_tenant(tenant("contoso", "0ne00000A0A"))
        .await
        .unwrap()
        .id_scope;
    store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap();
    (store, scope)
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dps.db");
    let store = open(&path).await;
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
    let row = OperationRecord::now(&scope, OperationKind::Registration, Some("Dev-1".into()));
    store
        .commit_registration(&scope, record.clone(), op.clone(), Some(row))
        .await
        .unwrap();
    store.close().await;
    let err = store
        .enrollment(&scope, &RegistrationId::new("dev-1").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    let err = store
        .put_enrollment(&scope, enrollment("dev-2"), Precondition::None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    drop(store);

    let store = open(&path).await;
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
    let now = Utc::now();
    let report = store
        .operation_report(
            &scope,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(
        report.totals.get(&OperationKind::EnrollmentCreate),
        Some(&1)
    );
    assert_eq!(report.totals.get(&OperationKind::Registration), Some(&1));
    store.close().await;
}

#[tokio::test]
async fn dropping_without_close_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dps.db");
    drop(open_enrolled(&path).await);
    let store = open(&path).await;
    let scope = dps_model::IdScope::new("0ne00000A0A").unwrap();
    let found = store
        .enrollment(&scope, &RegistrationId::new("dev-1").unwrap())
        .await
        .unwrap();
    assert!(found.is_some());
    store.close().await;
}

#[tokio::test]
async fn full_synchronous_mode_works_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        synchronous: Synchronous::Full,
        read_connections: 1,
        max_batch: 1,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path().join("dps.db"), options)
        .await
        .unwrap();
    let scope = store
        .create_tenant(tenant("contoso", "0ne00000A0A"))
        .await
        .unwrap()
        .id_scope;
    let written = store
        .put_enrollment(&scope, enrollment("dev-1"), Precondition::None)
        .await
        .unwrap();
    let found = store
        .enrollment(&scope, &RegistrationId::new("dev-1").unwrap())
        .await
        .unwrap();
    assert_eq!(found, Some(written.record));
    store.close().await;
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dps.db");
    open(&path).await.close().await;
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_us) VALUES (999, 'future', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let err = SqliteStore::open(&path, SqliteOptions::default())
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

#[tokio::test]
async fn missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("dps.db");
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Open { path: ref p, .. } if *p == path),
        "{err:?}"
    );
}

#[test]
fn options_deserialize_with_defaults() {
    let options: SqliteOptions = serde_json::from_value(serde_json::json!({
        "synchronous": "full",
        "read_connections": 8
    }))
    .unwrap();
    assert_eq!(options.synchronous, Synchronous::Full);
    assert_eq!(options.read_connections, 8);
    assert_eq!(options.max_batch, SqliteOptions::default().max_batch);
    let err = serde_json::from_value::<SqliteOptions>(serde_json::json!({"synchronus": "full"}));
    assert!(err.is_err(), "unknown fields are refused");
}

/// Point reads never wait on anything, so they must still give other tasks
/// their turn: a task reading in a loop on a one-thread runtime would
/// otherwise starve the timer that tells it to stop. The scenario runs on a
/// thread of its own so that a starved runtime fails the test instead of
/// hanging it.
#[test]
fn reading_in_a_loop_lets_other_tasks_run() {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done.send(runtime.block_on(read_until_told_to_stop()));
    });
    let reads = outcome
        .recv_timeout(Duration::from_secs(30))
        .expect("the reading task stopped when told (the runtime was not starved)");
    assert!(reads > 0);
}

async fn read_until_told_to_stop() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, scope) = open_enrolled(&dir.path().join("dps.db")).await;
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let id = RegistrationId::new("dev-1").unwrap();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert!(store.enrollment(&scope, &id).await.unwrap().is_some());
                reads += 1;
            }
            reads
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    store.close().await;
    reads
}
