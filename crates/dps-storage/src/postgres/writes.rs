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

use std::time::Duration;

use chrono::{DateTime, Utc};
use dps_model::{
    ETag, IdScope, IndividualEnrollment, OperationKind, OperationRecord, Precondition,
    RegistrationId, RegistrationOperation, RegistrationRecord, Tenant,
};
use sqlx::error::ErrorKind;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgPool, Postgres};

use super::sql::{self, RecordTable};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules::{self, CreatedOnly, EnrollmentLike};
use crate::store::Written;
use crate::time;

/// Attempts of one write before it reports [`StoreError::Contention`].
const MAX_ATTEMPTS: u32 = 64;
/// Rows per `UNNEST` statement of a bulk import.
const IMPORT_CHUNK: usize = 2_000;

/// The result of one attempt at a conditional write.
enum Attempt<T> {
    /// Settled: stored, or refused for a reason the caller must hear.
    Done(T),
    /// Another writer changed the row between our read and our write.
    Lost,
}

/// Runs attempts until one settles, backing off between lost ones.
struct Retry {
    entity: Entity,
    id: String,
    attempts: u32,
}

impl Retry {
    fn new(entity: Entity, id: &str) -> Self {
        Retry {
            entity,
            id: id.to_owned(),
            attempts: 0,
        }
    }

    /// `Some(answer)` when the attempt settled the write; `None` to try again.
    async fn settle<T>(&mut self, attempt: StoreResult<Attempt<T>>) -> Option<StoreResult<T>> {
        match attempt {
            Ok(Attempt::Done(value)) => return Some(Ok(value)),
            Ok(Attempt::Lost) => {}
            Err(err) if is_transient(&err) => {}
            Err(err) => return Some(Err(err)),
        }
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return Some(Err(StoreError::Contention {
                entity: self.entity,
                id: std::mem::take(&mut self.id),
                attempts: self.attempts,
            }));
        }
        // Spread the retries of writers that collided: 0-1 ms, then up to ~16 ms.
        let ceiling = 1u64 << self.attempts.min(4);
        let pause = rand_below(ceiling * 1000);
        tokio::time::sleep(Duration::from_micros(pause)).await;
        None
    }
}

/// A cheap, good-enough jitter source (no shared RNG on the write path).
fn rand_below(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos.wrapping_mul(2_654_435_761)) % bound.max(1)
}

/// SQLSTATE 40001 (serialization failure) or 40P01 (deadlock): the
/// transaction was rolled back and may simply be run again.
fn is_transient(err: &StoreError) -> bool {
    let StoreError::Database { source, .. } = err else {
        return false;
    };
    match source.as_ref() {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

fn violation(err: &sqlx::Error) -> Option<ErrorKind> {
    match err {
        sqlx::Error::Database(db) => Some(db.kind()),
        _ => None,
    }
}

fn constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// A write referencing the tenant failed: a foreign-key violation means the
/// tenant does not exist (or was deleted meanwhile).
fn tenant_fault<'a>(
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

fn scope_bytes(id_scope: &IdScope) -> Vec<u8> {
    id_scope.key().into_bytes()
}

// ----- tenants -----------------------------------------------------------

pub(crate) async fn create_tenant(pool: &PgPool, mut tenant: Tenant) -> StoreResult<Tenant> {
    let key = tenant.id_scope.key();
    let taken = |id: String| StoreError::AlreadyExists {
        entity: Entity::Tenant,
        id,
    };
    let by_scope: Option<(String,)> = sqlx::query_as(sql::TENANT_ETAG)
        .bind(key.as_bytes())
        .fetch_optional(pool)
        .await
        .map_err(StoreError::database("looking up the tenant"))?;
    if by_scope.is_some() {
        return Err(taken(tenant.id_scope.to_string()));
    }
    let by_name: Option<(Vec<u8>,)> = sqlx::query_as(sql::TENANT_SCOPE_OF_NAME)
        .bind(&tenant.name)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::database("looking up the tenant name"))?;
    if by_name.is_some() {
        return Err(taken(tenant.name.clone()));
    }
    tenant.etag = ETag::generate();
    let body = rules::encode(Entity::Tenant, &key, &tenant)?;
    let inserted = sqlx::query(sql::INSERT_TENANT)
        .bind(key.as_bytes())
        .bind(&tenant.name)
        .bind(tenant.etag.as_str())
        .bind(body)
        .execute(pool)
        .await;
    match inserted {
        Ok(_) => Ok(tenant),
        // A replica created it between our look-ups and our insert.
        Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
            Err(if constraint(&err) == Some("tenants_name_unique") {
                taken(tenant.name)
            } else {
                taken(tenant.id_scope.to_string())
            })
        }
        Err(err) => Err(StoreError::database("creating a tenant")(err)),
    }
}

pub(crate) async fn replace_tenant(
    pool: &PgPool,
    tenant: Tenant,
    precondition: Precondition,
) -> StoreResult<Tenant> {
    let mut retry = Retry::new(Entity::Tenant, tenant.id_scope.as_str());
    loop {
        let attempt = try_replace_tenant(pool, tenant.clone(), &precondition).await;
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
        }
    }
}

async fn try_replace_tenant(
    pool: &PgPool,
    mut tenant: Tenant,
    precondition: &Precondition,
) -> StoreResult<Attempt<Tenant>> {
    let key = tenant.id_scope.key();
    let current: Option<(String, String)> = sqlx::query_as(sql::TENANT_FOR_WRITE)
        .bind(key.as_bytes())
        .fetch_optional(pool)
        .await
        .map_err(StoreError::database("reading the tenant"))?;
    let Some((etag, body)) = current else {
        return Err(StoreError::NotFound {
            entity: Entity::Tenant,
            id: tenant.id_scope.to_string(),
        });
    };
    let current_tag = ETag::new(etag.as_str());
    rules::check_put(
        Entity::Tenant,
        tenant.id_scope.as_str(),
        Some(&current_tag),
        precondition,
    )?;
    let stored: Tenant = rules::decode(Entity::Tenant, &key, &body)?;
    if stored.name != tenant.name {
        let owner: Option<(Vec<u8>,)> = sqlx::query_as(sql::TENANT_SCOPE_OF_NAME)
            .bind(&tenant.name)
            .fetch_optional(pool)
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
    let updated = sqlx::query(sql::UPDATE_TENANT)
        .bind(key.as_bytes())
        .bind(&tenant.name)
        .bind(tenant.etag.as_str())
        .bind(body)
        .bind(etag)
        .execute(pool)
        .await;
    match updated {
        Ok(done) if done.rows_affected() == 1 => Ok(Attempt::Done(tenant)),
        Ok(_) => Ok(Attempt::Lost),
        Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
            Err(StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.name,
            })
        }
        Err(err) => Err(StoreError::database("replacing a tenant")(err)),
    }
}

pub(crate) async fn delete_tenant(
    pool: &PgPool,
    id_scope: &IdScope,
    precondition: Precondition,
) -> StoreResult<()> {
    let key = scope_bytes(id_scope);
    let mut retry = Retry::new(Entity::Tenant, id_scope.as_str());
    loop {
        let attempt = async {
            let current: Option<(String,)> = sqlx::query_as(sql::TENANT_ETAG)
                .bind(&key)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::database("reading the tenant"))?;
            let current = current.map(|(etag,)| etag);
            rules::check_delete(
                Entity::Tenant,
                id_scope.as_str(),
                current.as_deref().map(ETag::new).as_ref(),
                &precondition,
            )?;
            // Everything else goes with it: ON DELETE CASCADE.
            let done = sqlx::query(sql::DELETE_TENANT)
                .bind(&key)
                .bind(current)
                .execute(pool)
                .await
                .map_err(StoreError::database("deleting a tenant"))?;
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
    let key = record.registration_id.key();
    let operation_id = operation.operation_id.as_str();
    let record_body = rules::encode(Entity::Registration, &key, record)?;
    let operation_body = rules::encode(Entity::RegistrationOperation, operation_id, operation)?;
    let mut retry = Retry::new(Entity::Registration, record.registration_id.as_str());
    loop {
        let statement = match billing {
            Some(_) => sql::COMMIT_REGISTRATION_BILLED,
            None => sql::COMMIT_REGISTRATION,
        };
        let mut query = sqlx::query(statement)
            .bind(scope_bytes(id_scope))
            .bind(key.as_bytes())
            .bind(
                record
                    .enrollment_group_id
                    .as_ref()
                    .map(|g| g.key().into_bytes()),
            )
            .bind(record.etag.as_str())
            .bind(record_body.as_str())
            .bind(operation_id)
            .bind(time::to_micros(operation.created))
            .bind(operation_body.as_str());
        if let Some(row) = billing {
            query = bind_billing(query, row);
        }
        // Record, operation and billing row are one statement: all or nothing.
        let attempt = match query.execute(pool).await {
            Ok(_) => Ok(Attempt::Done(())),
            Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
                Err(StoreError::AlreadyExists {
                    entity: Entity::RegistrationOperation,
                    id: operation_id.to_owned(),
                })
            }
            Err(err) => Err(tenant_fault("storing a registration", id_scope)(err)),
        };
        if let Some(answer) = retry.settle(attempt).await {
            return answer;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lost_attempts_are_retried_then_reported_as_contention() {
        let mut retry = Retry::new(Entity::Enrollment, "dev-1");
        let mut lost = 0;
        let answer = loop {
            if let Some(answer) = retry.settle::<()>(Ok(Attempt::Lost)).await {
                break answer;
            }
            lost += 1;
        };
        assert_eq!(lost, MAX_ATTEMPTS - 1);
        assert!(
            matches!(answer, Err(StoreError::Contention { entity: Entity::Enrollment, ref id, attempts })
                if id == "dev-1" && attempts == MAX_ATTEMPTS),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn refusals_are_answered_at_once() {
        let mut retry = Retry::new(Entity::Enrollment, "dev-1");
        let refused = retry
            .settle::<()>(Err(StoreError::NotFound {
                entity: Entity::Enrollment,
                id: "dev-1".to_owned(),
            }))
            .await;
        assert!(matches!(refused, Some(Err(StoreError::NotFound { .. }))));
        assert!(matches!(
            retry.settle(Ok(Attempt::Done(7))).await,
            Some(Ok(7))
        ));
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        for bound in [1, 2, 1000, 16_000] {
            assert!(rand_below(bound) < bound);
        }
        assert_eq!(rand_below(0), 0);
    }
}
