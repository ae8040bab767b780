//! Connection settings of the PostgreSQL store, and URLs safe to print.

use serde::{Deserialize, Serialize};

use super::MigrationLock;

/// Tuning of a [`PostgresStore`](super::PostgresStore); every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresOptions {
    /// Most connections this process opens (default 16). Size the server's
    /// `max_connections` for the sum over replicas.
    pub max_connections: u32,
    /// Connections kept open when idle (default 1).
    pub min_connections: u32,
    /// How long a call waits for a free connection, in ms (default 10000).
    pub acquire_timeout_ms: u64,
    /// How long the first connection may take, in ms (default 5000).
    pub connect_timeout_ms: u64,
    /// How replicas starting at once serialise their migrations (default `advisory`).
    pub migration_lock: MigrationLock,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            min_connections: 1,
            acquire_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            migration_lock: MigrationLock::Advisory,
        }
    }
}

/// `url` without its password (for logs and error messages).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => {
                    let user = user_info
                        .split_once(':')
                        .map_or(user_info, |(user, _)| user);
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    let query: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !name.eq_ignore_ascii_case("password") && !name.eq_ignore_ascii_case("sslpassword")
        })
        .collect();
    if query.is_empty() {
        base
    } else {
        format!("{base}?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://dps:s3cret@db.internal:5432/dps?sslmode=require"),
            "postgres://dps@db.internal:5432/dps?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://db/dps?password=s3cret&options=-c%20search_path%3Dx"),
            "postgresql://db/dps?options=-c%20search_path%3Dx"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/test"),
            "postgres://127.0.0.1/test"
        );
        assert_eq!(
            redact_url("postgres://u:p@w@host/db"),
            "postgres://u@host/db"
        );
    }

    #[test]
    fn options_deserialize_with_defaults() {
        let options: PostgresOptions = serde_json::from_value(
            serde_json::json!({"max_connections": 4, "migration_lock": "none"}),
        )
        .unwrap();
        assert_eq!(options.max_connections, 4);
        assert_eq!(options.migration_lock, MigrationLock::None);
        assert_eq!(options.acquire_timeout_ms, 10_000);
        assert!(serde_json::from_value::<PostgresOptions>(serde_json::json!({"max": 1})).is_err());
    }
}
