//! The read connections: a fixed set, handed out without a round trip, and
//! the reads that run on them.
//!
//! sqlx's pool pings a connection every time one is returned to it, which
//! doubles the cost of a point read (each statement is a hand-off to the
//! connection's own thread). These connections are read-only and only ever
//! run single `SELECT`s, so a plain set of locks is enough.

use std::sync::atomic::{AtomicUsize, Ordering};

use dps_model::{IdScope, IndividualEnrollment, RegistrationId, RegistrationRecord};
use serde::de::DeserializeOwned;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, Row, Sqlite, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard};

use super::sql::{self, RecordTable};
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

    /// The JSON body in the first column of the row `query` finds, decoded.
    pub(crate) async fn one<'q, T: DeserializeOwned>(
        &self,
        entity: Entity,
        key: &str,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> StoreResult<Option<T>> {
        let mut lent = self.get().await;
        let row = query
            .fetch_optional(connection(&mut lent)?)
            .await
            .map_err(StoreError::database("reading a record"))?;
        match row {
            Some(row) => decode_column(entity, key, &row, 0).map(Some),
            None => Ok(None),
        }
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

    pub(crate) async fn get_record<T: DeserializeOwned>(
        &self,
        table: &RecordTable,
        entity: Entity,
        id_scope: &IdScope,
        key: String,
    ) -> StoreResult<Option<T>> {
        let query = sqlx::query(table.get)
            .bind(id_scope.key())
            .bind(key.clone());
        self.one(entity, &key, query).await
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

    /// An enrollment and the registration record of the same id, in one
    /// statement (one hand-off to the connection's thread instead of two).
    pub(crate) async fn enrollment_with_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<(IndividualEnrollment, Option<RegistrationRecord>)>> {
        let key = registration_id.key();
        let mut lent = self.get().await;
        let row = sqlx::query(sql::ENROLLMENT_WITH_REGISTRATION)
            .bind(id_scope.key())
            .bind(key.clone())
            .fetch_optional(connection(&mut lent)?)
            .await
            .map_err(StoreError::database("reading a record"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (enrollment, record): (&str, Option<&str>) = (
            row.try_get(0)
                .map_err(StoreError::database("reading a record"))?,
            row.try_get(1)
                .map_err(StoreError::database("reading a record"))?,
        );
        rules::decode_enrollment_with_registration(&key, enrollment, record).map(Some)
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
