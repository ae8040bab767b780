//! The writes, each settled by the database itself so that any number of
//! replicas can write at once.
//!
//! A conditional write reads the current etag, decides with the shared rules
//! ([`rules`]), then applies its change in one statement that repeats the
//! condition (`… WHERE etag = $n`, or `ON CONFLICT DO NOTHING` for a create)
//! and stores the billing row only if the change happened. When another
//! writer got there between the read and the write, the statement changes
//! nothing; the write starts again from the read, which now sees the winner
//! (and, under `If-Match`, refuses). Exactly one of several racing writers
//! with the same `If-Match` etag wins.
//!
//! Serialization failures and deadlocks (SQLSTATE 40001, 40P01: CockroachDB
//! reports contention that way) are retried the same way; they guarantee
//! nothing was stored.

use chrono::{DateTime, Utc};
use dps_model::{
    ETag, IdScope, IndividualEnrollment, OperationKind, OperationRecord, Precondition,
    RegistrationId, RegistrationOperation, RegistrationRecord,
};
use sqlx::error::ErrorKind;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgPool, Postgres};

use super::retry::{Attempt, Retry};
use super::sql::{self, RecordTable};
pub(crate) use super::tenant_writes::{create_tenant, delete_tenant, replace_tenant};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules::{self, CreatedOnly, EnrollmentLike};
use crate::store::Written;
use crate::time;

/// Attempts of one write before it reports [`StoreError::Contention`].
/// Rows per `UNNEST` statement of a bulk import.
const IMPORT_CHUNK: usize = 2_000;

pub(super) fn violation(err: &sqlx::Error) -> Option<ErrorKind> {
    match err {
        sqlx::Error::Database(db) => Some(db.kind()),
        _ => None,
    }
}

pub(super) fn constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// A write referencing the tenant failed: a foreign-key violation means the
/// tenant does not exist (or was deleted meanwhile).
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

fn unknown_tenant(id_scope: &IdScope) -> StoreError {
    StoreError::UnknownTenant {
        id_scope: id_scope.clone(),
    }
}

/// Bind a billing row's at, hour, kind and subject, in that order.
fn bind_billing<'q>(
    query: Query<'q, Postgres, PgArguments>,
    row: &OperationRecord,
) -> Query<'q, Postgres, PgArguments> {
    let at = time::to_micros(row.at);
    query
        .bind(at)
        .bind(time::hour_index(at))
        .bind(row.kind.as_str())
        .bind(row.subject.clone())
}

pub(super) fn scope_bytes(id_scope: &IdScope) -> Vec<u8> {
    id_scope.key().into_bytes()
}

// ----- enrollments and groups -------------------------------------------

/// The current etag and body of a record, `Err(UnknownTenant)` without tenant.
async fn current_record(
    pool: &PgPool,
    table: &RecordTable,
    id_scope: &IdScope,
    key: &str,
) -> StoreResult<Option<(String, String)>> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(table.get_for_write)
        .bind(scope_bytes(id_scope))
        .bind(key.as_bytes())
        .fetch_optional(pool)
        .await
        .map_err(StoreError::database("reading the current record"))?;
    match row {
        None => Err(unknown_tenant(id_scope)),
        Some((Some(etag), Some(body))) => Ok(Some((etag, body))),
        Some(_) => Ok(None),
    }
}

pub(crate) async fn put_record<T: EnrollmentLike>(
    pool: &PgPool,
    table: &RecordTable,
    id_scope: &IdScope,
    record: T,
    precondition: Precondition,
) -> StoreResult<Written<T>> {
    let mut retry = Retry::new(T::ENTITY, record.id());
    loop {
        let attempt = try_put_record(pool, table, id_scope, record.clone(), &precondition).await;
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}

async fn try_put_record<T: EnrollmentLike>(
    pool: &PgPool,
    table: &RecordTable,
    id_scope: &IdScope,
    mut record: T,
    precondition: &Precondition,
) -> StoreResult<Attempt<Written<T>>> {
    let key = record.key();
    let current = current_record(pool, table, id_scope, &key).await?;
    let current_tag = current.as_ref().map(|(etag, _)| ETag::new(etag.as_str()));
    let outcome = rules::check_put(T::ENTITY, record.id(), current_tag.as_ref(), precondition)?;
    let previous_created = match &current {
        Some((_, body)) => rules::decode::<CreatedOnly>(T::ENTITY, &key, body)?.created,
        None => None,
    };
    let now = time::now();
    rules::stamp(&mut record, previous_created, now);
    let body = rules::encode(T::ENTITY, &key, &record)?;
    let billing = rules::billing(id_scope, T::billing_kind(outcome), record.id(), now);
    let statement = match current {
        None => table.insert_billed,
        Some(_) => table.update_billed,
    };
    let query = sqlx::query(statement)
        .bind(scope_bytes(id_scope))
        .bind(key.as_bytes())
        .bind(record.etag().map(ETag::as_str).unwrap_or_default())
        .bind(body);
    let mut query = bind_billing(query, &billing);
    if let Some((etag, _)) = current {
        query = query.bind(etag);
    }
    let done = query
        .execute(pool)
        .await
        .map_err(tenant_fault("writing a record", id_scope))?;
    Ok(if done.rows_affected() == 1 {
        Attempt::Done(Written { record, outcome })
    } else {
        Attempt::Lost
    })
}

pub(crate) async fn delete_record<T: EnrollmentLike>(
    pool: &PgPool,
    table: &RecordTable,
    id_scope: &IdScope,
    id: &str,
    key: &str,
    precondition: Precondition,
) -> StoreResult<()> {
    let mut retry = Retry::new(T::ENTITY, id);
    loop {
        let attempt = async {
            let current = current_record(pool, table, id_scope, key).await?;
            let current_tag = current.map(|(etag, _)| etag);
            rules::check_delete(
                T::ENTITY,
                id,
                current_tag.as_deref().map(ETag::new).as_ref(),
                &precondition,
            )?;
            let billing = rules::billing(id_scope, T::BILLING[2], id, time::now());
            let query = sqlx::query(table.delete_billed)
                .bind(scope_bytes(id_scope))
                .bind(key.as_bytes())
                .bind(current_tag);
            let done = bind_billing(query, &billing)
                .execute(pool)
                .await
                .map_err(tenant_fault("deleting a record", id_scope))?;
            Ok(if done.rows_affected() == 1 {
                Attempt::Done(())
            } else {
                Attempt::Lost
            })
        }
        .await;
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}

/// An enrollment delete that takes the device's registration record along,
/// billed once as `enrollmentDelete`, in one transaction.
pub(crate) async fn delete_enrollment_and_registration(
    pool: &PgPool,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    precondition: Precondition,
) -> StoreResult<()> {
    let key = registration_id.key();
    let id = registration_id.as_str();
    let mut retry = Retry::new(Entity::Enrollment, id);
    loop {
        let attempt = async {
            let current = current_record(pool, &sql::ENROLLMENTS, id_scope, &key).await?;
            let current_tag = current.map(|(etag, _)| etag);
            rules::check_delete(
                Entity::Enrollment,
                id,
                current_tag.as_deref().map(ETag::new).as_ref(),
                &precondition,
            )?;
            let failed = StoreError::database("deleting an enrollment and its record");
            let mut tx = pool.begin().await.map_err(failed)?;
            let billing =
                rules::billing(id_scope, OperationKind::EnrollmentDelete, id, time::now());
            let query = sqlx::query(sql::ENROLLMENTS.delete_billed)
                .bind(scope_bytes(id_scope))
                .bind(key.as_bytes())
                .bind(current_tag);
            let done = bind_billing(query, &billing)
                .execute(&mut *tx)
                .await
                .map_err(tenant_fault("deleting an enrollment", id_scope))?;
            if done.rows_affected() != 1 {
                return Ok(Attempt::Lost);
            }
            sqlx::query(sql::DELETE_REGISTRATION)
                .bind(scope_bytes(id_scope))
                .bind(key.as_bytes())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::database("deleting a registration record"))?;
            tx.commit()
                .await
                .map_err(StoreError::database("committing"))?;
            Ok(Attempt::Done(()))
        }
        .await;
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}

pub(crate) async fn import_enrollments(
    pool: &PgPool,
    id_scope: &IdScope,
    enrollments: Vec<IndividualEnrollment>,
) -> StoreResult<usize> {
    let count = enrollments.len();
    let now = time::now();
    // One statement may not upsert a row twice: the last write of a key wins,
    // as it would written one by one.
    let mut rows: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for mut enrollment in enrollments {
        rules::stamp_import(&mut enrollment, now);
        let key = enrollment.key();
        let body = rules::encode(Entity::Enrollment, &key, &enrollment)?;
        let etag = enrollment
            .etag
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default();
        rows.insert(key, (etag, body));
    }
    let failed = StoreError::database("importing enrollments");
    let mut tx = pool.begin().await.map_err(failed)?;
    let exists: Option<(String,)> = sqlx::query_as(sql::TENANT_ETAG)
        .bind(scope_bytes(id_scope))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::database("looking up the tenant"))?;
    if exists.is_none() {
        return Err(unknown_tenant(id_scope));
    }
    let rows: Vec<(String, (String, String))> = rows.into_iter().collect();
    for chunk in rows.chunks(IMPORT_CHUNK) {
        let mut keys = Vec::with_capacity(chunk.len());
        let mut etags = Vec::with_capacity(chunk.len());
        let mut bodies = Vec::with_capacity(chunk.len());
        for (key, (etag, body)) in chunk {
            keys.push(key.as_bytes().to_vec());
            etags.push(etag.clone());
            bodies.push(body.clone());
        }
        sqlx::query(sql::ENROLLMENTS.import)
            .bind(scope_bytes(id_scope))
            .bind(keys)
            .bind(etags)
            .bind(bodies)
            .execute(&mut *tx)
            .await
            .map_err(tenant_fault("importing enrollments", id_scope))?;
    }
    tx.commit()
        .await
        .map_err(StoreError::database("committing an import"))?;
    Ok(count)
}

// ----- registrations -------------------------------------------------------

pub(crate) async fn commit_registration(
    pool: &PgPool,
    id_scope: &IdScope,
    record: &RegistrationRecord,
    operation: &RegistrationOperation,
    billing: Option<&OperationRecord>,
) -> StoreResult<()> {
    let superseded_at = crate::issued::superseded_at(record, None);
    let commit = EncodedCommit::new(record, operation, superseded_at)?;
    let mut retry = Retry::new(Entity::Registration, record.registration_id.as_str());
    loop {
        let attempt = commit
            .execute(pool, id_scope, record, operation, billing)
            .await
            .map(Attempt::Done);
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}

/// A registration commit's record and operation as JSON, encoded once for
/// every attempt.
pub(super) struct EncodedCommit {
    key: String,
    record_body: String,
    operation_body: String,
    /// When the registration's active certificates become superseded, in
    /// the Azure form their JSON holds ([`crate::issued::superseded_at`]).
    superseded_at: Option<String>,
}

impl EncodedCommit {
    pub(super) fn new(
        record: &RegistrationRecord,
        operation: &RegistrationOperation,
        superseded_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Self> {
        let key = record.registration_id.key();
        Ok(EncodedCommit {
            superseded_at: superseded_at.map(|at| dps_model::time::format(&at)),
            record_body: rules::encode(Entity::Registration, &key, record)?,
            operation_body: rules::encode(
                Entity::RegistrationOperation,
                &operation.operation_id,
                operation,
            )?,
            key,
        })
    }

    /// Record, operation, billing row and superseded certificates in one
    /// statement: all or nothing (on `executor`, the pool or an open
    /// transaction).
    pub(super) async fn execute<'c, E: sqlx::PgExecutor<'c>>(
        &self,
        executor: E,
        id_scope: &IdScope,
        record: &RegistrationRecord,
        operation: &RegistrationOperation,
        billing: Option<&OperationRecord>,
    ) -> StoreResult<()> {
        let operation_id = operation.operation_id.as_str();
        let statement = match (billing, &self.superseded_at) {
            (Some(_), Some(_)) => sql::COMMIT_REGISTRATION_BILLED_SUPERSEDING,
            (Some(_), None) => sql::COMMIT_REGISTRATION_BILLED,
            (None, Some(_)) => sql::COMMIT_REGISTRATION_SUPERSEDING,
            (None, None) => sql::COMMIT_REGISTRATION,
        };
        let mut query = sqlx::query(statement)
            .bind(scope_bytes(id_scope))
            .bind(self.key.as_bytes())
            .bind(
                record
                    .enrollment_group_id
                    .as_ref()
                    .map(|g| g.key().into_bytes()),
            )
            .bind(record.etag.as_str())
            .bind(self.record_body.as_str())
            .bind(operation_id)
            .bind(time::to_micros(operation.created))
            .bind(self.operation_body.as_str());
        if let Some(row) = billing {
            query = bind_billing(query, row);
        }
        // After the billing row's parameters: `$13` billed, `$9` not.
        if let Some(at) = &self.superseded_at {
            query = query.bind(at.as_str());
        }
        match query.execute(executor).await {
            Ok(_) => Ok(()),
            Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
                Err(StoreError::AlreadyExists {
                    entity: Entity::RegistrationOperation,
                    id: operation_id.to_owned(),
                })
            }
            Err(err) => Err(tenant_fault("storing a registration", id_scope)(err)),
        }
    }
}

pub(crate) async fn delete_registration(
    pool: &PgPool,
    id_scope: &IdScope,
    registration_id: &RegistrationId,
    precondition: Precondition,
) -> StoreResult<()> {
    let key = registration_id.key();
    let mut retry = Retry::new(Entity::Registration, registration_id.as_str());
    loop {
        let attempt = async {
            let row: Option<(Option<String>,)> = sqlx::query_as(sql::REGISTRATION_FOR_WRITE)
                .bind(scope_bytes(id_scope))
                .bind(key.as_bytes())
                .fetch_optional(pool)
                .await
                .map_err(StoreError::database("reading the registration record"))?;
            let Some((current,)) = row else {
                return Err(unknown_tenant(id_scope));
            };
            rules::check_delete(
                Entity::Registration,
                registration_id.as_str(),
                current.as_deref().map(ETag::new).as_ref(),
                &precondition,
            )?;
            let billing = rules::billing(
                id_scope,
                OperationKind::RegistrationStateDelete,
                registration_id.as_str(),
                time::now(),
            );
            let query = sqlx::query(sql::DELETE_REGISTRATION_BILLED)
                .bind(scope_bytes(id_scope))
                .bind(key.as_bytes())
                .bind(current);
            let done = bind_billing(query, &billing)
                .execute(pool)
                .await
                .map_err(tenant_fault("deleting a registration record", id_scope))?;
            Ok(if done.rows_affected() == 1 {
                Attempt::Done(())
            } else {
                Attempt::Lost
            })
        }
        .await;
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}

// ----- meter and housekeeping ---------------------------------------------

pub(crate) async fn record_operation(pool: &PgPool, row: &OperationRecord) -> StoreResult<()> {
    let query = sqlx::query(sql::INSERT_BILLING).bind(scope_bytes(&row.id_scope));
    bind_billing(query, row)
        .execute(pool)
        .await
        .map_err(tenant_fault("storing a billing row", &row.id_scope))?;
    Ok(())
}

pub(crate) async fn purge_operations(
    pool: &PgPool,
    created_before: DateTime<Utc>,
) -> StoreResult<u64> {
    let done = sqlx::query(sql::PURGE_OPERATIONS)
        .bind(time::to_micros(created_before))
        .execute(pool)
        .await
        .map_err(StoreError::database("purging registration operations"))?;
    Ok(done.rows_affected())
}
