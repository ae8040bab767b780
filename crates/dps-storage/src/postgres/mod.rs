//! The PostgreSQL backend: one database shared by any number of dps replicas.
//!
//! * **Connections**: a pool ([`PostgresOptions::max_connections`], default
//!   16) shared by reads and writes; a lost connection is replaced on the
//!   next use.
//! * **Writes** are settled by the database, never by this process: each
//!   conditional write repeats its condition in the statement that applies it
//!   and stores its billing row in that same statement (`writes.rs`), so
//!   replicas racing on one record get exactly one winner. Nothing needs more
//!   than PostgreSQL's default `READ COMMITTED` isolation; serialization
//!   failures (CockroachDB runs `SERIALIZABLE`) are retried.
//! * **Registrations**: record, device operation and billing row are one
//!   statement, one round trip. PostgreSQL already shares one WAL flush among
//!   the commits that arrive together, so there is no batching here (see
//!   `docs/operations.md` for the figures).
//! * **Schema**: migrations shipped in the binary, applied at connect under a
//!   lock so that replicas may start at once ([`MigrationLock`]).
//! * **Dialect**: the subset CockroachDB and YugabyteDB accept too (see
//!   `sql.rs` and `docs/operations.md`).
//!
//! ```no_run
//! # async fn run() -> Result<(), dps_storage::StoreError> {
//! use dps_storage::{PostgresOptions, PostgresStore};
//! let store = PostgresStore::connect(
//!     "postgres://dps@db.internal/dps?options=-c%20search_path%3Ddps",
//!     PostgresOptions::default(),
//! )
//! .await?;
//! store.close().await;
//! # Ok(()) }
//! ```

mod authorities;
mod connect;
mod issued;
mod options;
mod retry;
mod schema;
mod sql;
mod tenant_writes;
mod writes;

#[cfg(feature = "conformance")]
pub mod scratch;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment,
    IssuedCertificate, OperationKind, OperationRecord, Precondition, RegistrationId,
    RegistrationOperation, RegistrationRecord, Tenant,
};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

pub use self::options::{redact_url, PostgresOptions};
pub use self::schema::MigrationLock;
use crate::authorities::StoredCertificateAuthority;
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules;
use crate::store::{MeterReport, Store, Written};
use crate::time;
use crate::token::{Page, PageRequest};

/// The store of replicated deployments: a PostgreSQL (or wire-compatible)
/// database reached through a connection pool.
///
/// The schema lives in the first schema of the session's `search_path`
/// (`public` unless the URL says otherwise, e.g.
/// `?options=-c%20search_path%3Ddps`).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    target: String,
}

fn decode_column<T: DeserializeOwned>(
    entity: Entity,
    key: &str,
    row: &PgRow,
    column: usize,
) -> StoreResult<T> {
    let text: &str = row
        .try_get(column)
        .map_err(StoreError::database("reading a record"))?;
    rules::decode(entity, key, text)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn parse_kind(name: &str) -> StoreResult<OperationKind> {
    OperationKind::parse(name).ok_or_else(|| StoreError::Corrupt {
        entity: Entity::BillingOperation,
        key: name.to_owned(),
        message: "unknown operation kind".to_owned(),
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_certificate_authority(
        &self,
        id_scope: &IdScope,
        authority: StoredCertificateAuthority,
    ) -> StoreResult<StoredCertificateAuthority> {
        authorities::create(&self.pool, id_scope, authority).await
    }

    async fn certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<StoredCertificateAuthority>> {
        let query = sqlx::query(authorities::AUTHORITY)
            .bind(id_scope.key().into_bytes())
            .bind(name.as_bytes().to_vec());
        self.one(Entity::CertificateAuthority, name, query).await
    }

    async fn list_certificate_authorities(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<StoredCertificateAuthority>> {
        authorities::named_rows(
            &self.pool,
            Entity::CertificateAuthority,
            authorities::AUTHORITIES,
            id_scope,
        )
        .await
    }

    async fn delete_certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        authorities::delete(&self.pool, id_scope, name, precondition).await
    }

    async fn put_credential_policy(
        &self,
        id_scope: &IdScope,
        policy: CredentialPolicy,
        precondition: Precondition,
    ) -> StoreResult<Written<CredentialPolicy>> {
        authorities::put_policy(&self.pool, id_scope, policy, precondition).await
    }

    async fn credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<CredentialPolicy>> {
        let query = sqlx::query(authorities::POLICY)
            .bind(id_scope.key().into_bytes())
            .bind(name.as_bytes().to_vec());
        self.one(Entity::CredentialPolicy, name, query).await
    }

    async fn list_credential_policies(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<CredentialPolicy>> {
        authorities::named_rows(
            &self.pool,
            Entity::CredentialPolicy,
            authorities::POLICIES,
            id_scope,
        )
        .await
    }

    async fn delete_credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        authorities::delete_policy(&self.pool, id_scope, name, precondition).await
    }

    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<Tenant> {
        writes::create_tenant(&self.pool, tenant).await
    }

    async fn tenant(&self, id_scope: &IdScope) -> StoreResult<Option<Tenant>> {
        let key = id_scope.key();
        let query = sqlx::query(sql::TENANT_BY_SCOPE).bind(key.as_bytes().to_vec());
        self.one(Entity::Tenant, &key, query).await
    }

    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let query = sqlx::query(sql::TENANT_BY_NAME).bind(name.to_owned());
        self.one(Entity::Tenant, name, query).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let mut rows: Vec<(String, String)> = sqlx::query_as(sql::TENANTS)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::database("listing tenants"))?;
        // Byte-wise, like every backend, whatever the database's collation.
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.iter()
            .map(|(name, body)| rules::decode(Entity::Tenant, name, body))
            .collect()
    }

    async fn replace_tenant(
        &self,
        tenant: Tenant,
        precondition: Precondition,
    ) -> StoreResult<Tenant> {
        writes::replace_tenant(&self.pool, tenant, precondition).await
    }

    async fn delete_tenant(
        &self,
        id_scope: &IdScope,
        precondition: Precondition,
    ) -> StoreResult<()> {
        writes::delete_tenant(&self.pool, id_scope, precondition).await
    }

    async fn enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<IndividualEnrollment>> {
        self.get_record(
            &sql::ENROLLMENTS,
            Entity::Enrollment,
            id_scope,
            registration_id.key(),
        )
        .await
    }

    async fn enrollment_with_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<(IndividualEnrollment, Option<RegistrationRecord>)>> {
        let key = registration_id.key();
        let row = sqlx::query(sql::ENROLLMENT_WITH_REGISTRATION)
            .bind(id_scope.key().into_bytes())
            .bind(key.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::database("reading a record"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (enrollment, record): (&str, Option<&str>) = (
            row.try_get(0)
                .map_err(StoreError::database("reading a record"))?,
            row.try_get(1)
                .map_err(StoreError::database("reading a record"))?,
        );
        rules::decode_enrollment_with_registration(&key, enrollment, record).map(Some)
    }

    async fn put_enrollment(
        &self,
        id_scope: &IdScope,
        enrollment: IndividualEnrollment,
        precondition: Precondition,
    ) -> StoreResult<Written<IndividualEnrollment>> {
        writes::put_record(
            &self.pool,
            &sql::ENROLLMENTS,
            id_scope,
            enrollment,
            precondition,
        )
        .await
    }

    async fn delete_enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        writes::delete_record::<IndividualEnrollment>(
            &self.pool,
            &sql::ENROLLMENTS,
            id_scope,
            registration_id.as_str(),
            &registration_id.key(),
            precondition,
        )
        .await
    }

    async fn delete_enrollment_and_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        writes::delete_enrollment_and_registration(
            &self.pool,
            id_scope,
            registration_id,
            precondition,
        )
        .await
    }

    async fn list_enrollments(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<IndividualEnrollment>> {
        self.page_records(&sql::ENROLLMENTS, Entity::Enrollment, id_scope, page)
            .await
    }

    async fn import_enrollments(
        &self,
        id_scope: &IdScope,
        enrollments: Vec<IndividualEnrollment>,
    ) -> StoreResult<usize> {
        writes::import_enrollments(&self.pool, id_scope, enrollments).await
    }

    async fn enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
    ) -> StoreResult<Option<EnrollmentGroup>> {
        self.get_record(
            &sql::GROUPS,
            Entity::EnrollmentGroup,
            id_scope,
            group_id.key(),
        )
        .await
    }

    async fn put_enrollment_group(
        &self,
        id_scope: &IdScope,
        group: EnrollmentGroup,
        precondition: Precondition,
    ) -> StoreResult<Written<EnrollmentGroup>> {
        writes::put_record(&self.pool, &sql::GROUPS, id_scope, group, precondition).await
    }

    async fn delete_enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        writes::delete_record::<EnrollmentGroup>(
            &self.pool,
            &sql::GROUPS,
            id_scope,
            group_id.as_str(),
            &group_id.key(),
            precondition,
        )
        .await
    }

    async fn list_enrollment_groups(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<EnrollmentGroup>> {
        self.page_records(&sql::GROUPS, Entity::EnrollmentGroup, id_scope, page)
            .await
    }

    async fn all_enrollment_groups(&self, id_scope: &IdScope) -> StoreResult<Vec<EnrollmentGroup>> {
        let query = sqlx::query(sql::GROUPS.all).bind(id_scope.key().into_bytes());
        Ok(self
            .page(Entity::EnrollmentGroup, usize::MAX, query)
            .await?
            .items)
    }

    async fn registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<RegistrationRecord>> {
        let key = registration_id.key();
        let query = sqlx::query(sql::REGISTRATION)
            .bind(id_scope.key().into_bytes())
            .bind(key.as_bytes().to_vec());
        self.one(Entity::Registration, &key, query).await
    }

    async fn commit_registration(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
    ) -> StoreResult<()> {
        if let Some(row) = &billing {
            if row.id_scope != *id_scope {
                return Err(StoreError::ScopeMismatch {
                    id_scope: id_scope.clone(),
                    billing_scope: row.id_scope.clone(),
                });
            }
        }
        writes::commit_registration(&self.pool, id_scope, &record, &operation, billing.as_ref())
            .await
    }

    async fn commit_registration_with_certificate(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
        certificate: IssuedCertificate,
    ) -> StoreResult<()> {
        crate::issued::check_commit(id_scope, &record, billing.as_ref(), Some(&certificate))?;
        issued::commit(
            &self.pool,
            id_scope,
            &record,
            &operation,
            billing.as_ref(),
            &certificate,
        )
        .await
    }

    async fn issued_certificates(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        let key = registration_id.key();
        let scope = writes::scope_bytes(id_scope);
        let mut certs =
            issued::rows(&self.pool, issued::OF_REGISTRATION, &scope, key.as_bytes()).await?;
        crate::issued::sort_newest_first(&mut certs);
        Ok(certs)
    }

    async fn revoke_issued_certificate(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        serial_number: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<IssuedCertificate> {
        issued::revoke(&self.pool, id_scope, registration_id, serial_number, at).await
    }

    async fn revoked_certificates(
        &self,
        id_scope: &IdScope,
        authority_name: &str,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        let scope = writes::scope_bytes(id_scope);
        let mut certs = issued::rows(
            &self.pool,
            issued::REVOKED_BY,
            &scope,
            authority_name.as_bytes(),
        )
        .await?;
        crate::issued::sort_by_revocation(&mut certs);
        Ok(certs)
    }

    async fn registration_operation(
        &self,
        id_scope: &IdScope,
        operation_id: &str,
    ) -> StoreResult<Option<RegistrationOperation>> {
        let query = sqlx::query(sql::OPERATION)
            .bind(id_scope.key().into_bytes())
            .bind(operation_id.to_owned());
        self.one(Entity::RegistrationOperation, operation_id, query)
            .await
    }

    async fn delete_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        writes::delete_registration(&self.pool, id_scope, registration_id, precondition).await
    }

    async fn list_registrations_by_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<RegistrationRecord>> {
        let size = page.effective_size();
        let query = sqlx::query(sql::REGISTRATIONS_OF_GROUP)
            .bind(id_scope.key().into_bytes())
            .bind(group_id.key().into_bytes())
            .bind(page.after_key().unwrap_or("").as_bytes().to_vec())
            .bind(limit(size + 1));
        self.page(Entity::Registration, size, query).await
    }

    async fn count_registrations(&self, id_scope: &IdScope) -> StoreResult<u64> {
        let (count,): (i64,) = sqlx::query_as(sql::COUNT_REGISTRATIONS)
            .bind(id_scope.key().into_bytes())
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::database("counting registration records"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn purge_registration_operations(
        &self,
        created_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        writes::purge_operations(&self.pool, created_before).await
    }

    async fn record_operation(&self, operation: OperationRecord) -> StoreResult<()> {
        writes::record_operation(&self.pool, &operation).await
    }

    async fn operation_report(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<MeterReport> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(sql::BILLING_BUCKETS)
            .bind(id_scope.key().into_bytes())
            .bind(time::to_micros(from))
            .bind(time::to_micros(to))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::database("counting billing rows"))?;
        let mut buckets = Vec::with_capacity(rows.len());
        for (hour, kind, count) in rows {
            buckets.push((hour, parse_kind(&kind)?, u64::try_from(count).unwrap_or(0)));
        }
        Ok(MeterReport::from_buckets(id_scope, from, to, buckets))
    }

    async fn operations(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit_rows: usize,
    ) -> StoreResult<Vec<OperationRecord>> {
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(sql::BILLING_ROWS)
            .bind(id_scope.key().into_bytes())
            .bind(time::to_micros(from))
            .bind(time::to_micros(to))
            .bind(limit(limit_rows))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::database("reading billing rows"))?;
        rows.into_iter()
            .map(|(at, kind, subject)| {
                Ok(OperationRecord {
                    id_scope: id_scope.clone(),
                    kind: parse_kind(&kind)?,
                    at: time::from_micros(at),
                    subject,
                })
            })
            .collect()
    }
}
