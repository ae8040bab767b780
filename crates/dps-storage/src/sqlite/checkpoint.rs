//! Background WAL checkpoints.
//!
//! SQLite normally checkpoints (copies the WAL back into the database file
//! and syncs it) inside whichever commit pushes the WAL past 1000 pages: the
//! single writer would stall every few hundred batches, and all writes
//! queued behind it with it. Instead a task with its own connection runs a
//! `PASSIVE` checkpoint (which never blocks readers or the writer) at a fixed
//! interval; the writer keeps SQLite's automatic checkpoint only as a backstop
//! for a WAL that grows past [`BACKSTOP_PAGES`].

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// WAL size (pages) at which the writer checkpoints by itself.
pub(crate) const BACKSTOP_PAGES: u32 = 16_384;

/// A running checkpointer; dropping the handle's sender stops it.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Open a connection and start checkpointing every `interval`.
    pub(crate) async fn start(
        options: &SqliteConnectOptions,
        interval: Duration,
    ) -> Result<Self, sqlx::Error> {
        let conn = SqliteConnection::connect_with(options).await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(conn, interval, stopped));
        Ok(Checkpointer { stop, task })
    }

    /// Stop after the checkpoint in progress, if any, and close the connection.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "the SQLite checkpoint task failed");
        }
    }
}

async fn run(mut conn: SqliteConnection, interval: Duration, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => break,
        }
        let result: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        match result {
            Ok((_, wal_pages, copied)) => {
                tracing::trace!(wal_pages, copied, "WAL checkpoint");
            }
            // Transient (disk full, I/O): the writer's backstop still bounds the WAL.
            Err(err) => tracing::warn!(error = %err, "WAL checkpoint failed"),
        }
    }
    if let Err(err) = conn.close().await {
        tracing::warn!(error = %err, "closing the SQLite checkpoint connection failed");
    }
}
