//! Point reads (one record by its key) on the calling thread.
//!
//! sqlx runs every statement of an SQLite connection on that connection's own
//! thread: a point read is a hand-off there and back (two futex wake-ups and
//! two context switches), which on a busy 2-core machine cost more than the
//! read itself. These connections are plain SQLite handles used directly by
//! the task that reads: an indexed lookup of one row takes tens of
//! microseconds, short enough to run inline on an async worker. Scans (pages,
//! reports) stay on the sqlx readers, where a long statement blocks nobody.
//!
//! The connections are read-only and see the database like the sqlx readers
//! do (WAL snapshots; each statement is its own read transaction).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dps_model::{IndividualEnrollment, RegistrationRecord};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::de::DeserializeOwned;

use super::options::SqliteOptions;
use super::sql;
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules;

/// Statements each connection keeps prepared (every point read there is).
const PREPARED_STATEMENTS: usize = 16;

/// Read-only connections for point reads, each used by one reader at a time.
#[derive(Debug)]
pub(crate) struct PointReaders {
    connections: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
}

impl PointReaders {
    /// Open `options.read_connections` (at least one) connections to the
    /// database at `path`, which must exist.
    pub(crate) fn open(path: &Path, options: &SqliteOptions) -> Result<Self, rusqlite::Error> {
        let mut connections = Vec::new();
        for _ in 0..options.read_connections.max(1) {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_millis(options.busy_timeout_ms))?;
            conn.pragma_update(None, "cache_size", format!("-{}", options.cache_size_kib))?;
            conn.pragma_update(None, "mmap_size", options.mmap_size_bytes.to_string())?;
            conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
            connections.push(Mutex::new(Some(conn)));
        }
        Ok(PointReaders {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// The JSON body of the one row `statement` finds for `params`, decoded
    /// as `entity` (`key` names it in errors).
    pub(crate) fn one<T: DeserializeOwned>(
        &self,
        entity: Entity,
        key: &str,
        statement: &str,
        params: &[&str],
    ) -> StoreResult<Option<T>> {
        let body = self.with(|conn| {
            conn.prepare_cached(statement)?
                .query_row(rusqlite::params_from_iter(params), |row| {
                    row.get::<_, String>(0)
                })
                .optional()
        })?;
        body.map(|text| rules::decode(entity, key, &text))
            .transpose()
    }

    /// An enrollment and the registration record of the same id, in one statement.
    pub(crate) fn enrollment_with_registration(
        &self,
        scope_key: &str,
        key: &str,
    ) -> StoreResult<Option<(IndividualEnrollment, Option<RegistrationRecord>)>> {
        let bodies = self.with(|conn| {
            conn.prepare_cached(sql::ENROLLMENT_WITH_REGISTRATION)?
                .query_row([scope_key, key], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                })
                .optional()
        })?;
        bodies
            .map(|(enrollment, record)| {
                rules::decode_enrollment_with_registration(key, &enrollment, record.as_deref())
            })
            .transpose()
    }

    /// Run `read` on a free connection (or the next one in turn, once free).
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> StoreResult<T> {
        let lent = self.lend();
        let conn = lent.as_ref().ok_or(StoreError::Closed)?;
        read(conn).map_err(|source| StoreError::Sqlite {
            context: "reading a record",
            source: Arc::new(source),
        })
    }

    fn lend(&self) -> MutexGuard<'_, Option<Connection>> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            if let Ok(lent) = self.connections[(start + i) % count].try_lock() {
                return lent;
            }
        }
        // A read holds its connection for microseconds: waiting is brief.
        // A reader that panicked left nothing half-done on a read-only handle.
        self.connections[start % count]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Close every connection (waiting for reads in progress).
    pub(crate) fn close(&self) {
        for slot in &self.connections {
            let conn = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(Err((_, err))) = conn.map(Connection::close) {
                tracing::warn!(error = %err, "closing an SQLite point-read connection failed");
            }
        }
    }
}
