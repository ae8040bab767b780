//! The scan connections (pages, lists, counts, reports): a fixed set, handed
//! out without a round trip, and the reads that run on them. Point reads of
//! one record go to [`super::point_reads`] instead.
//!
//! sqlx's pool pings a connection every time one is returned to it, which
//! doubles the cost of a read (each statement is a hand-off to the
//! connection's own thread). These connections are read-only and only ever
//! run single `SELECT`s, so a plain set of locks is enough.

use std::sync::atomic::{AtomicUsize, Ordering};

use dps_model::IdScope;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, Row, Sqlite, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard};

use super::sql::RecordTable;
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules;
use crate::token::{Page, PageRequest};

/// Read-only connections, each used by one reader at a time.
#[derive(Debug)]
pub(crate) struct Readers {
    connections: Vec<Mutex<Option<SqliteConnection>>>,
    next: AtomicUsize,
}

/// A connection lent to one reader; `None` once the store is closed.
pub(crate) type Lent<'a> = MutexGuard<'a, Option<SqliteConnection>>;

impl Readers {
    /// Open `count` (at least one) connections with `options`.
    pub(crate) async fn open(
        options: &SqliteConnectOptions,
        count: u32,
    ) -> Result<Self, sqlx::Error> {
        let mut connections = Vec::new();
        for _ in 0..count.max(1) {
            connections.push(Mutex::new(Some(
                SqliteConnection::connect_with(options).await?,
            )));
        }
        Ok(Readers {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// A free connection, or the next one in turn once it is free.
    pub(crate) async fn get(&self) -> Lent<'_> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            if let Ok(lent) = self.connections[(start + i) % count].try_lock() {
                return lent;
            }
        }
        self.connections[start % count].lock().await
    }

    /// `(key, body)` rows, one more than the page holds, as a page.
    pub(crate) async fn page<'q, T: DeserializeOwned>(
        &self,
        entity: Entity,
        size: usize,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> StoreResult<Page<T>> {
        let mut lent = self.get().await;
        let rows = query
            .fetch_all(connection(&mut lent)?)
            .await
            .map_err(StoreError::database("listing records"))?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: String = row
                .try_get(0)
                .map_err(StoreError::database("listing records"))?;
            let item = decode_column(entity, &key, row, 1)?;
            items.push((key, item));
        }
        Ok(Page::from_overfetch(items, size))
    }

    pub(crate) async fn page_records<T: DeserializeOwned>(
        &self,
        table: &RecordTable,
        entity: Entity,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<T>> {
        let size = page.effective_size();
        let query = sqlx::query(table.page)
            .bind(id_scope.key())
            .bind(page.after_key().unwrap_or("").to_owned())
            .bind(super::limit(size + 1));
        self.page(entity, size, query).await
    }

    /// Close every connection (waiting for readers in progress).
    pub(crate) async fn close(&self) {
        for slot in &self.connections {
            if let Some(conn) = slot.lock().await.take() {
                if let Err(err) = conn.close().await {
                    tracing::warn!(error = %err, "closing an SQLite read connection failed");
                }
            }
        }
    }
}

pub(crate) fn decode_column<T: DeserializeOwned>(
    entity: Entity,
    key: &str,
    row: &SqliteRow,
    column: usize,
) -> StoreResult<T> {
    let text: &str = row
        .try_get(column)
        .map_err(StoreError::database("reading a record"))?;
    rules::decode(entity, key, text)
}

/// The connection a reader was lent, unless the store is closed.
pub(crate) fn connection<'a>(lent: &'a mut Lent<'_>) -> StoreResult<&'a mut SqliteConnection> {
    lent.as_mut().ok_or(StoreError::Closed)
}
