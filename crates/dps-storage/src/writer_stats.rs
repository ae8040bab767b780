//! Plain counters of a batching writer (the SQLite store's), read by
//! whoever exports metrics: this crate depends on no metrics library.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (inclusive) of the batch-size buckets; a last bucket holds
/// larger batches.
pub const BATCH_SIZE_BOUNDS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// A writer's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Writes waiting for the writer now.
    pub queue_depth: u64,
    /// How many writes may wait before callers wait to enqueue.
    pub queue_capacity: u64,
    /// Transactions (batches) run so far.
    pub batches_total: u64,
    /// Writes run so far, all batches together.
    pub writes_total: u64,
    /// Batches per size: `(upper bound, count)` for each of
    /// [`BATCH_SIZE_BOUNDS`] then `(u64::MAX, larger ones)`; not cumulative.
    pub batch_sizes: Vec<(u64, u64)>,
}

/// The live counters a writer task updates.
#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    batches: [AtomicU64; BATCH_SIZE_BOUNDS.len() + 1],
    writes: AtomicU64,
}

impl WriterCounters {
    /// Count one batch of `size` writes.
    pub(crate) fn batch(&self, size: usize) {
        let size = size as u64;
        let bucket = BATCH_SIZE_BOUNDS
            .iter()
            .position(|&bound| size <= bound)
            .unwrap_or(BATCH_SIZE_BOUNDS.len());
        self.batches[bucket].fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(size, Ordering::Relaxed);
    }

    /// The counters now, with the queue as the caller sees it.
    pub(crate) fn stats(&self, queue_depth: u64, queue_capacity: u64) -> WriterStats {
        let batch_sizes: Vec<(u64, u64)> = BATCH_SIZE_BOUNDS
            .iter()
            .copied()
            .chain([u64::MAX])
            .zip(&self.batches)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        WriterStats {
            queue_depth,
            queue_capacity,
            batches_total: batch_sizes.iter().map(|(_, c)| c).sum(),
            writes_total: self.writes.load(Ordering::Relaxed),
            batch_sizes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_land_in_their_size_bucket() {
        let counters = WriterCounters::default();
        for size in [1, 3, 4, 300] {
            counters.batch(size);
        }
        let stats = counters.stats(2, 10);
        assert_eq!((stats.batches_total, stats.writes_total), (4, 308));
        assert_eq!(stats.batch_sizes[0], (1, 1));
        assert_eq!(stats.batch_sizes[2], (4, 2));
        assert_eq!(stats.batch_sizes.last(), Some(&(u64::MAX, 1)));
        assert_eq!((stats.queue_depth, stats.queue_capacity), (2, 10));
    }

    #[tokio::test]
    async fn the_sqlite_writer_reports_its_batches_and_the_others_nothing() {
        use crate::{MemoryStore, SqliteOptions, SqliteStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("dps.db"), SqliteOptions::default())
            .await
            .unwrap();
        let before = store.writer_stats().expect("SQLite has a writer");
        assert_eq!(
            before.queue_capacity,
            SqliteOptions::default().queue_depth as u64
        );
        let tenant = dps_model::Tenant::new("stats", "stats.localhost").unwrap();
        store.create_tenant(tenant).await.unwrap();
        let after = store.writer_stats().unwrap();
        assert_eq!(after.batches_total, before.batches_total + 1);
        assert_eq!(after.writes_total, before.writes_total + 1);
        assert_eq!(after.queue_depth, 0);
        store.close().await;
        assert_eq!(MemoryStore::new().writer_stats(), None);
    }
}
