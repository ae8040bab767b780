//! Every statement the PostgreSQL backend runs.
//!
//! Only what PostgreSQL, CockroachDB and YugabyteDB all accept: `$n`
//! placeholders, `INSERT … ON CONFLICT`, data-modifying `WITH` clauses whose
//! output the outer statement reads, `UNNEST` of arrays, `LIMIT`. No
//! collations (keys are `BYTEA`, ordered byte-wise everywhere), no integer
//! division (the billing hour is stored), no sequences, no stored procedures.
//!
//! Each write is ONE statement wherever possible: the conditional change of a
//! record and its billing row are a data-modifying `WITH` feeding an `INSERT`,
//! so they commit together without an explicit transaction (one round trip),
//! and the number of rows the statement inserted tells whether the condition
//! (`etag = $n`, or "no row yet") held when the database applied it.

/// Statements of a table holding enrollment-like records keyed by (scope, id).
pub(crate) struct RecordTable {
    /// `$1` scope, `$2` key → `body`.
    pub(crate) get: &'static str,
    /// `$1` scope, `$2` key → one row when the tenant exists: `(etag, body)`,
    /// both NULL when the record does not.
    pub(crate) get_for_write: &'static str,
    /// `$1` scope, `$2` key, `$3` etag, `$4` body; billing `$5` at, `$6` hour,
    /// `$7` kind, `$8` subject. Inserts nothing when the record exists.
    pub(crate) insert_billed: &'static str,
    /// As `insert_billed`, plus `$9` the etag the record must still carry.
    pub(crate) update_billed: &'static str,
    /// `$1` scope, `$2` key, `$3` the etag the record must still carry;
    /// billing `$4` at, `$5` hour, `$6` kind, `$7` subject.
    pub(crate) delete_billed: &'static str,
    /// `$1` scope, `$2` keys, `$3` etags, `$4` bodies (arrays): upsert all.
    pub(crate) import: &'static str,
    /// `$1` scope, `$2` after key, `$3` limit → `(key, body)` in key order.
    pub(crate) page: &'static str,
    /// `$1` scope → every `(key, body)` in key order.
    pub(crate) all: &'static str,
}

macro_rules! record_table {
    ($table:literal, $key:literal) => {
        RecordTable {
            get: concat!(
                "SELECT body FROM ", $table, " WHERE scope_key = $1 AND ", $key, " = $2"
            ),
            get_for_write: concat!(
                "SELECT r.etag, r.body FROM tenants t LEFT JOIN ", $table,
                " r ON r.scope_key = t.scope_key AND r.", $key, " = $2 WHERE t.scope_key = $1"
            ),
            insert_billed: concat!(
                "WITH written AS (INSERT INTO ", $table, " (scope_key, ", $key,
                ", etag, body) VALUES ($1, $2, $3, $4) ON CONFLICT (scope_key, ", $key,
                ") DO NOTHING RETURNING 1 AS one) ",
                "INSERT INTO billing_operations (scope_key, at_us, hour_index, kind, subject) ",
                "SELECT $1, $5, $6, $7, $8 FROM written"
            ),
            update_billed: concat!(
                "WITH written AS (UPDATE ", $table, " SET etag = $3, body = $4 ",
                "WHERE scope_key = $1 AND ", $key, " = $2 AND etag = $9 RETURNING 1 AS one) ",
                "INSERT INTO billing_operations (scope_key, at_us, hour_index, kind, subject) ",
                "SELECT $1, $5, $6, $7, $8 FROM written"
            ),
            delete_billed: concat!(
                "WITH gone AS (DELETE FROM ", $table,
                " WHERE scope_key = $1 AND ", $key, " = $2 AND etag = $3 RETURNING 1 AS one) ",
                "INSERT INTO billing_operations (scope_key, at_us, hour_index, kind, subject) ",
                "SELECT $1, $4, $5, $6, $7 FROM gone"
            ),
            import: concat!(
                "INSERT INTO ", $table, " (scope_key, ", $key, ", etag, body) ",
                "SELECT $1, u.k, u.e, u.b FROM UNNEST($2::BYTEA[], $3::TEXT[], $4::TEXT[]) AS u (k, e, b) ",
                "ON CONFLICT (scope_key, ", $key, ") DO UPDATE SET etag = excluded.etag, body = excluded.body"
            ),
            page: concat!(
                "SELECT ", $key, ", body FROM ", $table, " WHERE scope_key = $1 AND ", $key,
                " > $2 ORDER BY ", $key, " LIMIT $3"
            ),
            all: concat!(
                "SELECT ", $key, ", body FROM ", $table, " WHERE scope_key = $1 ORDER BY ", $key
            ),
        }
    };
}

pub(crate) const ENROLLMENTS: RecordTable = record_table!("enrollments", "registration_key");
pub(crate) const GROUPS: RecordTable = record_table!("enrollment_groups", "group_key");

pub(crate) const TENANT_BY_SCOPE: &str = "SELECT body FROM tenants WHERE scope_key = $1";
pub(crate) const TENANT_BY_NAME: &str = "SELECT body FROM tenants WHERE name = $1";
/// Unordered: names are sorted byte-wise by the caller, as every backend does.
pub(crate) const TENANTS: &str = "SELECT name, body FROM tenants";
pub(crate) const TENANT_FOR_WRITE: &str = "SELECT etag, body FROM tenants WHERE scope_key = $1";
pub(crate) const TENANT_SCOPE_OF_NAME: &str = "SELECT scope_key FROM tenants WHERE name = $1";
pub(crate) const TENANT_ETAG: &str = "SELECT etag FROM tenants WHERE scope_key = $1";
pub(crate) const INSERT_TENANT: &str =
    "INSERT INTO tenants (scope_key, name, etag, body) VALUES ($1, $2, $3, $4)";
/// `$5`: the etag the tenant must still carry.
pub(crate) const UPDATE_TENANT: &str =
    "UPDATE tenants SET name = $2, etag = $3, body = $4 WHERE scope_key = $1 AND etag = $5";
/// `$2`: the etag the tenant must still carry.
pub(crate) const DELETE_TENANT: &str = "DELETE FROM tenants WHERE scope_key = $1 AND etag = $2";

pub(crate) const REGISTRATION: &str =
    "SELECT body FROM registrations WHERE scope_key = $1 AND registration_key = $2";
/// `$1` scope, `$2` key → the enrollment's `body` and the device's
/// registration record `body` (NULL when it has none).
pub(crate) const ENROLLMENT_WITH_REGISTRATION: &str = "SELECT e.body, r.body FROM enrollments e \
     LEFT JOIN registrations r ON r.scope_key = e.scope_key AND r.registration_key = e.registration_key \
     WHERE e.scope_key = $1 AND e.registration_key = $2";
/// One row when the tenant exists; `etag` NULL when the record does not.
pub(crate) const REGISTRATION_FOR_WRITE: &str = "SELECT r.etag FROM tenants t \
     LEFT JOIN registrations r ON r.scope_key = t.scope_key AND r.registration_key = $2 \
     WHERE t.scope_key = $1";
/// `$3`: the etag the record must still carry; billing `$4`..`$7`.
pub(crate) const DELETE_REGISTRATION_BILLED: &str = "WITH gone AS (DELETE FROM registrations \
     WHERE scope_key = $1 AND registration_key = $2 AND etag = $3 RETURNING 1 AS one) \
     INSERT INTO billing_operations (scope_key, at_us, hour_index, kind, subject) \
     SELECT $1, $4, $5, $6, $7 FROM gone";
pub(crate) const DELETE_REGISTRATION: &str =
    "DELETE FROM registrations WHERE scope_key = $1 AND registration_key = $2";
pub(crate) const REGISTRATIONS_OF_GROUP: &str = "SELECT registration_key, body FROM registrations \
     WHERE scope_key = $1 AND group_key = $2 AND registration_key > $3 \
     ORDER BY registration_key LIMIT $4";
pub(crate) const COUNT_REGISTRATIONS: &str =
    "SELECT COUNT(*) FROM registrations WHERE scope_key = $1";

// The pieces of a registration commit, composed below into one statement
// per case (macros, because `concat!` takes literals only).
macro_rules! upsert_record_cte {
    () => {
        "record AS (\
         INSERT INTO registrations (scope_key, registration_key, group_key, etag, body) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope_key, registration_key) DO UPDATE \
         SET group_key = excluded.group_key, etag = excluded.etag, body = excluded.body \
         RETURNING 1 AS one)"
    };
}
// The registration's active certificates superseded at `$at` (Azure form),
// status column and JSON body alike: no read first, and no round trip of
// its own, for the registrations that never had a certificate.
macro_rules! supersede_cte {
    ($at:literal) => {
        concat!(
            "superseded AS (UPDATE issued_certificates SET status = 'superseded', \
             body = (body::jsonb || jsonb_build_object('status', 'superseded', \
             'supersededDateTimeUtc', ",
            $at,
            "::text))::text \
             WHERE scope_key = $1 AND registration_key = $2 AND status = 'active')"
        )
    };
}
macro_rules! billed_tail {
    () => {
        "operation AS (INSERT INTO registration_operations (scope_key, operation_id, created_us, body) \
         VALUES ($1, $6, $7, $8) RETURNING 1 AS one) \
         INSERT INTO billing_operations (scope_key, at_us, hour_index, kind, subject) \
         SELECT $1, $9, $10, $11, $12 FROM record, operation"
    };
}
macro_rules! unbilled_tail {
    () => {
        "INSERT INTO registration_operations (scope_key, operation_id, created_us, body) \
         SELECT $1, $6, $7, $8 FROM record"
    };
}

/// The record (`$1` scope, `$2` key, `$3` group key, `$4` etag, `$5` body),
/// the operation (`$6` id, `$7` created, `$8` body) and the billing row
/// (`$9` at, `$10` hour, `$11` kind, `$12` subject), in one statement.
pub(crate) const COMMIT_REGISTRATION_BILLED: &str =
    concat!("WITH ", upsert_record_cte!(), ", ", billed_tail!());
/// As [`COMMIT_REGISTRATION_BILLED`], superseding the registration's active
/// certificates at `$13`.
pub(crate) const COMMIT_REGISTRATION_BILLED_SUPERSEDING: &str = concat!(
    "WITH ",
    upsert_record_cte!(),
    ", ",
    supersede_cte!("$13"),
    ", ",
    billed_tail!()
);
/// As [`COMMIT_REGISTRATION_BILLED`] without the billing row.
pub(crate) const COMMIT_REGISTRATION: &str =
    concat!("WITH ", upsert_record_cte!(), " ", unbilled_tail!());
/// As [`COMMIT_REGISTRATION`], superseding the registration's active
/// certificates at `$9`.
pub(crate) const COMMIT_REGISTRATION_SUPERSEDING: &str = concat!(
    "WITH ",
    upsert_record_cte!(),
    ", ",
    supersede_cte!("$9"),
    " ",
    unbilled_tail!()
);

pub(crate) const OPERATION: &str =
    "SELECT body FROM registration_operations WHERE scope_key = $1 AND operation_id = $2";
pub(crate) const PURGE_OPERATIONS: &str =
    "DELETE FROM registration_operations WHERE created_us < $1";

pub(crate) const INSERT_BILLING: &str = concat!(
    "INSERT INTO billing_operations (scope_key, at_us, hour_index, kind, subject) ",
    "VALUES ($1, $2, $3, $4, $5)"
);
pub(crate) const BILLING_BUCKETS: &str =
    "SELECT hour_index, kind, COUNT(*) FROM billing_operations \
     WHERE scope_key = $1 AND at_us >= $2 AND at_us < $3 GROUP BY hour_index, kind";
pub(crate) const BILLING_ROWS: &str = "SELECT at_us, kind, subject FROM billing_operations \
     WHERE scope_key = $1 AND at_us >= $2 AND at_us < $3 ORDER BY at_us LIMIT $4";

#[cfg(test)]
mod tests {
    use super::*;

    const BILLING_COLUMNS: &str =
        "billing_operations (scope_key, at_us, hour_index, kind, subject)";

    #[test]
    fn billing_columns_are_spelled_alike_everywhere() {
        for statement in [
            ENROLLMENTS.insert_billed,
            ENROLLMENTS.update_billed,
            ENROLLMENTS.delete_billed,
            GROUPS.insert_billed,
            DELETE_REGISTRATION_BILLED,
            COMMIT_REGISTRATION_BILLED,
            COMMIT_REGISTRATION_BILLED_SUPERSEDING,
            INSERT_BILLING,
        ] {
            assert!(statement.contains(BILLING_COLUMNS), "{statement}");
        }
    }
}
