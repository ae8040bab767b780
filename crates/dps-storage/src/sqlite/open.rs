//! Opening, closing and the plumbing every `Store` method of
//! [`SqliteStore`] shares (writer submission, reader access).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::authorities::AuthorityJob;
use super::checkpoint::Checkpointer;
use super::point_reads::PointReaders;
use super::readers::Readers;
use super::writer::{Job, Reply};
use super::{checkpoint, schema, writer, SqliteOptions, SqliteStore, Synchronous};
use crate::error::{StoreError, StoreResult};
use crate::writer_stats::WriterCounters;

/// SQLite's own default.
const DEFAULT_AUTOCHECKPOINT_PAGES: u32 = 1000;

impl SqliteStore {
    /// Open (creating if missing) the database at `path` and bring its schema
    /// up to date. The directory must exist.
    pub async fn open(path: impl AsRef<Path>, options: SqliteOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source: Arc::new(source),
        };
        let (base, write_options) = connect_options(&path, &options).map_err(open_error)?;
        let autocheckpoint = match options.checkpoint_interval_ms {
            0 => DEFAULT_AUTOCHECKPOINT_PAGES,
            _ => checkpoint::BACKSTOP_PAGES,
        };
        // Migrations run on a connection of their own, closed before the
        // writer's opens (the errors of a migration are sqlx's).
        let mut conn = SqliteConnection::connect_with(
            &write_options
                .clone()
                .pragma("wal_autocheckpoint", autocheckpoint.to_string()),
        )
        .await
        .map_err(open_error)?;
        schema::migrate(&mut conn).await?;
        conn.close().await.map_err(open_error)?;
        let conn =
            open_writer(&path, &options, autocheckpoint).map_err(|source| StoreError::Sqlite {
                context: "opening the writer connection",
                source: Arc::new(source),
            })?;

        let readers = Readers::open(&base.read_only(true), options.read_connections)
            .await
            .map_err(open_error)?;
        let points = PointReaders::open(&path, &options).map_err(|source| StoreError::Sqlite {
            context: "opening the point-read connections",
            source: Arc::new(source),
        })?;

        let checkpointer = match options.checkpoint_interval_ms {
            0 => None,
            ms => Some(
                Checkpointer::start(&write_options, Duration::from_millis(ms))
                    .await
                    .map_err(open_error)?,
            ),
        };

        let (writer, jobs) = mpsc::channel(options.queue_depth.max(1));
        let writer_counters = Arc::new(WriterCounters::default());
        let writer_thread = writer::spawn(conn, jobs, options.max_batch, writer_counters.clone())
            .map_err(|err| StoreError::Open {
            path: path.clone(),
            source: Arc::new(sqlx::Error::Io(err)),
        })?;
        tracing::info!(path = %path.display(), ?options.synchronous, "opened SQLite store");
        Ok(SqliteStore {
            path,
            readers,
            points,
            writer,
            writer_counters,
            writer_thread: Mutex::new(Some(writer_thread)),
            checkpointer: Mutex::new(checkpointer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finish queued writes, then close every connection. Later calls fail
    /// with [`StoreError::Closed`].
    pub async fn close(&self) {
        if let Some(checkpointer) = self.checkpointer.lock().await.take() {
            checkpointer.stop().await;
        }
        let (done, finished) = oneshot::channel();
        if self.writer.send(Job::Shutdown(done)).await.is_ok() {
            let _ = finished.await;
        }
        if let Some(thread) = self.writer_thread.lock().await.take() {
            // It has answered the shutdown (or ended): joining is brief.
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("the SQLite writer thread failed");
            }
        }
        self.readers.close().await;
        self.points.close();
    }

    /// The point readers, after this task's turn: their reads never wait, so
    /// without this a task reading in a loop would never let others run.
    pub(super) async fn point(&self) -> &PointReaders {
        tokio::task::consume_budget().await;
        &self.points
    }

    /// Hand a CA or credential-policy write to the writer.
    pub(super) async fn submit_authority<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> AuthorityJob,
    ) -> StoreResult<T> {
        self.submit(|r| Job::Authority(Box::new(job(r)))).await
    }

    /// Hand a write to the writer and wait for its committed answer.
    pub(super) async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(job(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// The sqlx settings of every connection (`base`), and of the read-write
/// ones (migrations, checkpoints).
fn connect_options(
    path: &Path,
    options: &SqliteOptions,
) -> Result<(SqliteConnectOptions, SqliteConnectOptions), sqlx::Error> {
    let base = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .busy_timeout(Duration::from_millis(options.busy_timeout_ms))
        .pragma("cache_size", format!("-{}", options.cache_size_kib))
        .pragma("mmap_size", options.mmap_size_bytes.to_string())
        // Statement journals (multi-row statements inside a transaction)
        // stay in memory instead of being written to a temporary file.
        .pragma("temp_store", "memory")
        .disable_statement_logging();
    let write_options = base
        .clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .synchronous(match options.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        });
    Ok((base, write_options))
}

/// The writer's connection: read-write, with the settings sqlx gives the
/// migration and checkpoint connections (`write_options` in
/// [`SqliteStore::open`]: open flags, busy timeout, and the same pragmas in
/// the same order).
fn open_writer(
    path: &Path,
    options: &SqliteOptions,
    autocheckpoint: u32,
) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE,
    )?;
    conn.busy_timeout(Duration::from_millis(options.busy_timeout_ms))?;
    let synchronous = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous}; \
         PRAGMA cache_size = -{}; PRAGMA mmap_size = {}; PRAGMA temp_store = memory; \
         PRAGMA wal_autocheckpoint = {autocheckpoint};",
        options.cache_size_kib, options.mmap_size_bytes,
    ))?;
    conn.set_prepared_statement_cache_capacity(WRITER_PREPARED_STATEMENTS);
    Ok(conn)
}

/// Statements the writer keeps prepared: its few dozen single-row
/// statements and the shapes of its multi-row ones.
const WRITER_PREPARED_STATEMENTS: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    /// What a connection reports of each setting the writer depends on.
    const SETTINGS: [&str; 10] = [
        "journal_mode",
        "foreign_keys",
        "synchronous",
        "cache_size",
        "mmap_size",
        "temp_store",
        "wal_autocheckpoint",
        "busy_timeout",
        "locking_mode",
        "query_only",
    ];

    async fn sqlx_settings(options: &SqliteConnectOptions) -> Vec<String> {
        use sqlx::Row;
        let mut conn = SqliteConnection::connect_with(options).await.unwrap();
        let mut found = Vec::new();
        for name in SETTINGS {
            let row = sqlx::query(&format!("PRAGMA {name}"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            found.push(match row.try_get::<i64, _>(0) {
                Ok(number) => number.to_string(),
                Err(_) => row.get::<String, _>(0),
            });
        }
        conn.close().await.unwrap();
        found
    }

    fn writer_settings(conn: &rusqlite::Connection) -> Vec<String> {
        SETTINGS
            .iter()
            .map(|name| {
                conn.query_row(&format!("PRAGMA {name}"), [], |row| {
                    Ok(match row.get::<_, i64>(0) {
                        Ok(number) => number.to_string(),
                        Err(_) => row.get::<_, String>(0)?,
                    })
                })
                .unwrap()
            })
            .collect()
    }

    /// The writer's rusqlite connection is set up exactly like the sqlx
    /// read-write connection it replaced, whatever the options.
    #[tokio::test]
    async fn the_writer_connection_has_the_sqlx_write_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.db");
        let tuned = SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout_ms: 777,
            cache_size_kib: 1234,
            mmap_size_bytes: 1 << 20,
            checkpoint_interval_ms: 0,
            ..SqliteOptions::default()
        };
        for options in [SqliteOptions::default(), tuned] {
            let autocheckpoint = match options.checkpoint_interval_ms {
                0 => DEFAULT_AUTOCHECKPOINT_PAGES,
                _ => checkpoint::BACKSTOP_PAGES,
            };
            let (_, write_options) = connect_options(&path, &options).unwrap();
            let write_options =
                write_options.pragma("wal_autocheckpoint", autocheckpoint.to_string());
            let expected = sqlx_settings(&write_options).await;
            let writer = open_writer(&path, &options, autocheckpoint).unwrap();
            assert_eq!(writer_settings(&writer), expected, "{options:?}");
            assert_eq!(expected[0], "wal");
            assert_eq!(expected[7], options.busy_timeout_ms.to_string());
        }
    }
}
