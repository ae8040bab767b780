//! Throw-away schemas on a test PostgreSQL server, for tests and benchmarks
//! (cargo feature `conformance`).
//!
//! [`ScratchSchema::create`] makes a fresh, empty schema `dps_t_<time>_<random>`
//! and hands out a URL whose sessions use it (`search_path`); dropping the
//! value drops the schema with everything in it. The server is
//! `$DPS_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`.
//!
//! Without a reachable server, `create` says so once on the terminal (past
//! the test harness's output capture) and returns `None`, so that callers can
//! pass without running: a newcomer without PostgreSQL still gets a green
//! `cargo test`. With `DPS_REQUIRE_POSTGRES=1` (CI machines that have one) an
//! unreachable server is a failure instead.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::{PostgresOptions, PostgresStore};

/// The variable naming the test server.
pub const URL_VARIABLE: &str = "DPS_TEST_POSTGRES_URL";
/// The variable that turns "no server" into a failure.
pub const REQUIRE_VARIABLE: &str = "DPS_REQUIRE_POSTGRES";
/// The test server when the variable is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Schemas left behind by killed test runs are dropped after this long.
const STALE_AFTER_SECS: u64 = 3600;
const PREFIX: &str = "dps_t_";

static SKIP_REPORTED: AtomicBool = AtomicBool::new(false);
static STALE_SWEPT: AtomicBool = AtomicBool::new(false);

/// A fresh schema that is dropped with this value.
#[derive(Debug)]
pub struct ScratchSchema {
    name: String,
    server_url: String,
    url: String,
}

impl ScratchSchema {
    /// The test server's URL.
    pub fn server_url() -> String {
        std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned())
    }

    /// Create a fresh schema, or `None` when the server cannot be reached
    /// (after telling why, once per process).
    ///
    /// # Panics
    /// When `DPS_REQUIRE_POSTGRES=1` and the server cannot be reached, or
    /// when the server refuses to create the schema.
    pub async fn create() -> Option<ScratchSchema> {
        let server_url = Self::server_url();
        let mut conn = match connect(&server_url).await {
            Ok(conn) => conn,
            Err(reason) => {
                let message = format!(
                    "PostgreSQL tests NOT RUN: cannot reach {} ({reason}). Start PostgreSQL or set \
                     {URL_VARIABLE} to run them; these tests pass without running only in this case.",
                    super::redact_url(&server_url)
                );
                if std::env::var(REQUIRE_VARIABLE).is_ok_and(|v| v == "1") {
                    panic!("{message} ({REQUIRE_VARIABLE}=1 requires them)");
                }
                if !SKIP_REPORTED.swap(true, Ordering::SeqCst) {
                    // Straight to the terminal: the harness captures `eprintln!`
                    // of passing tests.
                    let _ = writeln!(std::io::stderr(), "\n*** {message}\n");
                }
                return None;
            }
        };
        let now = unix_now();
        if !STALE_SWEPT.swap(true, Ordering::SeqCst) {
            sweep_stale(&mut conn, now).await;
        }
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{PREFIX}{now}_{}", &suffix[..12]);
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("creating schema {name}: {err}"));
        let _ = conn.close().await;
        let separator = if server_url.contains('?') { '&' } else { '?' };
        let url = format!("{server_url}{separator}options=-c%20search_path%3D{name}");
        Some(ScratchSchema {
            name,
            server_url,
            url,
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose sessions use this schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on this schema with a small pool (tests run side by side).
    ///
    /// # Panics
    /// When the store cannot be opened.
    pub async fn store(&self) -> PostgresStore {
        let options = PostgresOptions {
            max_connections: 4,
            min_connections: 0,
            ..PostgresOptions::default()
        };
        PostgresStore::connect(&self.url, options)
            .await
            .unwrap_or_else(|err| panic!("opening a store on {}: {err}", self.name))
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Drop may run inside an async runtime: do the work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let mut conn = connect(&server_url).await?;
                let statement = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                let drop = sqlx::query(&statement).execute(&mut conn);
                match tokio::time::timeout(Duration::from_secs(20), drop).await {
                    Ok(done) => done.map(|_| ()).map_err(|err| err.to_string()),
                    Err(_) => Err("timed out waiting for locks".to_owned()),
                }
            })
        })
        .join();
        if let Ok(Err(reason)) = dropped {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop scratch schema {}: {reason} (dropped by a later run after {STALE_AFTER_SECS} s)",
                self.name
            );
        }
    }
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("no answer within 3 s".to_owned()),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Drop scratch schemas of runs that were killed before they could.
async fn sweep_stale(conn: &mut PgConnection, now: u64) {
    let Ok(names) = sqlx::query_as::<_, (String,)>(
        "SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'dps\\_t\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    for (name,) in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| created + STALE_AFTER_SECS < now) {
            let quoted = name.replace('"', "\"\"");
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{quoted}\" CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
}
