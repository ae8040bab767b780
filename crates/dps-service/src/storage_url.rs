//! Choosing the storage backend from a URL: `sqlite://path`, `memory://`.

use std::sync::Arc;

use dps_storage::{MemoryStore, SqliteOptions, SqliteStore, Store};

use crate::ServiceError;

/// Open the store a URL names.
pub(crate) async fn open(url: &str) -> Result<Arc<dyn Store>, ServiceError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = SqliteStore::open(path, SqliteOptions::default())
            .await
            .map_err(|e| ServiceError::Storage(format!("{url}: {e}")))?;
        return Ok(Arc::new(store));
    }
    if url == "memory://" || url == "memory:" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    Err(ServiceError::Config {
        reason: format!("unsupported storage URL {url:?}: use sqlite://PATH or memory://"),
    })
}
