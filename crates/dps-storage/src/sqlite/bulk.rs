//! Multi-row statements: the writer's fast path for a batch of registration
//! commits and billing rows, and bulk imports.
//!
//! Rows go in statements of a few fixed shapes ([`MultiRow`]), so that each
//! shape is prepared once and found in the connection's statement cache by
//! every later batch; a batch of `n` rows runs about log2(n) statements per
//! table.

use std::collections::{HashMap, HashSet};

use rusqlite::types::ToSql;
use rusqlite::Connection;

use super::issued;
use super::rows::{BillingRow, RegistrationCommit};
use super::statements::{self, MultiRow};

/// Rows per statement of an import (4 parameters each): the largest shape.
pub(crate) const IMPORT_ROWS_PER_STATEMENT: usize = 512;

/// Most rows of one fast-path statement (≤ 5 parameters each).
const FAST_ROWS_PER_STATEMENT: usize = 64;

static REGISTRATIONS: MultiRow = MultiRow::new(
    "INSERT INTO registrations (scope_key, registration_key, group_key, etag, body)",
    5,
    " ON CONFLICT (scope_key, registration_key) DO UPDATE \
     SET group_key = excluded.group_key, etag = excluded.etag, body = excluded.body",
    FAST_ROWS_PER_STATEMENT,
);

static OPERATIONS: MultiRow = MultiRow::new(
    "INSERT INTO registration_operations (scope_key, operation_id, created_us, body)",
    4,
    "",
    FAST_ROWS_PER_STATEMENT,
);

static BILLING: MultiRow = MultiRow::new(
    "INSERT INTO billing_operations (scope_key, at_us, kind, subject)",
    4,
    "",
    FAST_ROWS_PER_STATEMENT,
);

static ENROLLMENTS: MultiRow = MultiRow::new(
    "INSERT INTO enrollments (scope_key, registration_key, etag, body)",
    4,
    " ON CONFLICT (scope_key, registration_key) DO UPDATE SET etag = excluded.etag, body = excluded.body",
    IMPORT_ROWS_PER_STATEMENT,
);

/// Store many commits and billing rows. On error some of the statements may
/// have run: the caller rolls the transaction back.
pub(crate) fn insert_fast(
    conn: &Connection,
    commits: &[&RegistrationCommit],
    billing: &[&BillingRow],
) -> rusqlite::Result<()> {
    // The last commit of a device wins, as if the commits ran one by one.
    let mut latest: HashMap<(&str, &str), usize> = HashMap::with_capacity(commits.len());
    for (i, c) in commits.iter().enumerate() {
        latest.insert((c.scope_key.as_str(), c.registration_key.as_str()), i);
    }
    let mut params: Vec<&dyn ToSql> = Vec::with_capacity(5 * commits.len());
    for (i, c) in commits.iter().enumerate() {
        if latest.get(&(c.scope_key.as_str(), c.registration_key.as_str())) == Some(&i) {
            params.extend([
                &c.scope_key as &dyn ToSql,
                &c.registration_key,
                &c.group_key,
                &c.etag,
                &c.record_body,
            ]);
        }
    }
    REGISTRATIONS.insert(conn, &params)?;

    params.clear();
    for c in commits {
        params.extend([
            &c.scope_key as &dyn ToSql,
            &c.operation_id,
            &c.operation_created_us,
            &c.operation_body,
        ]);
    }
    OPERATIONS.insert(conn, &params)?;

    // Assignments supersede their device's active certificates; the first
    // one of a device in the batch does it, as if the commits ran one by one.
    // Rare (a device that had a certificate): one indexed update each.
    let mut superseded = HashSet::new();
    for c in commits {
        if let Some(at) = c.superseded_at.as_deref() {
            let device = (c.scope_key.as_str(), c.registration_key.as_str());
            if superseded.insert(device) {
                statements::execute(conn, issued::SUPERSEDE, &[&device.0, &device.1, &at])?;
            }
        }
    }

    params.clear();
    let rows = commits
        .iter()
        .filter_map(|c| c.billing.as_ref())
        .chain(billing.iter().copied());
    for row in rows {
        params.extend([
            &row.scope_key as &dyn ToSql,
            &row.at_us,
            &row.kind,
            &row.subject,
        ]);
    }
    BILLING.insert(conn, &params)
}

/// Create or replace `rows` of `(scope_key, key, etag, body)`; within the
/// rows, the last one of a key wins.
pub(crate) fn upsert_enrollments(
    conn: &Connection,
    rows: &[(String, String, String, String)],
) -> rusqlite::Result<()> {
    let mut latest: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        latest.insert(row.1.as_str(), i);
    }
    let mut params: Vec<&dyn ToSql> = Vec::with_capacity(4 * rows.len());
    for (i, (scope_key, key, etag, body)) in rows.iter().enumerate() {
        if latest.get(key.as_str()) == Some(&i) {
            params.extend([scope_key as &dyn ToSql, key, etag, body]);
        }
    }
    ENROLLMENTS.insert(conn, &params)
}

#[cfg(test)]
mod tests {
    use super::super::sql;
    use super::*;

    /// The slow path's single-row statements and the multi-row ones agree
    /// on the table, the columns and the conflict clause.
    #[test]
    fn shapes_match_the_single_row_statements() {
        for (multi, single) in [
            (&REGISTRATIONS, sql::UPSERT_REGISTRATION),
            (&OPERATIONS, sql::INSERT_OPERATION),
            (&BILLING, sql::INSERT_BILLING),
            (&ENROLLMENTS, sql::ENROLLMENTS.upsert),
        ] {
            assert!(single.starts_with(multi.head()), "{single}");
            assert!(single.ends_with(multi.tail()), "{single}");
        }
    }
}
