//! Running statements on the writer's own SQLite connection (rusqlite, on
//! the writer thread): binding the shared `$n` statements of [`super::sql`],
//! multi-row statements of fixed shapes, and mapping refusals to the kinds
//! of constraint they violated.
//!
//! Every statement goes through the connection's cache of prepared
//! statements: the writer runs the same few dozen texts over and over, and
//! preparing one costs more than running it.

use std::sync::{Arc, OnceLock};

use rusqlite::ffi;
use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use crate::error::StoreError;

/// The parameters of one statement, `$1` first.
pub(crate) type Params<'a> = [&'a dyn ToSql];

/// The kind of constraint a refused statement violated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A unique index or primary key (a duplicate).
    Unique,
    /// A foreign key (the referenced row, e.g. the tenant, is missing).
    ForeignKey,
}

/// The constraint a failed statement violated, if that is why it failed
/// (SQLite's extended result codes, as sqlx maps them).
pub(crate) fn violation(err: &rusqlite::Error) -> Option<Violation> {
    match err {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                Some(Violation::Unique)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Violation::ForeignKey),
            _ => None,
        },
        _ => None,
    }
}

/// Wrap a failed statement with what the store was doing.
pub(crate) fn failed(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite {
        context,
        source: Arc::new(source),
    }
}

/// Bind `params` to `statement` by the number of each `$n` placeholder
/// (which the shared statements do not always use in order, and some use
/// twice); an anonymous `?` takes the parameter of its position.
fn bind(statement: &mut rusqlite::Statement<'_>, params: &Params<'_>) -> rusqlite::Result<()> {
    let count = statement.parameter_count();
    for index in 1..=count {
        let number = match statement.parameter_name(index) {
            Some(name) => name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()),
            None => Some(index),
        };
        let value = number
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| params.get(n))
            .ok_or(rusqlite::Error::InvalidParameterCount(params.len(), count))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

/// Run a statement that returns no rows; the number of rows it changed.
pub(crate) fn execute(
    conn: &Connection,
    sql: &str,
    params: &Params<'_>,
) -> rusqlite::Result<usize> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, params)?;
    statement.raw_execute()
}

/// Run a statement that returns no rows once per row of `params` (each
/// `columns` parameters, `$1` first), prepared once.
pub(crate) fn execute_each(
    conn: &Connection,
    sql: &str,
    columns: usize,
    params: &Params<'_>,
) -> rusqlite::Result<()> {
    if params.is_empty() {
        return Ok(());
    }
    let mut statement = conn.prepare_cached(sql)?;
    for row in params.chunks(columns) {
        bind(&mut statement, row)?;
        statement.raw_execute()?;
    }
    Ok(())
}

/// The first row a query returns, if any, read by `read`.
pub(crate) fn optional<T>(
    conn: &Connection,
    sql: &str,
    params: &Params<'_>,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, params)?;
    let mut rows = statement.raw_query();
    rows.next()?.map(read).transpose()
}

/// Every row a query returns, each read by `read`.
pub(crate) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: &Params<'_>,
    mut read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, params)?;
    let mut rows = statement.raw_query();
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(read(row)?);
    }
    Ok(found)
}

/// An `INSERT` of many rows in one statement, in a few fixed shapes: `n`
/// rows go in statements of the powers of two that sum to `n` (37 = 32 + 4
/// + 1), so that each shape is prepared once and then found in the cache.
pub(crate) struct MultiRow {
    /// Up to `VALUES`, e.g. `INSERT INTO t (a, b)`.
    head: &'static str,
    columns: usize,
    /// After the rows, e.g. an `ON CONFLICT` clause.
    tail: &'static str,
    /// The most rows of one statement (a power of two).
    max_rows: usize,
    /// The statement of 2^k rows at index k, made on first use.
    texts: OnceLock<Vec<String>>,
}

impl MultiRow {
    /// `max_rows` × `columns` must stay below SQLite's 32,766 parameters.
    pub(crate) const fn new(
        head: &'static str,
        columns: usize,
        tail: &'static str,
        max_rows: usize,
    ) -> Self {
        MultiRow {
            head,
            columns,
            tail,
            max_rows,
            texts: OnceLock::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn head(&self) -> &'static str {
        self.head
    }

    #[cfg(test)]
    pub(crate) fn tail(&self) -> &'static str {
        self.tail
    }

    fn texts(&self) -> &[String] {
        self.texts.get_or_init(|| {
            let mut texts = Vec::new();
            let mut rows = 1;
            while rows <= self.max_rows {
                let mut sql = String::from(self.head);
                push_values(&mut sql, rows, self.columns);
                sql.push_str(self.tail);
                texts.push(sql);
                rows *= 2;
            }
            texts
        })
    }

    /// Insert the rows whose parameters `params` holds, row after row.
    pub(crate) fn insert(&self, conn: &Connection, params: &Params<'_>) -> rusqlite::Result<()> {
        debug_assert_eq!(params.len() % self.columns, 0);
        let texts = self.texts();
        let mut rest = params;
        while !rest.is_empty() {
            let rows = rest.len() / self.columns;
            // The largest shape that fits: the highest bit of `rows`, capped.
            let shape = (usize::BITS - 1 - rows.leading_zeros()) as usize;
            let shape = shape.min(texts.len() - 1);
            let (now, later) = rest.split_at((1 << shape) * self.columns);
            let mut statement = conn.prepare_cached(&texts[shape])?;
            statement.execute(rusqlite::params_from_iter(now))?;
            rest = later;
        }
        Ok(())
    }
}

/// Append `rows` groups of `columns` anonymous placeholders. Anonymous `?`:
/// SQLite resolves each numbered or named one by a linear search over those
/// before it, quadratic in a statement of thousands.
pub(crate) fn push_values(sql: &mut String, rows: usize, columns: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL)")
            .unwrap();
        conn
    }

    #[test]
    fn placeholders() {
        let mut sql = String::new();
        push_values(&mut sql, 2, 3);
        assert_eq!(sql, " VALUES (?, ?, ?), (?, ?, ?)");
    }

    #[test]
    fn numbered_placeholders_bind_by_number() {
        let conn = memory();
        let (a, b) = (7_i64, "seven");
        execute(&conn, "INSERT INTO t (b, a) VALUES ($2, $1)", &[&a, &b]).unwrap();
        let found = optional(
            &conn,
            "SELECT b FROM t WHERE a = $1 AND $1 > 0",
            &[&a],
            |r| r.get::<_, String>(0),
        )
        .unwrap();
        assert_eq!(found.as_deref(), Some("seven"));
        let missing = execute(&conn, "INSERT INTO t (a, b) VALUES ($1, $2)", &[&a]);
        assert!(matches!(
            missing,
            Err(rusqlite::Error::InvalidParameterCount(1, 2))
        ));
    }

    #[test]
    fn multi_row_inserts_any_count_in_cached_shapes() {
        let conn = memory();
        let shape = MultiRow::new("INSERT INTO t (a, b)", 2, "", 8);
        let keys: Vec<i64> = (0..37).collect();
        let names: Vec<String> = keys.iter().map(|k| format!("row {k}")).collect();
        let mut params: Vec<&dyn ToSql> = Vec::new();
        for (key, name) in keys.iter().zip(&names) {
            params.push(key);
            params.push(name);
        }
        shape.insert(&conn, &params).unwrap();
        let stored = all(&conn, "SELECT a, b FROM t ORDER BY a", &[], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap();
        let expected: Vec<(i64, String)> = keys.into_iter().zip(names).collect();
        assert_eq!(stored, expected);
        // 1, 2, 4 and 8 rows: four shapes, whatever the count.
        assert_eq!(shape.texts().len(), 4);
    }

    #[test]
    fn constraint_violations_are_told_apart() {
        let conn = memory();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; CREATE TABLE c (a INTEGER NOT NULL REFERENCES t (a))",
        )
        .unwrap();
        execute(&conn, "INSERT INTO t (a, b) VALUES (1, 'x')", &[]).unwrap();
        let duplicate = execute(&conn, "INSERT INTO t (a, b) VALUES (1, 'y')", &[]).unwrap_err();
        assert_eq!(violation(&duplicate), Some(Violation::Unique));
        let orphan = execute(&conn, "INSERT INTO c (a) VALUES (2)", &[]).unwrap_err();
        assert_eq!(violation(&orphan), Some(Violation::ForeignKey));
        let null = execute(&conn, "INSERT INTO t (a, b) VALUES (3, NULL)", &[]).unwrap_err();
        assert_eq!(violation(&null), None);
    }
}
