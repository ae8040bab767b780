//! The storage trait every backend implements, and the values it returns.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment,
    IssuedCertificate, OperationKind, OperationRecord, Precondition, RegistrationId,
    RegistrationOperation, RegistrationRecord, Tenant,
};
use serde::Serialize;

use crate::authorities::StoredCertificateAuthority;
use crate::error::StoreResult;
use crate::token::{Page, PageRequest};

/// Whether a write created the record or replaced an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// There was no record: it was created (HTTP 200 with a new record in Azure's API).
    Created,
    /// An existing record was replaced.
    Replaced,
}

/// A record as stored by a write (new etag, timestamps), and what the write did.
#[derive(Clone, Debug, PartialEq)]
pub struct Written<T> {
    /// The record as now stored.
    pub record: T,
    /// Created or replaced.
    pub outcome: WriteOutcome,
}

/// Billing counts of one tenant over a time range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterReport {
    /// The tenant.
    pub id_scope: IdScope,
    /// Start of the range (inclusive).
    #[serde(with = "dps_model::time::azure")]
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    #[serde(with = "dps_model::time::azure")]
    pub to: DateTime<Utc>,
    /// Counts per hour and kind, ordered by hour then kind; empty buckets are left out.
    pub hourly: Vec<HourlyCount>,
    /// Counts per kind over the whole range; kinds with no operation are left out.
    pub totals: BTreeMap<OperationKind, u64>,
    /// All operations in the range.
    pub total: u64,
}

/// Operations of one kind within one clock hour (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourlyCount {
    /// Start of the hour.
    #[serde(with = "dps_model::time::azure")]
    pub hour: DateTime<Utc>,
    /// What was done.
    pub kind: OperationKind,
    /// How many times.
    pub count: u64,
}

impl MeterReport {
    /// Build a report from `(hour index since the epoch, kind, count)` rows.
    pub(crate) fn from_buckets(
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        buckets: impl IntoIterator<Item = (i64, OperationKind, u64)>,
    ) -> Self {
        let mut hourly: Vec<HourlyCount> = buckets
            .into_iter()
            .filter(|(_, _, count)| *count > 0)
            .map(|(hour, kind, count)| HourlyCount {
                hour: crate::time::hour_start(hour),
                kind,
                count,
            })
            .collect();
        hourly.sort_by_key(|h| (h.hour, h.kind));
        let mut totals = BTreeMap::new();
        for h in &hourly {
            *totals.entry(h.kind).or_insert(0) += h.count;
        }
        MeterReport {
            id_scope: id_scope.clone(),
            from,
            to,
            total: totals.values().sum(),
            hourly,
            totals,
        }
    }
}

/// Everything dps keeps: tenants, enrollments, groups, registration records,
/// device operations and the billing meter.
///
/// Conventions shared by every method:
/// * Ids are case-insensitive: records are found by their lower-case key and
///   keep the spelling they were written with.
/// * Reads under an ID scope that names no tenant find nothing (`None`, empty
///   page, zero); writes under it fail with [`StoreError::UnknownTenant`].
/// * Writes of enrollments and groups generate a new etag, keep the creation
///   time of the first write, set the last-update time, and store their billing
///   row in the same transaction.
/// * A call that returned `Ok` is committed; an error means nothing of it was
///   stored.
///
/// [`StoreError::UnknownTenant`]: crate::StoreError::UnknownTenant
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The counters of the backend's batching writer (queue depth, batch
    /// sizes), for metrics; `None` for a backend without one (PostgreSQL
    /// settles every write in its own statement, the memory store at once).
    fn writer_stats(&self) -> Option<crate::WriterStats> {
        None
    }

    // ----- tenants -------------------------------------------------------

    /// Create a tenant. Fails with `AlreadyExists` when its name or its ID
    /// scope is taken. A new etag is generated; `created` is kept as given.
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<Tenant>;

    /// The tenant with this ID scope.
    async fn tenant(&self, id_scope: &IdScope) -> StoreResult<Option<Tenant>>;

    /// The tenant with this name.
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>>;

    /// Every tenant, ordered by name.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;

    /// Replace the tenant with the same ID scope. Fails with `NotFound` when
    /// there is none, `PreconditionFailed` on an etag mismatch, and
    /// `AlreadyExists` when a new name is taken. A new etag is generated;
    /// `created` is kept from the stored tenant.
    async fn replace_tenant(
        &self,
        tenant: Tenant,
        precondition: Precondition,
    ) -> StoreResult<Tenant>;

    /// Delete a tenant and everything that belongs to it: enrollments, groups,
    /// registration records, device operations and billing rows.
    async fn delete_tenant(
        &self,
        id_scope: &IdScope,
        precondition: Precondition,
    ) -> StoreResult<()>;

    // ----- individual enrollments ---------------------------------------

    /// The individual enrollment of this registration id.
    async fn enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<IndividualEnrollment>>;

    /// The individual enrollment of this registration id together with the
    /// device's registration record, if it has one: what the service API's
    /// GET shows. Backends that can read both in one statement override this.
    async fn enrollment_with_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<(IndividualEnrollment, Option<RegistrationRecord>)>> {
        let Some(enrollment) = self.enrollment(id_scope, registration_id).await? else {
            return Ok(None);
        };
        let record = self.registration(id_scope, registration_id).await?;
        Ok(Some((enrollment, record)))
    }

    /// Create or replace an individual enrollment under `precondition`, with
    /// its `enrollmentCreate`/`enrollmentUpdate` billing row.
    async fn put_enrollment(
        &self,
        id_scope: &IdScope,
        enrollment: IndividualEnrollment,
        precondition: Precondition,
    ) -> StoreResult<Written<IndividualEnrollment>>;

    /// Delete an individual enrollment (`NotFound` when missing), with its
    /// `enrollmentDelete` billing row.
    async fn delete_enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()>;

    /// Delete an individual enrollment (`NotFound` when missing) together
    /// with the registration record of the same id, if there is one, in one
    /// transaction billed once (`enrollmentDelete`): the service API's
    /// delete, where the device's record goes with its enrollment.
    async fn delete_enrollment_and_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()>;

    /// A page of individual enrollments in registration-id order.
    async fn list_enrollments(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<IndividualEnrollment>>;

    /// Administrative bulk load (restore, migration, benchmarks): create or
    /// replace every enrollment unconditionally in one transaction, keeping
    /// the etag and timestamps each carries (missing ones are filled in), and
    /// **not billed** (no billable instruction was performed). Returns how
    /// many were written.
    async fn import_enrollments(
        &self,
        id_scope: &IdScope,
        enrollments: Vec<IndividualEnrollment>,
    ) -> StoreResult<usize>;

    // ----- enrollment groups ---------------------------------------------

    /// The enrollment group with this id.
    async fn enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
    ) -> StoreResult<Option<EnrollmentGroup>>;

    /// Create or replace a group under `precondition`, with its
    /// `groupCreate`/`groupUpdate` billing row.
    async fn put_enrollment_group(
        &self,
        id_scope: &IdScope,
        group: EnrollmentGroup,
        precondition: Precondition,
    ) -> StoreResult<Written<EnrollmentGroup>>;

    /// Delete a group (`NotFound` when missing), with its `groupDelete` billing row.
    /// Registration records made through the group stay.
    async fn delete_enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        precondition: Precondition,
    ) -> StoreResult<()>;

    /// A page of groups in group-id order.
    async fn list_enrollment_groups(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<EnrollmentGroup>>;

    /// Every group of a tenant in group-id order (the registration path scans them).
    async fn all_enrollment_groups(&self, id_scope: &IdScope) -> StoreResult<Vec<EnrollmentGroup>>;

    // ----- registration records and device operations --------------------

    /// The registration record of this device.
    async fn registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<RegistrationRecord>>;

    /// Atomically store a device's registration record (insert or replace, as
    /// given: the caller sets etag and timestamps, which the operation's answer
    /// repeats), its operation (the answer polls get, `operationId` unique per
    /// tenant) and its billing row if the outcome is billable. All or nothing:
    /// a duplicate operation id fails with `AlreadyExists` and stores nothing.
    ///
    /// An `assigned` record also marks the registration's `active` issued
    /// certificates `superseded` at the record's `last_updated`, in the same
    /// transaction: an assignment without a certificate put the onboarding
    /// credential back on the hub identity. A failed or disabled record
    /// leaves them as they are.
    async fn commit_registration(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
    ) -> StoreResult<()>;

    /// A device's registration operation by id.
    async fn registration_operation(
        &self,
        id_scope: &IdScope,
        operation_id: &str,
    ) -> StoreResult<Option<RegistrationOperation>>;

    /// Delete a registration record (`NotFound` when missing), with its
    /// `registrationStateDelete` billing row.
    async fn delete_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()>;

    /// A page of the registration records made through a group, in
    /// registration-id order.
    async fn list_registrations_by_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<RegistrationRecord>>;

    /// How many registration records a tenant has.
    async fn count_registrations(&self, id_scope: &IdScope) -> StoreResult<u64>;

    /// Delete device operations created before `created_before` (all tenants);
    /// returns how many. Keep at least 24 hours.
    async fn purge_registration_operations(
        &self,
        created_before: DateTime<Utc>,
    ) -> StoreResult<u64>;

    // ----- certificate authorities and credential policies ---------------
    //
    // Names are case-sensitive keys. None of these writes is billed: managing
    // CAs and policies is not a DPS operation Azure meters (Azure keeps them
    // in Azure Device Registry).

    /// Store a new tenant CA; `AlreadyExists` when its name is taken. A new
    /// etag is generated; the creation time is kept as given.
    async fn create_certificate_authority(
        &self,
        id_scope: &IdScope,
        authority: StoredCertificateAuthority,
    ) -> StoreResult<StoredCertificateAuthority>;

    /// The tenant CA with this name, with its sealed private key.
    async fn certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<StoredCertificateAuthority>>;

    /// Every CA of a tenant, ordered by name.
    async fn list_certificate_authorities(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<StoredCertificateAuthority>>;

    /// Delete a tenant CA: `NotFound` when missing, `PreconditionFailed` on
    /// an etag mismatch, `InUse` while a credential policy names it.
    async fn delete_certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()>;

    /// Create or replace a credential policy under `precondition`; fails with
    /// `MissingReference` when the CA it names does not exist. A new etag is
    /// generated, the creation time of the first write kept, the last-update
    /// time set.
    async fn put_credential_policy(
        &self,
        id_scope: &IdScope,
        policy: CredentialPolicy,
        precondition: Precondition,
    ) -> StoreResult<Written<CredentialPolicy>>;

    /// The credential policy with this name.
    async fn credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<CredentialPolicy>>;

    /// Every credential policy of a tenant, ordered by name.
    async fn list_credential_policies(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<CredentialPolicy>>;

    /// Delete a credential policy: `NotFound` when missing,
    /// `PreconditionFailed` on an etag mismatch, `InUse` while an individual
    /// enrollment or an enrollment group names it.
    async fn delete_credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()>;

    // ----- issued certificates ------------------------------------------

    /// [`commit_registration`](Store::commit_registration) for a
    /// registration that was issued `certificate`, in the same transaction:
    /// the record, the operation, the billing row and the certificate are
    /// stored together or not at all, and every other `active` certificate
    /// of the registration becomes `superseded` at the certificate's issue
    /// time. Fails with `AlreadyExists` (entity `IssuedCertificate`) when the
    /// CA already issued that serial number, and `MissingReference` when the
    /// certificate names another registration than the record.
    async fn commit_registration_with_certificate(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
        certificate: IssuedCertificate,
    ) -> StoreResult<()>;

    /// Every certificate issued to a registration, newest first.
    async fn issued_certificates(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Vec<IssuedCertificate>>;

    /// Revoke the certificate of this serial number issued to this
    /// registration, at `at`, and return it; `NotFound` when there is none.
    /// Revoking a revoked certificate changes nothing (its revocation time
    /// stays). Not billed.
    async fn revoke_issued_certificate(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        serial_number: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<IssuedCertificate>;

    /// Every revoked certificate a CA issued (what its CRL lists), oldest
    /// revocation first.
    async fn revoked_certificates(
        &self,
        id_scope: &IdScope,
        authority_name: &str,
    ) -> StoreResult<Vec<IssuedCertificate>>;

    // ----- operations meter (billing) -------------------------------------

    /// Store one billing row (reads and queries, which change nothing else).
    async fn record_operation(&self, operation: OperationRecord) -> StoreResult<()>;

    /// Counts per hour and kind of a tenant's operations in `from..to`.
    async fn operation_report(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<MeterReport>;

    /// A tenant's billing rows in `from..to`, oldest first, at most `limit`.
    async fn operations(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<OperationRecord>>;
}
