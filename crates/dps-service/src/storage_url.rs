//! Choosing the storage backend from a URL: `sqlite://path`, `memory://`,
//! `postgres://…` (or `postgresql://…`).
//!
//! A PostgreSQL URL is the libpq-style URL the database client understands
//! (`postgres://user:password@host:5432/db?sslmode=…&options=-c%20search_path%3Ddps`),
//! plus optional pool settings of dps, which are removed before the URL
//! reaches the client: `dps_max_connections`, `dps_min_connections`,
//! `dps_acquire_timeout_ms`, `dps_connect_timeout_ms` and
//! `dps_migration_lock` (`advisory` or `none`).

use std::sync::Arc;

use dps_storage::postgres::redact_url;
use dps_storage::{
    MemoryStore, MigrationLock, PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store,
};

use crate::ServiceError;

const POSTGRES_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];
const DPS_PREFIX: &str = "dps_";

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
    if POSTGRES_SCHEMES.iter().any(|s| url.starts_with(s)) {
        let (client_url, options) = postgres_options(url)?;
        let store = PostgresStore::connect(&client_url, options)
            .await
            .map_err(|e| ServiceError::Storage(format!("{}: {}", redact_url(url), chain(&e))))?;
        return Ok(Arc::new(store));
    }
    Err(ServiceError::Config {
        reason: format!(
            "unsupported storage URL {:?}: use sqlite://PATH, postgres://… or memory://",
            redact_url(url)
        ),
    })
}

/// The error and its causes, one line (the database's own message is the
/// useful part of a connection failure).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Split the `dps_*` settings off a PostgreSQL URL.
fn postgres_options(url: &str) -> Result<(String, PostgresOptions), ServiceError> {
    let mut options = PostgresOptions::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), options));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(setting) = name.strip_prefix(DPS_PREFIX) else {
            kept.push(pair);
            continue;
        };
        let invalid = |expected: &str| ServiceError::Config {
            reason: format!("storage URL setting {name}={value:?}: expected {expected}"),
        };
        let number = || value.parse::<u64>().map_err(|_| invalid("a number"));
        match setting {
            "max_connections" => {
                options.max_connections = u32::try_from(number()?)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid("1 to 4294967295"))?;
            }
            "min_connections" => {
                options.min_connections =
                    u32::try_from(number()?).map_err(|_| invalid("at most 4294967295"))?;
            }
            "acquire_timeout_ms" => options.acquire_timeout_ms = number()?,
            "connect_timeout_ms" => options.connect_timeout_ms = number()?,
            "migration_lock" => {
                options.migration_lock = match value {
                    "advisory" => MigrationLock::Advisory,
                    "none" => MigrationLock::None,
                    _ => return Err(invalid("advisory or none")),
                }
            }
            _ => {
                return Err(ServiceError::Config {
                    reason: format!(
                        "unknown storage URL setting {name}: known are dps_max_connections, \
                         dps_min_connections, dps_acquire_timeout_ms, dps_connect_timeout_ms, \
                         dps_migration_lock"
                    ),
                })
            }
        }
    }
    let client_url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((client_url, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dps_settings_are_taken_out_of_postgres_urls() {
        let (url, options) = postgres_options(
            "postgres://u:p@db:5432/dps?sslmode=disable&dps_max_connections=32&options=-c%20search_path%3Dx&dps_migration_lock=none",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db:5432/dps?sslmode=disable&options=-c%20search_path%3Dx"
        );
        assert_eq!(options.max_connections, 32);
        assert_eq!(options.migration_lock, MigrationLock::None);
        assert_eq!(
            options.acquire_timeout_ms,
            PostgresOptions::default().acquire_timeout_ms
        );

        let (url, options) =
            postgres_options("postgresql://db/dps?dps_acquire_timeout_ms=250").unwrap();
        assert_eq!(url, "postgresql://db/dps");
        assert_eq!(options.acquire_timeout_ms, 250);
        let (url, _) = postgres_options("postgres://db/dps").unwrap();
        assert_eq!(url, "postgres://db/dps");
    }

    #[test]
    fn bad_dps_settings_are_refused_by_name() {
        for (url, named) in [
            (
                "postgres://db/x?dps_max_connections=0",
                "dps_max_connections",
            ),
            (
                "postgres://db/x?dps_max_connections=lots",
                "dps_max_connections",
            ),
            (
                "postgres://db/x?dps_migration_lock=maybe",
                "dps_migration_lock",
            ),
            ("postgres://db/x?dps_pool=3", "dps_pool"),
        ] {
            let err = postgres_options(url).unwrap_err();
            assert!(err.to_string().contains(named), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn unreachable_postgres_fails_without_leaking_the_password() {
        let Err(err) =
            open("postgres://dps:s3cret@127.0.0.1:1/dps?dps_connect_timeout_ms=2000").await
        else {
            panic!("nothing listens on port 1");
        };
        let text = err.to_string();
        assert!(text.contains("postgres://dps@127.0.0.1:1/dps"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let Err(err) = open("mongodb://db").await else {
            panic!("not a storage URL");
        };
        assert!(err.to_string().contains("postgres://"), "{err}");
    }
}
