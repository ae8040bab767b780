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
