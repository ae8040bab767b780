//! Every statement the SQL backend runs, in the dialect SQLite and PostgreSQL
//! share: `$n` placeholders, `INSERT … ON CONFLICT … DO UPDATE` upserts,
//! `LIMIT`, integer division. Keeping them here, apart from the code that runs
//! them, lets a PostgreSQL backend reuse them unchanged.

/// Statements of a table holding enrollment-like records keyed by (scope, id).
pub(crate) struct RecordTable {
    pub(crate) get: &'static str,
    pub(crate) get_for_write: &'static str,
    pub(crate) upsert: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) page: &'static str,
    pub(crate) all: &'static str,
}

pub(crate) const ENROLLMENTS: RecordTable = RecordTable {
    get: "SELECT body FROM enrollments WHERE scope_key = $1 AND registration_key = $2",
    get_for_write: "SELECT etag, body FROM enrollments WHERE scope_key = $1 AND registration_key = $2",
    upsert: "INSERT INTO enrollments (scope_key, registration_key, etag, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope_key, registration_key) DO UPDATE SET etag = excluded.etag, body = excluded.body",
    delete: "DELETE FROM enrollments WHERE scope_key = $1 AND registration_key = $2",
    page: "SELECT registration_key, body FROM enrollments WHERE scope_key = $1 AND registration_key > $2 \
           ORDER BY registration_key LIMIT $3",
    all: "SELECT registration_key, body FROM enrollments WHERE scope_key = $1 ORDER BY registration_key",
};

pub(crate) const GROUPS: RecordTable = RecordTable {
    get: "SELECT body FROM enrollment_groups WHERE scope_key = $1 AND group_key = $2",
    get_for_write: "SELECT etag, body FROM enrollment_groups WHERE scope_key = $1 AND group_key = $2",
    upsert: "INSERT INTO enrollment_groups (scope_key, group_key, etag, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope_key, group_key) DO UPDATE SET etag = excluded.etag, body = excluded.body",
    delete: "DELETE FROM enrollment_groups WHERE scope_key = $1 AND group_key = $2",
    page: "SELECT group_key, body FROM enrollment_groups WHERE scope_key = $1 AND group_key > $2 \
           ORDER BY group_key LIMIT $3",
    all: "SELECT group_key, body FROM enrollment_groups WHERE scope_key = $1 ORDER BY group_key",
};

pub(crate) const TENANT_BY_SCOPE: &str = "SELECT body FROM tenants WHERE scope_key = $1";
pub(crate) const TENANT_BY_NAME: &str = "SELECT body FROM tenants WHERE name = $1";
pub(crate) const TENANTS: &str = "SELECT scope_key, body FROM tenants ORDER BY name";
pub(crate) const TENANT_FOR_WRITE: &str = "SELECT etag, body FROM tenants WHERE scope_key = $1";
pub(crate) const TENANT_SCOPE_OF_NAME: &str = "SELECT scope_key FROM tenants WHERE name = $1";
pub(crate) const TENANT_EXISTS: &str = "SELECT 1 FROM tenants WHERE scope_key = $1";
pub(crate) const INSERT_TENANT: &str =
    "INSERT INTO tenants (scope_key, name, etag, body) VALUES ($1, $2, $3, $4)";
pub(crate) const UPDATE_TENANT: &str =
    "UPDATE tenants SET name = $2, etag = $3, body = $4 WHERE scope_key = $1";
pub(crate) const DELETE_TENANT: &str = "DELETE FROM tenants WHERE scope_key = $1";

pub(crate) const REGISTRATION: &str =
    "SELECT body FROM registrations WHERE scope_key = $1 AND registration_key = $2";
/// `$1` scope, `$2` key → the enrollment's `body` and the device's
/// registration record `body` (NULL when it has none).
pub(crate) const ENROLLMENT_WITH_REGISTRATION: &str = "SELECT e.body, r.body FROM enrollments e \
     LEFT JOIN registrations r ON r.scope_key = e.scope_key AND r.registration_key = e.registration_key \
     WHERE e.scope_key = $1 AND e.registration_key = $2";
pub(crate) const REGISTRATION_ETAG: &str =
    "SELECT etag FROM registrations WHERE scope_key = $1 AND registration_key = $2";
pub(crate) const UPSERT_REGISTRATION: &str =
    "INSERT INTO registrations (scope_key, registration_key, group_key, etag, body) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (scope_key, registration_key) DO UPDATE \
     SET group_key = excluded.group_key, etag = excluded.etag, body = excluded.body";
pub(crate) const DELETE_REGISTRATION: &str =
    "DELETE FROM registrations WHERE scope_key = $1 AND registration_key = $2";
pub(crate) const REGISTRATIONS_OF_GROUP: &str = "SELECT registration_key, body FROM registrations \
     WHERE scope_key = $1 AND group_key = $2 AND registration_key > $3 \
     ORDER BY registration_key LIMIT $4";
pub(crate) const COUNT_REGISTRATIONS: &str =
    "SELECT COUNT(*) FROM registrations WHERE scope_key = $1";

pub(crate) const INSERT_OPERATION: &str =
    "INSERT INTO registration_operations (scope_key, operation_id, created_us, body) VALUES ($1, $2, $3, $4)";
pub(crate) const OPERATION: &str =
    "SELECT body FROM registration_operations WHERE scope_key = $1 AND operation_id = $2";
pub(crate) const PURGE_OPERATIONS: &str =
    "DELETE FROM registration_operations WHERE created_us < $1";

pub(crate) const INSERT_BILLING: &str =
    "INSERT INTO billing_operations (scope_key, at_us, kind, subject) VALUES ($1, $2, $3, $4)";
/// `$4` is the hour length in microseconds.
pub(crate) const BILLING_BUCKETS: &str =
    "SELECT at_us / $4 AS hour, kind, COUNT(*) FROM billing_operations \
     WHERE scope_key = $1 AND at_us >= $2 AND at_us < $3 GROUP BY hour, kind";
pub(crate) const BILLING_ROWS: &str = "SELECT at_us, kind, subject FROM billing_operations \
     WHERE scope_key = $1 AND at_us >= $2 AND at_us < $3 ORDER BY at_us LIMIT $4";
