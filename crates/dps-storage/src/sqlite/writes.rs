//! The statements of each write, run by the writer inside its transaction.
//! Every function leaves the database unchanged when it returns an error
//! (the writer rolls back to a savepoint or the whole transaction). They run
//! on the writer thread, on its own connection, one statement after another
//! without leaving the thread.

use chrono::{DateTime, Utc};
use dps_model::{
    ETag, IdScope, IndividualEnrollment, OperationKind, Precondition, RegistrationId, Tenant,
};
use rusqlite::{Connection, Row};

use super::bulk;
use super::rows::{BillingRow, RegistrationCommit};
use super::sql::{self, RecordTable};
use super::statements::{execute, failed, optional, violation, Violation};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules::{self, CreatedOnly, EnrollmentLike};
use crate::store::Written;
use crate::time;

/// A write that references the tenant failed: a foreign-key violation means
/// the tenant does not exist.
pub(super) fn tenant_fault<'a>(
    context: &'static str,
    id_scope: &'a IdScope,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |err| match violation(&err) {
        Some(Violation::ForeignKey) => StoreError::UnknownTenant {
            id_scope: id_scope.clone(),
        },
        _ => failed(context)(err),
    }
}

/// `(etag, body)` of a row read before writing it.
pub(super) fn etag_and_body(row: &Row<'_>) -> rusqlite::Result<(String, String)> {
    Ok((row.get(0)?, row.get(1)?))
}

pub(super) fn require_tenant(conn: &Connection, id_scope: &IdScope) -> StoreResult<()> {
    let found = optional(conn, sql::TENANT_EXISTS, &[&id_scope.key()], |_| Ok(()))
        .map_err(failed("looking up the tenant"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::UnknownTenant {
            id_scope: id_scope.clone(),
        }),
    }
}

pub(crate) fn insert_billing(conn: &Connection, row: &BillingRow) -> StoreResult<()> {
    execute(
        conn,
        sql::INSERT_BILLING,
        &[
            &row.scope_key.as_str(),
            &row.at_us,
            &row.kind,
            &row.subject.as_deref(),
        ],
    )
    .map_err(tenant_fault("storing a billing row", &row.id_scope))?;
    Ok(())
}

pub(crate) fn create_tenant(conn: &Connection, mut tenant: Tenant) -> StoreResult<Tenant> {
    let key = tenant.id_scope.key();
    let taken = |id: String| StoreError::AlreadyExists {
        entity: Entity::Tenant,
        id,
    };
    let by_scope = optional(conn, sql::TENANT_EXISTS, &[&key], |_| Ok(()))
        .map_err(failed("looking up the tenant"))?;
    if by_scope.is_some() {
        return Err(taken(tenant.id_scope.to_string()));
    }
    let by_name = optional(conn, sql::TENANT_SCOPE_OF_NAME, &[&tenant.name], |_| Ok(()))
        .map_err(failed("looking up the tenant name"))?;
    if by_name.is_some() {
        return Err(taken(tenant.name.clone()));
    }
    tenant.etag = ETag::generate();
    let body = rules::encode(Entity::Tenant, &key, &tenant)?;
    let name = tenant.name.clone();
    execute(
        conn,
        sql::INSERT_TENANT,
        &[&key, &tenant.name, &tenant.etag.as_str(), &body],
    )
    .map_err(|err| match violation(&err) {
        Some(Violation::Unique) => taken(name),
        _ => failed("creating a tenant")(err),
    })?;
    Ok(tenant)
}

pub(crate) fn replace_tenant(
    conn: &Connection,
    mut tenant: Tenant,
    precondition: Precondition,
) -> StoreResult<Tenant> {
    let key = tenant.id_scope.key();
    let current: Option<(String, String)> =
        optional(conn, sql::TENANT_FOR_WRITE, &[&key], etag_and_body)
            .map_err(failed("reading the tenant"))?;
    let Some((etag, body)) = current else {
        return Err(StoreError::NotFound {
            entity: Entity::Tenant,
            id: tenant.id_scope.to_string(),
        });
    };
    rules::check_put(
        Entity::Tenant,
        tenant.id_scope.as_str(),
        Some(&ETag::new(etag)),
        &precondition,
    )?;
    let stored: Tenant = rules::decode(Entity::Tenant, &key, &body)?;
    if stored.name != tenant.name {
        let owner = optional(conn, sql::TENANT_SCOPE_OF_NAME, &[&tenant.name], |_| Ok(()))
            .map_err(failed("looking up the tenant name"))?;
        if owner.is_some() {
            return Err(StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.name,
            });
        }
    }
    tenant.etag = ETag::generate();
    tenant.created = stored.created;
    let body = rules::encode(Entity::Tenant, &key, &tenant)?;
    let name = tenant.name.clone();
    execute(
        conn,
        sql::UPDATE_TENANT,
        &[&key, &tenant.name, &tenant.etag.as_str(), &body],
    )
    .map_err(|err| match violation(&err) {
        Some(Violation::Unique) => StoreError::AlreadyExists {
            entity: Entity::Tenant,
            id: name,
        },
        _ => failed("replacing a tenant")(err),
    })?;
    Ok(tenant)
}

pub(crate) fn delete_tenant(
    conn: &Connection,
    id_scope: &IdScope,
    precondition: Precondition,
) -> StoreResult<()> {
    let key = id_scope.key();
    let current: Option<(String, String)> =
        optional(conn, sql::TENANT_FOR_WRITE, &[&key], etag_and_body)
            .map_err(failed("reading the tenant"))?;
    let current = current.map(|(etag, _)| ETag::new(etag));
    rules::check_delete(
        Entity::Tenant,
        id_scope.as_str(),
        current.as_ref(),
        &precondition,
    )?;
    // Everything else goes with it: ON DELETE CASCADE.
    execute(conn, sql::DELETE_TENANT, &[&key]).map_err(failed("deleting a tenant"))?;
    Ok(())
}

pub(crate) fn put_record<T: EnrollmentLike>(
    conn: &Connection,
    table: &RecordTable,
    id_scope: &IdScope,
    mut record: T,
    precondition: Precondition,
) -> StoreResult<Written<T>> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let key = record.key();
    let current = current_record(conn, table, &scope_key, &key)?;
    let current_tag = current.as_ref().map(|(etag, _)| ETag::new(etag.as_str()));
    let outcome = rules::check_put(T::ENTITY, record.id(), current_tag.as_ref(), &precondition)?;
    let previous_created = match &current {
        Some((_, body)) => rules::decode::<CreatedOnly>(T::ENTITY, &key, body)?.created,
        None => None,
    };
    let now = time::now();
    rules::stamp(&mut record, previous_created, now);
    write_record(conn, table, &scope_key, &key, &record)?;
    let row = rules::billing(id_scope, T::billing_kind(outcome), record.id(), now);
    insert_billing(conn, &BillingRow::new(&row))?;
    Ok(Written { record, outcome })
}

/// The `(etag, body)` stored under a record's key, read before writing it.
fn current_record(
    conn: &Connection,
    table: &RecordTable,
    scope_key: &str,
    key: &str,
) -> StoreResult<Option<(String, String)>> {
    optional(
        conn,
        table.get_for_write,
        &[&scope_key, &key],
        etag_and_body,
    )
    .map_err(failed("reading the current record"))
}

fn write_record<T: EnrollmentLike>(
    conn: &Connection,
    table: &RecordTable,
    scope_key: &str,
    key: &str,
    record: &T,
) -> StoreResult<()> {
    let body = rules::encode(T::ENTITY, key, record)?;
    let etag = record.etag().map(ETag::as_str).unwrap_or_default();
    execute(conn, table.upsert, &[&scope_key, &key, &etag, &body])
        .map_err(failed("writing a record"))?;
    Ok(())
}

pub(crate) fn delete_record<T: EnrollmentLike>(
    conn: &Connection,
    table: &RecordTable,
    id_scope: &IdScope,
    id: &str,
    key: &str,
    precondition: Precondition,
) -> StoreResult<()> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let current = current_record(conn, table, &scope_key, key)?;
    let current_tag = current.map(|(etag, _)| ETag::new(etag));
    rules::check_delete(T::ENTITY, id, current_tag.as_ref(), &precondition)?;
    execute(conn, table.delete, &[&scope_key, &key]).map_err(failed("deleting a record"))?;
    let row = rules::billing(id_scope, T::BILLING[2], id, time::now());
    insert_billing(conn, &BillingRow::new(&row))
}

/// An enrollment delete that takes the device's registration record along,
/// billed once as `enrollmentDelete`.
pub(crate) fn delete_enrollment_and_registration(
    conn: &Connection,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    precondition: Precondition,
) -> StoreResult<()> {
    let key = registration_id.key();
    delete_record::<IndividualEnrollment>(
        conn,
        &sql::ENROLLMENTS,
        id_scope,
        registration_id.as_str(),
        &key,
        precondition,
    )?;
    execute(conn, sql::DELETE_REGISTRATION, &[&id_scope.key(), &key])
        .map_err(failed("deleting a registration record"))?;
    Ok(())
}

pub(crate) fn import_enrollments(
    conn: &Connection,
    id_scope: &IdScope,
    enrollments: Vec<IndividualEnrollment>,
) -> StoreResult<usize> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let now = time::now();
    let count = enrollments.len();
    let mut rows = Vec::with_capacity(bulk::IMPORT_ROWS_PER_STATEMENT);
    let mut enrollments = enrollments.into_iter().peekable();
    while let Some(mut enrollment) = enrollments.next() {
        rules::stamp_import(&mut enrollment, now);
        let key = enrollment.key();
        let body = rules::encode(Entity::Enrollment, &key, &enrollment)?;
        let etag = enrollment
            .etag
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default();
        rows.push((scope_key.clone(), key, etag, body));
        if rows.len() == bulk::IMPORT_ROWS_PER_STATEMENT || enrollments.peek().is_none() {
            bulk::upsert_enrollments(conn, &rows).map_err(failed("importing enrollments"))?;
            rows.clear();
        }
    }
    Ok(count)
}

/// Store one commit on its own (the writer's slow path; batches use
/// [`bulk::insert_fast`]).
pub(crate) fn commit_registration(
    conn: &Connection,
    commit: &RegistrationCommit,
) -> StoreResult<()> {
    let id_scope = &commit.id_scope;
    // Record, operation, billing row, superseded and issued certificates:
    // a refusal at any step (duplicate operation id or serial, unknown
    // tenant) rolls back the steps before it.
    execute(
        conn,
        sql::UPSERT_REGISTRATION,
        &[
            &commit.scope_key.as_str(),
            &commit.registration_key.as_str(),
            &commit.group_key.as_deref(),
            &commit.etag.as_str(),
            &commit.record_body.as_str(),
        ],
    )
    .map_err(tenant_fault("storing a registration record", id_scope))?;
    execute(
        conn,
        sql::INSERT_OPERATION,
        &[
            &commit.scope_key.as_str(),
            &commit.operation_id.as_str(),
            &commit.operation_created_us,
            &commit.operation_body.as_str(),
        ],
    )
    .map_err(|err| match violation(&err) {
        Some(Violation::Unique) => StoreError::AlreadyExists {
            entity: Entity::RegistrationOperation,
            id: commit.operation_id.clone(),
        },
        _ => tenant_fault("storing a registration operation", id_scope)(err),
    })?;
    if let Some(row) = &commit.billing {
        insert_billing(conn, row)?;
    }
    // Before the new certificate goes in, which must stay active.
    if let Some(at) = &commit.superseded_at {
        super::issued::supersede(conn, &commit.scope_key, &commit.registration_key, at)?;
    }
    if let Some(row) = &commit.certificate {
        super::issued::insert(
            conn,
            id_scope,
            &commit.scope_key,
            &commit.registration_key,
            row,
        )?;
    }
    Ok(())
}

pub(crate) fn delete_registration(
    conn: &Connection,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    precondition: Precondition,
) -> StoreResult<()> {
    require_tenant(conn, id_scope)?;
    let scope_key = id_scope.key();
    let key = registration_id.key();
    let current = optional(conn, sql::REGISTRATION_ETAG, &[&scope_key, &key], |row| {
        row.get::<_, String>(0)
    })
    .map_err(failed("reading the registration record"))?
    .map(ETag::new);
    rules::check_delete(
        Entity::Registration,
        registration_id.as_str(),
        current.as_ref(),
        &precondition,
    )?;
    execute(conn, sql::DELETE_REGISTRATION, &[&scope_key, &key])
        .map_err(failed("deleting a registration record"))?;
    let row = rules::billing(
        id_scope,
        OperationKind::RegistrationStateDelete,
        registration_id.as_str(),
        time::now(),
    );
    insert_billing(conn, &BillingRow::new(&row))
}

pub(crate) fn purge_operations(
    conn: &Connection,
    created_before: DateTime<Utc>,
) -> StoreResult<u64> {
    let done = execute(
        conn,
        sql::PURGE_OPERATIONS,
        &[&time::to_micros(created_before)],
    )
    .map_err(failed("purging registration operations"))?;
    Ok(u64::try_from(done).unwrap_or(u64::MAX))
}
