//! Tuning of the SQLite store: durability and connection settings.

use serde::{Deserialize, Serialize};

/// How hard a commit insists on reaching the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives process crashes; the last commits may be lost on power loss.
    #[default]
    Normal,
    /// Survives power loss too: one `fsync` of the WAL per commit (per batch).
    Full,
}

/// Tuning of a [`SqliteStore`](super::SqliteStore); every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteOptions {
    /// Durability of commits (default `normal`).
    pub synchronous: Synchronous,
    /// Read-only connections of each kind, point reads and scans (default 4
    /// each, at least 1).
    pub read_connections: u32,
    /// How long a statement waits for a lock held by another process, in ms (default 5000).
    pub busy_timeout_ms: u64,
    /// Most writes committed in one transaction (default 512).
    pub max_batch: usize,
    /// Writes that may wait for the writer before callers are slowed down (default 4096).
    pub queue_depth: usize,
    /// Page cache per connection, KiB (default 16384).
    pub cache_size_kib: u32,
    /// Bytes of the file read through a memory map, shared by all connections
    /// (default 0: off). A database that grows (every registration and every
    /// billing row) makes each connection unmap and map again and fault its
    /// pages back in, which under a mixed load costs more than the map saves:
    /// off, the service API answered 40 % more GETs on 2 cores while point
    /// reads alone went from 58k/s to 43k/s. Worth turning on for a
    /// read-mostly database.
    pub mmap_size_bytes: u64,
    /// Interval of background WAL checkpoints, in ms (default 500). 0 leaves
    /// checkpoints to SQLite, inside the writer's commits every 1000 pages.
    pub checkpoint_interval_ms: u64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            read_connections: 4,
            busy_timeout_ms: 5000,
            max_batch: 512,
            queue_depth: 4096,
            cache_size_kib: 16 * 1024,
            mmap_size_bytes: 0,
            checkpoint_interval_ms: 500,
        }
    }
}
