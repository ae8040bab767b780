//! The read connections: a fixed set, handed out without a round trip.
//!
//! sqlx's pool pings a connection every time one is returned to it, which
//! doubles the cost of a point read (each statement is a hand-off to the
//! connection's own thread). These connections are read-only and only ever
//! run single `SELECT`s, so a plain set of locks is enough.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard};

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
