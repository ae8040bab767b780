//! Multi-row statements: the writer's fast path for a batch of registration
//! commits and billing rows, and bulk imports.
//!
//! The statement text is generated per batch from the portable single-row
//! statements' shape (`INSERT … VALUES (…), (…)`). Several statements are sent
//! as one SQLite program, so a whole batch costs one round trip to the
//! connection's thread; that round trip, not SQLite, is what limits a
//! statement-at-a-time writer.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use super::rows::{BillingRow, RegistrationCommit};

/// Most jobs per generated program, keeping the bound parameters (≤ 16 per
/// job) well below SQLite's limit of 32,766.
pub(crate) const JOBS_PER_PROGRAM: usize = 1000;

/// Rows per statement of an import (4 parameters each).
pub(crate) const IMPORT_ROWS_PER_STATEMENT: usize = 500;

/// Append `rows` groups of `columns` placeholders.
/// Anonymous `?` placeholders: SQLite resolves each numbered or named one by
/// a linear search over those before it, quadratic in a statement of
/// thousands; the arguments of a multi-statement program are consumed in
/// order across its statements.
fn push_values(sql: &mut String, rows: usize, columns: usize) {
    for row in 0..rows {
        sql.push_str(if row == 0 { " VALUES (" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        sql.push(')');
    }
}

/// Store many commits and billing rows in one round trip. On error some of
/// the statements may have run: the caller rolls the transaction back.
pub(crate) async fn insert_fast(
    conn: &mut SqliteConnection,
    commits: &[&RegistrationCommit],
    billing: &[&BillingRow],
) -> Result<(), sqlx::Error> {
    // The last commit of a device wins, as if the commits ran one by one.
    let mut latest: HashMap<(&str, &str), usize> = HashMap::with_capacity(commits.len());
    for (i, c) in commits.iter().enumerate() {
        latest.insert((c.scope_key.as_str(), c.registration_key.as_str()), i);
    }
    let records: Vec<&RegistrationCommit> = commits
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            latest.get(&(c.scope_key.as_str(), c.registration_key.as_str())) == Some(i)
        })
        .map(|(_, c)| *c)
        .collect();
    // Assignments supersede their device's active certificates; the first
    // one of a device in the batch does it, as if the commits ran one by one.
    let mut superseding: HashMap<(&str, &str), &str> = HashMap::new();
    let mut supersedes: Vec<(&str, &str, &str)> = Vec::new();
    for c in commits {
        if let Some(at) = c.superseded_at.as_deref() {
            let device = (c.scope_key.as_str(), c.registration_key.as_str());
            if superseding.insert(device, at).is_none() {
                supersedes.push((device.0, device.1, at));
            }
        }
    }
    let rows: Vec<&BillingRow> = commits
        .iter()
        .filter_map(|c| c.billing.as_ref())
        .chain(billing.iter().copied())
        .collect();

    let mut sql = String::with_capacity(200 + 40 * (records.len() + commits.len() + rows.len()));
    if !records.is_empty() {
        sql.push_str(
            "INSERT INTO registrations (scope_key, registration_key, group_key, etag, body)",
        );
        push_values(&mut sql, records.len(), 5);
        sql.push_str(
            " ON CONFLICT (scope_key, registration_key) DO UPDATE \
             SET group_key = excluded.group_key, etag = excluded.etag, body = excluded.body;\n",
        );
        sql.push_str(
            "INSERT INTO registration_operations (scope_key, operation_id, created_us, body)",
        );
        push_values(&mut sql, commits.len(), 4);
        sql.push_str(";\n");
    }
    if !supersedes.is_empty() {
        // One statement probing the by-registration index per device.
        sql.push_str(
            "UPDATE issued_certificates SET status = 'superseded', \
             body = json_set(body, '$.status', 'superseded', '$.supersededDateTimeUtc', s.column3) \
             FROM (",
        );
        push_values(&mut sql, supersedes.len(), 3);
        sql.push_str(
            ") AS s WHERE issued_certificates.scope_key = s.column1 \
             AND issued_certificates.registration_key = s.column2 \
             AND issued_certificates.status = 'active';\n",
        );
    }
    if !rows.is_empty() {
        sql.push_str("INSERT INTO billing_operations (scope_key, at_us, kind, subject)");
        push_values(&mut sql, rows.len(), 4);
        sql.push_str(";\n");
    }

    let mut query = sqlx::query(&sql).persistent(false);
    for r in &records {
        query = query
            .bind(r.scope_key.as_str())
            .bind(r.registration_key.as_str())
            .bind(r.group_key.as_deref())
            .bind(r.etag.as_str())
            .bind(r.record_body.as_str());
    }
    if !records.is_empty() {
        for c in commits {
            query = query
                .bind(c.scope_key.as_str())
                .bind(c.operation_id.as_str())
                .bind(c.operation_created_us)
                .bind(c.operation_body.as_str());
        }
    }
    for (scope_key, registration_key, at) in &supersedes {
        query = query.bind(*scope_key).bind(*registration_key).bind(*at);
    }
    for row in &rows {
        query = query
            .bind(row.scope_key.as_str())
            .bind(row.at_us)
            .bind(row.kind)
            .bind(row.subject.as_deref());
    }
    query.execute(&mut *conn).await.map(|_| ())
}

/// One import statement: create or replace `rows` of `(scope_key, key, etag,
/// body)`; within the rows, the last one of a key wins.
pub(crate) async fn upsert_enrollments(
    conn: &mut SqliteConnection,
    rows: &[(String, String, String, String)],
) -> Result<(), sqlx::Error> {
    let mut latest: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        latest.insert(row.1.as_str(), i);
    }
    let rows: Vec<_> = rows
        .iter()
        .enumerate()
        .filter(|(i, row)| latest.get(row.1.as_str()) == Some(i))
        .map(|(_, row)| row)
        .collect();
    let mut sql = String::from("INSERT INTO enrollments (scope_key, registration_key, etag, body)");
    push_values(&mut sql, rows.len(), 4);
    sql.push_str(
        " ON CONFLICT (scope_key, registration_key) DO UPDATE SET etag = excluded.etag, body = excluded.body",
    );
    // Full-size statements repeat: let SQLite keep that one prepared.
    let mut query = sqlx::query(&sql).persistent(rows.len() == IMPORT_ROWS_PER_STATEMENT);
    for (scope_key, key, etag, body) in rows {
        query = query.bind(scope_key).bind(key).bind(etag).bind(body);
    }
    query.execute(&mut *conn).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut sql = String::new();
        push_values(&mut sql, 2, 3);
        assert_eq!(sql, " VALUES (?, ?, ?), (?, ?, ?)");
    }
}
