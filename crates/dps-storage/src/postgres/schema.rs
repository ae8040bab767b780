//! The PostgreSQL schema, shipped inside the binary as ordered migrations.
//!
//! Each migration runs once, in its own transaction (its DDL first, then its
//! row in `schema_migrations`), and a database newer than this build is
//! refused. Several replicas may start at once against one database:
//!
//! * [`MigrationLock::Advisory`] (default): the migrating connection holds a
//!   session advisory lock (`pg_advisory_lock`, keyed by the schema name)
//!   while it reads the version and applies what is missing, so the others
//!   wait and then find nothing to do.
//! * [`MigrationLock::None`], for engines without advisory locks
//!   (CockroachDB): replicas may race; a migration whose transaction fails is
//!   re-checked, and when `schema_migrations` shows that another replica
//!   applied it, the loser carries on. Two transactions creating the same
//!   table cannot both commit, so the schema is applied exactly once.
//!
//! Keys are `BYTEA` (the lower-case id's bytes) so that every engine orders
//! them byte-wise, like the other backends, without collation support; records
//! are JSON text in `body`; times are microseconds since the Unix epoch in
//! `BIGINT` columns, and billing rows carry their hour index so the meter
//! groups without integer division (whose result type differs by engine).

use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

use crate::error::{StoreError, StoreResult};
use crate::time;

/// How replicas starting at once keep out of each other's migrations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationLock {
    /// A PostgreSQL session advisory lock around the whole migration.
    #[default]
    Advisory,
    /// No lock: a failed migration is re-checked against `schema_migrations`
    /// (for engines without advisory locks, e.g. CockroachDB).
    None,
}

/// One schema step.
pub(crate) struct Migration {
    /// Position in the sequence, from 1, without gaps.
    pub(crate) version: i64,
    /// What it does.
    pub(crate) name: &'static str,
    /// Statements separated by `;`.
    pub(crate) sql: &'static str,
}

/// Every migration, oldest first. Never edit a released one: append.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenants, enrollments, groups, registrations, operations, billing",
        sql: r#"
CREATE TABLE tenants (
    scope_key BYTEA NOT NULL,
    name TEXT NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT tenants_pk PRIMARY KEY (scope_key),
    CONSTRAINT tenants_name_unique UNIQUE (name)
);

CREATE TABLE enrollments (
    scope_key BYTEA NOT NULL,
    registration_key BYTEA NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT enrollments_pk PRIMARY KEY (scope_key, registration_key),
    CONSTRAINT enrollments_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE
);

CREATE TABLE enrollment_groups (
    scope_key BYTEA NOT NULL,
    group_key BYTEA NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT enrollment_groups_pk PRIMARY KEY (scope_key, group_key),
    CONSTRAINT enrollment_groups_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE
);

CREATE TABLE registrations (
    scope_key BYTEA NOT NULL,
    registration_key BYTEA NOT NULL,
    group_key BYTEA,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT registrations_pk PRIMARY KEY (scope_key, registration_key),
    CONSTRAINT registrations_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE
);
CREATE INDEX registrations_by_group ON registrations (scope_key, group_key, registration_key);

CREATE TABLE registration_operations (
    scope_key BYTEA NOT NULL,
    operation_id TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT registration_operations_pk PRIMARY KEY (scope_key, operation_id),
    CONSTRAINT registration_operations_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE
);
CREATE INDEX registration_operations_by_age ON registration_operations (created_us);

CREATE TABLE billing_operations (
    scope_key BYTEA NOT NULL,
    at_us BIGINT NOT NULL,
    hour_index BIGINT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    CONSTRAINT billing_operations_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE
);
CREATE INDEX billing_operations_by_time ON billing_operations (scope_key, at_us)
"#,
    },
    Migration {
        version: 2,
        name: "certificate authorities and credential policies",
        // Names are case-sensitive keys, stored as their bytes. The policy's
        // foreign key to its CA is a backstop: the writes check it first (under
        // row locks) to answer with typed errors.
        sql: r#"
CREATE TABLE certificate_authorities (
    scope_key BYTEA NOT NULL,
    name BYTEA NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT certificate_authorities_pk PRIMARY KEY (scope_key, name),
    CONSTRAINT certificate_authorities_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE
);

CREATE TABLE credential_policies (
    scope_key BYTEA NOT NULL,
    name BYTEA NOT NULL,
    authority_name BYTEA NOT NULL,
    etag TEXT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT credential_policies_pk PRIMARY KEY (scope_key, name),
    CONSTRAINT credential_policies_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE,
    CONSTRAINT credential_policies_authority_fk FOREIGN KEY (scope_key, authority_name)
        REFERENCES certificate_authorities (scope_key, name)
);
CREATE INDEX credential_policies_by_authority ON credential_policies (scope_key, authority_name)
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
    scope_key BYTEA NOT NULL,
    authority_name BYTEA NOT NULL,
    serial BYTEA NOT NULL,
    registration_key BYTEA NOT NULL,
    status TEXT NOT NULL,
    issued_us BIGINT NOT NULL,
    body TEXT NOT NULL,
    CONSTRAINT issued_certificates_pk PRIMARY KEY (scope_key, authority_name, serial),
    CONSTRAINT issued_certificates_tenant_fk FOREIGN KEY (scope_key)
        REFERENCES tenants (scope_key) ON DELETE CASCADE
);
CREATE INDEX issued_certificates_by_registration ON issued_certificates (scope_key, registration_key);
CREATE INDEX issued_certificates_by_status ON issued_certificates (scope_key, authority_name, status)
"#,
    },
];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    applied_us BIGINT NOT NULL
)";

/// The newest version this build ships.
pub(crate) fn newest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Bring the schema up to the newest version; returns the version reached.
pub(crate) async fn migrate(conn: &mut PgConnection, lock: MigrationLock) -> StoreResult<i64> {
    let key = match lock {
        MigrationLock::Advisory => {
            let key = lock_key(conn).await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::database("taking the migration advisory lock"))?;
            Some(key)
        }
        MigrationLock::None => None,
    };
    let migrated = migrate_locked(conn).await;
    if let Some(key) = key {
        // Closing the connection would release it too; unlocking keeps the
        // other replicas from waiting for that.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await;
    }
    migrated
}

async fn migrate_locked(conn: &mut PgConnection) -> StoreResult<i64> {
    let known = newest();
    create_migrations_table(conn).await?;
    let current = current_version(conn).await?;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        match apply(conn, migration).await {
            Ok(()) => {
                tracing::info!(
                    version = migration.version,
                    name = migration.name,
                    "applied schema migration"
                );
            }
            Err(source) => {
                // Another replica may have applied it meanwhile: then this
                // transaction failed on its tables or on its version row.
                let now_at = current_version(conn).await?;
                if now_at < migration.version {
                    return Err(StoreError::Migration {
                        version: migration.version,
                        name: migration.name,
                        source: std::sync::Arc::new(source),
                    });
                }
                tracing::info!(
                    version = migration.version,
                    "schema migration applied by another replica"
                );
            }
        }
    }
    Ok(known)
}

async fn create_migrations_table(conn: &mut PgConnection) -> StoreResult<()> {
    // `IF NOT EXISTS` is not atomic in PostgreSQL: two sessions creating the
    // table at once may see one of them fail on the catalog's unique index.
    // The table exists afterwards either way, so one retry settles it.
    let mut attempt = 0;
    loop {
        match sqlx::query(CREATE_MIGRATIONS_TABLE)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => return Ok(()),
            Err(_) if attempt < 2 => attempt += 1,
            Err(err) => return Err(StoreError::database("creating schema_migrations")(err)),
        }
    }
}

/// The version the database is at (0 when empty).
pub(crate) async fn current_version(conn: &mut PgConnection) -> StoreResult<i64> {
    let (current,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::database("reading the schema version"))?;
    Ok(current.unwrap_or(0))
}

async fn apply(conn: &mut PgConnection, migration: &Migration) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    for statement in migration
        .sql
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    // After the DDL: CockroachDB refuses schema changes that follow a write
    // in the same transaction.
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_us) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(time::to_micros(time::now()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The advisory lock key of the schema being migrated: replicas sharing a
/// schema share the key; scratch schemas of parallel tests do not.
async fn lock_key(conn: &mut PgConnection) -> StoreResult<i64> {
    let (schema,): (Option<String>,) = sqlx::query_as("SELECT current_schema()")
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::database("reading the current schema"))?;
    Ok(advisory_key(schema.as_deref().unwrap_or("")))
}

/// FNV-1a of `dps-storage migrations:{schema}`, as the signed key
/// `pg_advisory_lock` takes.
pub(crate) fn advisory_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "dps-storage migrations:".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
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

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_eq!(advisory_key("public"), advisory_key("public"));
        assert_ne!(advisory_key("public"), advisory_key("t_1"));
    }

    #[test]
    fn schema_uses_no_collation_and_no_integer_division() {
        for m in MIGRATIONS {
            assert!(!m.sql.to_ascii_uppercase().contains("COLLATE"));
            assert!(!m.sql.contains('/'));
        }
    }
}
