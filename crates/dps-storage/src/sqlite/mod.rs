//! The SQLite backend: one file, durable, embedded (no server to install).
//!
//! * **Reads** go to read-only connections (`read_connections` of each
//!   kind, default 4); WAL mode lets them run while the writer writes. Point
//!   reads of one record run on plain SQLite handles in the calling task
//!   (`point_reads.rs`); scans run on sqlx connections (`readers.rs`).
//! * **Writes** go to one writer thread owning the only read-write connection
//!   (`writer.rs`), which batches concurrent writes into one transaction
//!   (group commit) and answers each caller only after the commit. It runs
//!   its statements itself (rusqlite, prepared once and cached): sqlx would
//!   hand each one to its connection's thread and back.
//! * **Durability**: WAL journal with `synchronous=NORMAL` by default: a
//!   committed transaction survives a crash of the process (it is in the WAL
//!   file, in the operating system's cache), but the last transactions before
//!   a power loss or kernel crash may be lost (never corrupted: the database
//!   stays consistent). [`Synchronous::Full`] syncs the WAL at every commit and
//!   survives power loss too, at the cost of one `fsync` per batch.
//! * **Checkpoints** (copying the WAL back into the database file) run in a
//!   background task on their own connection (`checkpoint.rs`), off the
//!   writer's path.
//! * **Schema**: migrations shipped in the binary, applied at open
//!   (`schema.rs`).

mod authorities;
mod bulk;
mod checkpoint;
mod issued;
mod open;
mod options;
mod point_reads;
mod readers;
mod rows;
mod schema;
mod sql;
mod statements;
mod writer;
mod writes;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment,
    IssuedCertificate, OperationKind, OperationRecord, Precondition, RegistrationId,
    RegistrationOperation, RegistrationRecord, Tenant,
};
use sqlx::Row;
use tokio::sync::{mpsc, Mutex};

use self::authorities::AuthorityJob;
use self::checkpoint::Checkpointer;
use self::issued::Listing;
pub use self::options::{SqliteOptions, Synchronous};
use self::point_reads::PointReaders;
use self::readers::{connection, decode_column, Readers};
use self::rows::{BillingRow, RegistrationCommit};
use self::writer::Job;
use crate::authorities::StoredCertificateAuthority;
use crate::error::{Entity, StoreError, StoreResult};
use crate::store::{MeterReport, Store, Written};
use crate::time;
use crate::token::{Page, PageRequest};
use crate::writer_stats::{WriterCounters, WriterStats};

/// The durable embedded store: an SQLite database file.
///
/// Open it inside a Tokio runtime (the checkpointer is a task of that runtime);
/// call [`SqliteStore::close`] for an orderly shutdown.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    readers: Readers,
    points: PointReaders,
    writer: mpsc::Sender<Job>,
    writer_counters: Arc<WriterCounters>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<Checkpointer>>,
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
impl Store for SqliteStore {
    fn writer_stats(&self) -> Option<WriterStats> {
        let capacity = self.writer.max_capacity();
        let waiting = capacity.saturating_sub(self.writer.capacity());
        Some(self.writer_counters.stats(waiting as u64, capacity as u64))
    }

    async fn create_certificate_authority(
        &self,
        id_scope: &IdScope,
        authority: StoredCertificateAuthority,
    ) -> StoreResult<StoredCertificateAuthority> {
        let id_scope = id_scope.clone();
        self.submit_authority(|r| AuthorityJob::Create(id_scope, Box::new(authority), r))
            .await
    }

    async fn certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<StoredCertificateAuthority>> {
        self.point().await.one(
            Entity::CertificateAuthority,
            name,
            authorities::AUTHORITY,
            &[&id_scope.key(), name],
        )
    }

    async fn list_certificate_authorities(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<StoredCertificateAuthority>> {
        authorities::named_rows(
            &self.readers,
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
        let (id_scope, name) = (id_scope.clone(), name.to_owned());
        self.submit_authority(|r| AuthorityJob::Delete(id_scope, name, precondition, r))
            .await
    }

    async fn put_credential_policy(
        &self,
        id_scope: &IdScope,
        policy: CredentialPolicy,
        precondition: Precondition,
    ) -> StoreResult<Written<CredentialPolicy>> {
        let id_scope = id_scope.clone();
        self.submit_authority(|r| {
            AuthorityJob::PutPolicy(id_scope, Box::new(policy), precondition, r)
        })
        .await
    }

    async fn credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<CredentialPolicy>> {
        self.point().await.one(
            Entity::CredentialPolicy,
            name,
            authorities::POLICY,
            &[&id_scope.key(), name],
        )
    }

    async fn list_credential_policies(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<CredentialPolicy>> {
        authorities::named_rows(
            &self.readers,
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
        let (id_scope, name) = (id_scope.clone(), name.to_owned());
        self.submit_authority(|r| AuthorityJob::DeletePolicy(id_scope, name, precondition, r))
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
        let commit = Box::new(RegistrationCommit::encode(
            id_scope,
            &record,
            &operation,
            billing.as_ref(),
            Some(certificate),
        )?);
        self.submit(|r| Job::CommitRegistration(commit, r)).await
    }

    async fn issued_certificates(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        issued::list(
            &self.readers,
            id_scope,
            Listing::Registration(registration_id),
        )
        .await
    }

    async fn revoke_issued_certificate(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        serial_number: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<IssuedCertificate> {
        let (scope, id, serial) = (
            id_scope.clone(),
            registration_id.clone(),
            serial_number.to_owned(),
        );
        self.submit_authority(|r| AuthorityJob::Revoke(scope, id, serial, at, r))
            .await
    }

    async fn revoked_certificates(
        &self,
        id_scope: &IdScope,
        authority_name: &str,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        issued::list(&self.readers, id_scope, Listing::Revoked(authority_name)).await
    }

    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<Tenant> {
        self.submit(|r| Job::CreateTenant(Box::new(tenant), r))
            .await
    }

    async fn tenant(&self, id_scope: &IdScope) -> StoreResult<Option<Tenant>> {
        let key = id_scope.key();
        self.point()
            .await
            .one(Entity::Tenant, &key, sql::TENANT_BY_SCOPE, &[&key])
    }

    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        self.point()
            .await
            .one(Entity::Tenant, name, sql::TENANT_BY_NAME, &[name])
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let mut lent = self.readers.get().await;
        let rows = sqlx::query(sql::TENANTS)
            .fetch_all(connection(&mut lent)?)
            .await
            .map_err(StoreError::database("listing tenants"))?;
        let mut tenants = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: String = row
                .try_get(0)
                .map_err(StoreError::database("listing tenants"))?;
            tenants.push(decode_column(Entity::Tenant, &key, row, 1)?);
        }
        Ok(tenants)
    }

    async fn replace_tenant(
        &self,
        tenant: Tenant,
        precondition: Precondition,
    ) -> StoreResult<Tenant> {
        self.submit(|r| Job::ReplaceTenant(Box::new(tenant), precondition, r))
            .await
    }

    async fn delete_tenant(
        &self,
        id_scope: &IdScope,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let id_scope = id_scope.clone();
        self.submit(|r| Job::DeleteTenant(id_scope, precondition, r))
            .await
    }

    async fn enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<IndividualEnrollment>> {
        let key = registration_id.key();
        self.point().await.one(
            Entity::Enrollment,
            &key,
            sql::ENROLLMENTS.get,
            &[&id_scope.key(), &key],
        )
    }

    async fn enrollment_with_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<(IndividualEnrollment, Option<RegistrationRecord>)>> {
        self.point()
            .await
            .enrollment_with_registration(&id_scope.key(), &registration_id.key())
    }

    async fn put_enrollment(
        &self,
        id_scope: &IdScope,
        enrollment: IndividualEnrollment,
        precondition: Precondition,
    ) -> StoreResult<Written<IndividualEnrollment>> {
        let id_scope = id_scope.clone();
        self.submit(|r| Job::PutEnrollment(id_scope, Box::new(enrollment), precondition, r))
            .await
    }

    async fn delete_enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let (id_scope, id) = (id_scope.clone(), registration_id.clone());
        self.submit(|r| Job::DeleteEnrollment(id_scope, id, precondition, r))
            .await
    }

    async fn delete_enrollment_and_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let (id_scope, id) = (id_scope.clone(), registration_id.clone());
        self.submit(|r| Job::DeleteEnrollmentAndRegistration(id_scope, id, precondition, r))
            .await
    }

    async fn list_enrollments(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<IndividualEnrollment>> {
        self.readers
            .page_records(&sql::ENROLLMENTS, Entity::Enrollment, id_scope, page)
            .await
    }

    async fn import_enrollments(
        &self,
        id_scope: &IdScope,
        enrollments: Vec<IndividualEnrollment>,
    ) -> StoreResult<usize> {
        let id_scope = id_scope.clone();
        self.submit(|r| Job::ImportEnrollments(id_scope, enrollments, r))
            .await
    }

    async fn enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
    ) -> StoreResult<Option<EnrollmentGroup>> {
        let key = group_id.key();
        self.point().await.one(
            Entity::EnrollmentGroup,
            &key,
            sql::GROUPS.get,
            &[&id_scope.key(), &key],
        )
    }

    async fn put_enrollment_group(
        &self,
        id_scope: &IdScope,
        group: EnrollmentGroup,
        precondition: Precondition,
    ) -> StoreResult<Written<EnrollmentGroup>> {
        let id_scope = id_scope.clone();
        self.submit(|r| Job::PutGroup(id_scope, Box::new(group), precondition, r))
            .await
    }

    async fn delete_enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let (id_scope, id) = (id_scope.clone(), group_id.clone());
        self.submit(|r| Job::DeleteGroup(id_scope, id, precondition, r))
            .await
    }

    async fn list_enrollment_groups(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<EnrollmentGroup>> {
        self.readers
            .page_records(&sql::GROUPS, Entity::EnrollmentGroup, id_scope, page)
            .await
    }

    async fn all_enrollment_groups(&self, id_scope: &IdScope) -> StoreResult<Vec<EnrollmentGroup>> {
        let query = sqlx::query(sql::GROUPS.all).bind(id_scope.key());
        Ok(self
            .readers
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
        self.point().await.one(
            Entity::Registration,
            &key,
            sql::REGISTRATION,
            &[&id_scope.key(), &key],
        )
    }

    async fn commit_registration(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
    ) -> StoreResult<()> {
        let commit = Box::new(RegistrationCommit::encode(
            id_scope,
            &record,
            &operation,
            billing.as_ref(),
            None,
        )?);
        self.submit(|r| Job::CommitRegistration(commit, r)).await
    }

    async fn registration_operation(
        &self,
        id_scope: &IdScope,
        operation_id: &str,
    ) -> StoreResult<Option<RegistrationOperation>> {
        self.point().await.one(
            Entity::RegistrationOperation,
            operation_id,
            sql::OPERATION,
            &[&id_scope.key(), operation_id],
        )
    }

    async fn delete_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let (id_scope, id) = (id_scope.clone(), registration_id.clone());
        self.submit(|r| Job::DeleteRegistration(id_scope, id, precondition, r))
            .await
    }

    async fn list_registrations_by_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<RegistrationRecord>> {
        let size = page.effective_size();
        let query = sqlx::query(sql::REGISTRATIONS_OF_GROUP)
            .bind(id_scope.key())
            .bind(group_id.key())
            .bind(page.after_key().unwrap_or("").to_owned())
            .bind(limit(size + 1));
        self.readers.page(Entity::Registration, size, query).await
    }

    async fn count_registrations(&self, id_scope: &IdScope) -> StoreResult<u64> {
        let mut lent = self.readers.get().await;
        let (count,): (i64,) = sqlx::query_as(sql::COUNT_REGISTRATIONS)
            .bind(id_scope.key())
            .fetch_one(connection(&mut lent)?)
            .await
            .map_err(StoreError::database("counting registration records"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn purge_registration_operations(
        &self,
        created_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.submit(|r| Job::PurgeOperations(created_before, r))
            .await
    }

    async fn record_operation(&self, operation: OperationRecord) -> StoreResult<()> {
        let row = Box::new(BillingRow::new(&operation));
        self.submit(|r| Job::RecordOperation(row, r)).await
    }

    async fn operation_report(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<MeterReport> {
        let mut lent = self.readers.get().await;
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(sql::BILLING_BUCKETS)
            .bind(id_scope.key())
            .bind(time::to_micros(from))
            .bind(time::to_micros(to))
            .bind(time::HOUR_DIVISOR)
            .fetch_all(connection(&mut lent)?)
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
        let mut lent = self.readers.get().await;
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(sql::BILLING_ROWS)
            .bind(id_scope.key())
            .bind(time::to_micros(from))
            .bind(time::to_micros(to))
            .bind(limit(limit_rows))
            .fetch_all(connection(&mut lent)?)
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
