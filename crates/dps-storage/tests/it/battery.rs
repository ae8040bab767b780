//! The shared battery, once per backend.

mod memory {
    use std::sync::Arc;

    use dps_storage::conformance::TestStore;
    use dps_storage::MemoryStore;

    async fn fresh() -> TestStore {
        TestStore::new(Arc::new(MemoryStore::new()), ())
    }

    dps_storage::store_battery!(fresh);
}

mod sqlite {
    use std::sync::Arc;

    use dps_storage::conformance::TestStore;
    use dps_storage::{SqliteOptions, SqliteStore};

    async fn fresh() -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("dps.db"), SqliteOptions::default())
            .await
            .expect("open");
        TestStore::new(Arc::new(store), dir)
    }

    dps_storage::store_battery!(fresh);
}

/// Each test in a fresh schema of the test server, dropped at the end; passes
/// without running (after saying so) when there is no PostgreSQL.
mod postgres {
    use std::sync::Arc;

    use dps_storage::conformance::TestStore;
    use dps_storage::postgres::scratch::ScratchSchema;

    async fn fresh() -> Option<TestStore> {
        let schema = ScratchSchema::create().await?;
        let store = schema.store().await;
        Some(TestStore::new(Arc::new(store), schema))
    }

    dps_storage::store_battery!(fresh);
}
