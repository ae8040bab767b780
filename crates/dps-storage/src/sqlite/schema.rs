//! The schema, shipped inside the binary as ordered migrations.
//!
//! Each migration runs once, in its own transaction, and is recorded in
//! `schema_migrations`; a database newer than this build is refused rather
//! than misread. Never edit a released migration: append a new one.
//!
//! The DDL uses the subset SQLite and PostgreSQL share (`TEXT`, `BIGINT`,
//! composite primary keys, `REFERENCES … ON DELETE CASCADE`). Times are
//! microseconds since the Unix epoch in `BIGINT` columns; records are JSON text
//! in `body` next to the key columns lookups, paging and etag checks need.
//! Keys are ASCII lower-case, so SQLite's byte-wise ordering is the listing
//! order (the PostgreSQL backend gets the same order from `BYTEA` keys).

use sqlx::{Connection, SqliteConnection};

use crate::error::{StoreError, StoreResult};
use crate::time;

/// One schema step.
pub(crate) struct Migration {
    /// Position in the sequence, from 1, without gaps.
    pub(crate) version: i64,
    /// What it does.
    pub(crate) name: &'static str,
    /// Statements separated by `;`.
    pub(crate) sql: &'static str,
}

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenants, enrollments, groups, registrations, operations, billing",
        sql: r#"
CREATE TABLE tenants (
    scope_key TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    etag TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE enrollments (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    registration_key TEXT NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope_key, registration_key)
);

CREATE TABLE enrollment_groups (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    group_key TEXT NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope_key, group_key)
);

CREATE TABLE registrations (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    registration_key TEXT NOT NULL,
    group_key TEXT,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope_key, registration_key)
);
CREATE INDEX registrations_by_group ON registrations (scope_key, group_key, registration_key);

CREATE TABLE registration_operations (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    operation_id TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope_key, operation_id)
);
CREATE INDEX registration_operations_by_age ON registration_operations (created_us);

CREATE TABLE billing_operations (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    at_us BIGINT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT
);
CREATE INDEX billing_operations_by_time ON billing_operations (scope_key, at_us, kind);
"#,
    },
    Migration {
        version: 2,
        name: "certificate authorities and credential policies",
        // Names are case-sensitive keys (kept as written). The policy's foreign
        // key to its CA is a backstop: the writes check it first to answer with
        // typed errors.
        sql: r#"
CREATE TABLE certificate_authorities (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    name TEXT NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope_key, name)
);

CREATE TABLE credential_policies (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    name TEXT NOT NULL,
    authority_name TEXT NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope_key, name),
    FOREIGN KEY (scope_key, authority_name)
        REFERENCES certificate_authorities (scope_key, name)
);
CREATE INDEX credential_policies_by_authority ON credential_policies (scope_key, authority_name);
"#,
    },
    Migration {
        version: 3,
        name: "issued certificates",
        // Serial numbers are unique per CA (the primary key). No foreign key
        // to the registration: the record may be deleted while its
        // certificates stay listed in the CA's CRL.
        sql: r#"
CREATE TABLE issued_certificates (
    scope_key TEXT NOT NULL REFERENCES tenants (scope_key) ON DELETE CASCADE,
    authority_name TEXT NOT NULL,
    serial TEXT NOT NULL,
    registration_key TEXT NOT NULL,
    status TEXT NOT NULL,
    issued_us BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (scope_key, authority_name, serial)
);
CREATE INDEX issued_certificates_by_registration ON issued_certificates (scope_key, registration_key);
CREATE INDEX issued_certificates_by_status ON issued_certificates (scope_key, authority_name, status);
"#,
    },
];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    applied_us BIGINT NOT NULL
)";

/// Bring the schema up to the newest version; returns the version reached.
pub(crate) async fn migrate(conn: &mut SqliteConnection) -> StoreResult<i64> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    sqlx::query(CREATE_MIGRATIONS_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("creating schema_migrations"))?;
    let (current,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::database("reading the schema version"))?;
    let current = current.unwrap_or(0);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        apply(conn, migration)
            .await
            .map_err(|source| StoreError::Migration {
                version: migration.version,
                name: migration.name,
                source: std::sync::Arc::new(source),
            })?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied schema migration"
        );
    }
    Ok(known)
}

async fn apply(conn: &mut SqliteConnection, migration: &Migration) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    for statement in migration
        .sql
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_us) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(time::to_micros(time::now()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }
}
