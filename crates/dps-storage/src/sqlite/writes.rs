//! The statements of each write, run by the writer inside its transaction.
//! Every function leaves the database unchanged when it returns an error
//! (the writer rolls back to a savepoint or the whole transaction).

use chrono::{DateTime, Utc};
use dps_model::{
    ETag, IdScope, IndividualEnrollment, OperationKind, Precondition, RegistrationId, Tenant,
};
use sqlx::error::ErrorKind;
use sqlx::SqliteConnection;

use super::bulk;
use super::rows::{BillingRow, RegistrationCommit};
use super::sql::{self, RecordTable};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules::{self, CreatedOnly, EnrollmentLike};
use crate::store::Written;
use crate::time;

/// The kind of constraint a failed statement violated, if that is why it failed.
pub(super) fn violation(err: &sqlx::Error) -> Option<ErrorKind> {
    match err {
        sqlx::Error::Database(db) => Some(db.kind()),
        _ => None,
    }
}

/// A write that references the tenant failed: a foreign-key violation means
/// the tenant does not exist.
pub(super) fn tenant_fault<'a>(
    context: &'static str,
    id_scope: &'a IdScope,
) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
    move |err| match violation(&err) {
        Some(ErrorKind::ForeignKeyViolation) => StoreError::UnknownTenant {
            id_scope: id_scope.clone(),
        },
        _ => StoreError::database(context)(err),
    }
}

pub(super) async fn require_tenant(
    conn: &mut SqliteConnection,
    id_scope: &IdScope,
) -> StoreResult<()> {
    let found: Option<(i64,)> = sqlx::query_as(sql::TENANT_EXISTS)
        .bind(id_scope.key())
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("looking up the tenant"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::UnknownTenant {
            id_scope: id_scope.clone(),
        }),
    }
}

pub(crate) async fn insert_billing(
    conn: &mut SqliteConnection,
    row: &BillingRow,
) -> StoreResult<()> {
    sqlx::query(sql::INSERT_BILLING)
        .bind(row.scope_key.as_str())
        .bind(row.at_us)
        .bind(row.kind)
        .bind(row.subject.as_deref())
        .execute(&mut *conn)
        .await
        .map_err(tenant_fault("storing a billing row", &row.id_scope))?;
    Ok(())
}

pub(crate) async fn create_tenant(
    conn: &mut SqliteConnection,
    mut tenant: Tenant,
) -> StoreResult<Tenant> {
    let key = tenant.id_scope.key();
    let taken = |id: String| StoreError::AlreadyExists {
        entity: Entity::Tenant,
        id,
    };
    let by_scope: Option<(i64,)> = sqlx::query_as(sql::TENANT_EXISTS)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("looking up the tenant"))?;
    if by_scope.is_some() {
        return Err(taken(tenant.id_scope.to_string()));
    }
    let by_name: Option<(String,)> = sqlx::query_as(sql::TENANT_SCOPE_OF_NAME)
        .bind(&tenant.name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("looking up the tenant name"))?;
    if by_name.is_some() {
        return Err(taken(tenant.name.clone()));
    }
    tenant.etag = ETag::generate();
    let body = rules::encode(Entity::Tenant, &key, &tenant)?;
    let name = tenant.name.clone();
    sqlx::query(sql::INSERT_TENANT)
        .bind(&key)
        .bind(&tenant.name)
        .bind(tenant.etag.as_str())
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(|err| match violation(&err) {
            Some(ErrorKind::UniqueViolation) => taken(name),
            _ => StoreError::database("creating a tenant")(err),
        })?;
    Ok(tenant)
}

pub(crate) async fn replace_tenant(
    conn: &mut SqliteConnection,
    mut tenant: Tenant,
    precondition: Precondition,
) -> StoreResult<Tenant> {
    let key = tenant.id_scope.key();
    let current: Option<(String, String)> = sqlx::query_as(sql::TENANT_FOR_WRITE)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("reading the tenant"))?;
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
        let owner: Option<(String,)> = sqlx::query_as(sql::TENANT_SCOPE_OF_NAME)
            .bind(&tenant.name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::database("looking up the tenant name"))?;
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
    sqlx::query(sql::UPDATE_TENANT)
        .bind(&key)
        .bind(&tenant.name)
        .bind(tenant.etag.as_str())
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(|err| match violation(&err) {
            Some(ErrorKind::UniqueViolation) => StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: name,
            },
            _ => StoreError::database("replacing a tenant")(err),
        })?;
    Ok(tenant)
}

pub(crate) async fn delete_tenant(
    conn: &mut SqliteConnection,
    id_scope: &IdScope,
    precondition: Precondition,
) -> StoreResult<()> {
    let key = id_scope.key();
    let current: Option<(String, String)> = sqlx::query_as(sql::TENANT_FOR_WRITE)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("reading the tenant"))?;
    let current = current.map(|(etag, _)| ETag::new(etag));
    rules::check_delete(
        Entity::Tenant,
        id_scope.as_str(),
        current.as_ref(),
        &precondition,
    )?;
    // Everything else goes with it: ON DELETE CASCADE.
    sqlx::query(sql::DELETE_TENANT)
        .bind(&key)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("deleting a tenant"))?;
    Ok(())
}

pub(crate) async fn put_record<T: EnrollmentLike>(
    conn: &mut SqliteConnection,
    table: &RecordTable,
    id_scope: &IdScope,
    mut record: T,
    precondition: Precondition,
) -> StoreResult<Written<T>> {
    require_tenant(conn, id_scope).await?;
    let scope_key = id_scope.key();
    let key = record.key();
    let current: Option<(String, String)> = sqlx::query_as(table.get_for_write)
        .bind(&scope_key)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("reading the current record"))?;
    let current_tag = current.as_ref().map(|(etag, _)| ETag::new(etag.as_str()));
    let outcome = rules::check_put(T::ENTITY, record.id(), current_tag.as_ref(), &precondition)?;
    let previous_created = match &current {
        Some((_, body)) => rules::decode::<CreatedOnly>(T::ENTITY, &key, body)?.created,
        None => None,
    };
    let now = time::now();
    rules::stamp(&mut record, previous_created, now);
    write_record(conn, table, &scope_key, &key, &record).await?;
    let row = rules::billing(id_scope, T::billing_kind(outcome), record.id(), now);
    insert_billing(conn, &BillingRow::new(&row)).await?;
    Ok(Written { record, outcome })
}

async fn write_record<T: EnrollmentLike>(
    conn: &mut SqliteConnection,
    table: &RecordTable,
    scope_key: &str,
    key: &str,
    record: &T,
) -> StoreResult<()> {
    let body = rules::encode(T::ENTITY, key, record)?;
    let etag = record.etag().map(ETag::as_str).unwrap_or_default();
    sqlx::query(table.upsert)
        .bind(scope_key)
        .bind(key)
        .bind(etag)
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("writing a record"))?;
    Ok(())
}

pub(crate) async fn delete_record<T: EnrollmentLike>(
    conn: &mut SqliteConnection,
    table: &RecordTable,
    id_scope: &IdScope,
    id: &str,
    key: &str,
    precondition: Precondition,
) -> StoreResult<()> {
    require_tenant(conn, id_scope).await?;
    let scope_key = id_scope.key();
    let current: Option<(String, String)> = sqlx::query_as(table.get_for_write)
        .bind(&scope_key)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("reading the current record"))?;
    let current_tag = current.map(|(etag, _)| ETag::new(etag));
    rules::check_delete(T::ENTITY, id, current_tag.as_ref(), &precondition)?;
    sqlx::query(table.delete)
        .bind(&scope_key)
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("deleting a record"))?;
    let row = rules::billing(id_scope, T::BILLING[2], id, time::now());
    insert_billing(conn, &BillingRow::new(&row)).await
}

/// An enrollment delete that takes the device's registration record along,
/// billed once as `enrollmentDelete`.
pub(crate) async fn delete_enrollment_and_registration(
    conn: &mut SqliteConnection,
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
    )
    .await?;
    sqlx::query(sql::DELETE_REGISTRATION)
        .bind(id_scope.key())
        .bind(&key)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("deleting a registration record"))?;
    Ok(())
}

pub(crate) async fn import_enrollments(
    conn: &mut SqliteConnection,
    id_scope: &IdScope,
    enrollments: Vec<IndividualEnrollment>,
) -> StoreResult<usize> {
    require_tenant(conn, id_scope).await?;
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
            bulk::upsert_enrollments(conn, &rows)
                .await
                .map_err(StoreError::database("importing enrollments"))?;
            rows.clear();
        }
    }
    Ok(count)
}

/// Store one commit on its own (the writer's slow path; batches use
/// [`bulk::insert_fast`]).
pub(crate) async fn commit_registration(
    conn: &mut SqliteConnection,
    commit: &RegistrationCommit,
) -> StoreResult<()> {
    let id_scope = &commit.id_scope;
    // Record, operation, billing row, superseded and issued certificates:
    // a refusal at any step (duplicate operation id or serial, unknown
    // tenant) rolls back the steps before it.
    sqlx::query(sql::UPSERT_REGISTRATION)
        .bind(commit.scope_key.as_str())
        .bind(commit.registration_key.as_str())
        .bind(commit.group_key.as_deref())
        .bind(commit.etag.as_str())
        .bind(commit.record_body.as_str())
        .execute(&mut *conn)
        .await
        .map_err(tenant_fault("storing a registration record", id_scope))?;
    sqlx::query(sql::INSERT_OPERATION)
        .bind(commit.scope_key.as_str())
        .bind(commit.operation_id.as_str())
        .bind(commit.operation_created_us)
        .bind(commit.operation_body.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|err| match violation(&err) {
            Some(ErrorKind::UniqueViolation) => StoreError::AlreadyExists {
                entity: Entity::RegistrationOperation,
                id: commit.operation_id.clone(),
            },
            _ => tenant_fault("storing a registration operation", id_scope)(err),
        })?;
    if let Some(row) = &commit.billing {
        insert_billing(conn, row).await?;
    }
    // Before the new certificate goes in, which must stay active.
    if let Some(at) = &commit.superseded_at {
        super::issued::supersede(conn, &commit.scope_key, &commit.registration_key, at).await?;
    }
    if let Some(row) = &commit.certificate {
        super::issued::insert(
            conn,
            id_scope,
            &commit.scope_key,
            &commit.registration_key,
            row,
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn delete_registration(
    conn: &mut SqliteConnection,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    precondition: Precondition,
) -> StoreResult<()> {
    require_tenant(conn, id_scope).await?;
    let scope_key = id_scope.key();
    let key = registration_id.key();
    let current: Option<(String,)> = sqlx::query_as(sql::REGISTRATION_ETAG)
        .bind(&scope_key)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::database("reading the registration record"))?;
    let current = current.map(|(etag,)| ETag::new(etag));
    rules::check_delete(
        Entity::Registration,
        registration_id.as_str(),
        current.as_ref(),
        &precondition,
    )?;
    sqlx::query(sql::DELETE_REGISTRATION)
        .bind(&scope_key)
        .bind(&key)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("deleting a registration record"))?;
    let row = rules::billing(
        id_scope,
        OperationKind::RegistrationStateDelete,
        registration_id.as_str(),
        time::now(),
    );
    insert_billing(conn, &BillingRow::new(&row)).await
}

pub(crate) async fn purge_operations(
    conn: &mut SqliteConnection,
    created_before: DateTime<Utc>,
) -> StoreResult<u64> {
    let done = sqlx::query(sql::PURGE_OPERATIONS)
        .bind(time::to_micros(created_before))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::database("purging registration operations"))?;
    Ok(done.rows_affected())
}
