//! Store calls, timed and metered: a decorator over any [`Store`] that
//! records each call's duration (`dps_store_operation_duration_seconds`)
//! and counts the billing operations written through it
//! (`dps_billing_operations_total`). Writer statistics pass through.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment,
    IssuedCertificate, OperationKind, OperationRecord, Precondition, RegistrationId,
    RegistrationOperation, RegistrationRecord, Tenant,
};
use dps_storage::{
    MeterReport, Page, PageRequest, Store, StoreResult, StoredCertificateAuthority, WriterStats,
    Written,
};

pub use super::store_metrics::StoreMetrics;
use super::store_metrics::{write_kind, OperationLabels};

/// A store whose calls are timed and whose billing rows are counted.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<StoreMetrics>,
}

impl InstrumentedStore {
    /// Wrap `inner`.
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<StoreMetrics>) -> Arc<dyn Store> {
        Arc::new(InstrumentedStore { inner, metrics })
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let started = Instant::now();
        let result = work.await;
        self.metrics
            .operations
            .get_or_create(&OperationLabels {
                operation,
                result: if result.is_ok() { "ok" } else { "error" },
            })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Count `kind` once `result` is a success.
    fn billed<T>(
        &self,
        result: StoreResult<T>,
        kind: impl FnOnce(&T) -> OperationKind,
    ) -> StoreResult<T> {
        if let Ok(value) = &result {
            self.metrics.bill(kind(value));
        }
        result
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    fn writer_stats(&self) -> Option<WriterStats> {
        self.inner.writer_stats()
    }

    async fn create_certificate_authority(
        &self,
        id_scope: &IdScope,
        ca: StoredCertificateAuthority,
    ) -> StoreResult<StoredCertificateAuthority> {
        let call = self.inner.create_certificate_authority(id_scope, ca);
        self.timed("create_certificate_authority", call).await
    }

    async fn certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<StoredCertificateAuthority>> {
        let call = self.inner.certificate_authority(id_scope, name);
        self.timed("certificate_authority", call).await
    }

    async fn list_certificate_authorities(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<StoredCertificateAuthority>> {
        let call = self.inner.list_certificate_authorities(id_scope);
        self.timed("list_certificate_authorities", call).await
    }

    async fn delete_certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let call = self
            .inner
            .delete_certificate_authority(id_scope, name, precondition);
        self.timed("delete_certificate_authority", call).await
    }

    async fn put_credential_policy(
        &self,
        id_scope: &IdScope,
        policy: CredentialPolicy,
        precondition: Precondition,
    ) -> StoreResult<Written<CredentialPolicy>> {
        let call = self
            .inner
            .put_credential_policy(id_scope, policy, precondition);
        self.timed("put_credential_policy", call).await
    }

    async fn credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<CredentialPolicy>> {
        let call = self.inner.credential_policy(id_scope, name);
        self.timed("credential_policy", call).await
    }

    async fn list_credential_policies(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<CredentialPolicy>> {
        let call = self.inner.list_credential_policies(id_scope);
        self.timed("list_credential_policies", call).await
    }

    async fn delete_credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let call = self
            .inner
            .delete_credential_policy(id_scope, name, precondition);
        self.timed("delete_credential_policy", call).await
    }

    async fn commit_registration_with_certificate(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
        certificate: IssuedCertificate,
    ) -> StoreResult<()> {
        let kind = billing.as_ref().map(|b| b.kind);
        let call = self.inner.commit_registration_with_certificate(
            id_scope,
            record,
            operation,
            billing,
            certificate,
        );
        let result = self.timed("commit_registration", call).await;
        if let (Ok(()), Some(kind)) = (&result, kind) {
            self.metrics.bill(kind);
        }
        result
    }

    async fn issued_certificates(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        let call = self.inner.issued_certificates(id_scope, registration_id);
        self.timed("issued_certificates", call).await
    }

    async fn revoke_issued_certificate(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        serial_number: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<IssuedCertificate> {
        let call =
            self.inner
                .revoke_issued_certificate(id_scope, registration_id, serial_number, at);
        self.timed("revoke_issued_certificate", call).await
    }

    async fn revoked_certificates(
        &self,
        id_scope: &IdScope,
        authority_name: &str,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        let call = self.inner.revoked_certificates(id_scope, authority_name);
        self.timed("revoked_certificates", call).await
    }

    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<Tenant> {
        self.timed("create_tenant", self.inner.create_tenant(tenant))
            .await
    }

    async fn tenant(&self, id_scope: &IdScope) -> StoreResult<Option<Tenant>> {
        self.timed("tenant", self.inner.tenant(id_scope)).await
    }

    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        self.timed("tenant_by_name", self.inner.tenant_by_name(name))
            .await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.timed("list_tenants", self.inner.list_tenants()).await
    }

    async fn replace_tenant(
        &self,
        tenant: Tenant,
        precondition: Precondition,
    ) -> StoreResult<Tenant> {
        self.timed(
            "replace_tenant",
            self.inner.replace_tenant(tenant, precondition),
        )
        .await
    }

    async fn delete_tenant(
        &self,
        id_scope: &IdScope,
        precondition: Precondition,
    ) -> StoreResult<()> {
        self.timed(
            "delete_tenant",
            self.inner.delete_tenant(id_scope, precondition),
        )
        .await
    }

    async fn enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<IndividualEnrollment>> {
        self.timed(
            "enrollment",
            self.inner.enrollment(id_scope, registration_id),
        )
        .await
    }

    async fn enrollment_with_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<(IndividualEnrollment, Option<RegistrationRecord>)>> {
        self.timed(
            "enrollment_with_registration",
            self.inner
                .enrollment_with_registration(id_scope, registration_id),
        )
        .await
    }

    async fn put_enrollment(
        &self,
        id_scope: &IdScope,
        enrollment: IndividualEnrollment,
        precondition: Precondition,
    ) -> StoreResult<Written<IndividualEnrollment>> {
        let result = self
            .timed(
                "put_enrollment",
                self.inner
                    .put_enrollment(id_scope, enrollment, precondition),
            )
            .await;
        self.billed(result, |w| {
            write_kind(
                w.outcome,
                OperationKind::EnrollmentCreate,
                OperationKind::EnrollmentUpdate,
            )
        })
    }

    async fn delete_enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let result = self
            .timed(
                "delete_enrollment",
                self.inner
                    .delete_enrollment(id_scope, registration_id, precondition),
            )
            .await;
        self.billed(result, |_| OperationKind::EnrollmentDelete)
    }

    async fn delete_enrollment_and_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let result = self
            .timed(
                "delete_enrollment_and_registration",
                self.inner.delete_enrollment_and_registration(
                    id_scope,
                    registration_id,
                    precondition,
                ),
            )
            .await;
        self.billed(result, |_| OperationKind::EnrollmentDelete)
    }

    async fn list_enrollments(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<IndividualEnrollment>> {
        self.timed(
            "list_enrollments",
            self.inner.list_enrollments(id_scope, page),
        )
        .await
    }

    async fn import_enrollments(
        &self,
        id_scope: &IdScope,
        enrollments: Vec<IndividualEnrollment>,
    ) -> StoreResult<usize> {
        self.timed(
            "import_enrollments",
            self.inner.import_enrollments(id_scope, enrollments),
        )
        .await
    }

    async fn enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
    ) -> StoreResult<Option<EnrollmentGroup>> {
        self.timed(
            "enrollment_group",
            self.inner.enrollment_group(id_scope, group_id),
        )
        .await
    }

    async fn put_enrollment_group(
        &self,
        id_scope: &IdScope,
        group: EnrollmentGroup,
        precondition: Precondition,
    ) -> StoreResult<Written<EnrollmentGroup>> {
        let result = self
            .timed(
                "put_enrollment_group",
                self.inner
                    .put_enrollment_group(id_scope, group, precondition),
            )
            .await;
        self.billed(result, |w| {
            write_kind(
                w.outcome,
                OperationKind::GroupCreate,
                OperationKind::GroupUpdate,
            )
        })
    }

    async fn delete_enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let result = self
            .timed(
                "delete_enrollment_group",
                self.inner
                    .delete_enrollment_group(id_scope, group_id, precondition),
            )
            .await;
        self.billed(result, |_| OperationKind::GroupDelete)
    }

    async fn list_enrollment_groups(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<EnrollmentGroup>> {
        self.timed(
            "list_enrollment_groups",
            self.inner.list_enrollment_groups(id_scope, page),
        )
        .await
    }

    async fn all_enrollment_groups(&self, id_scope: &IdScope) -> StoreResult<Vec<EnrollmentGroup>> {
        self.timed(
            "all_enrollment_groups",
            self.inner.all_enrollment_groups(id_scope),
        )
        .await
    }

    async fn registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<RegistrationRecord>> {
        self.timed(
            "registration",
            self.inner.registration(id_scope, registration_id),
        )
        .await
    }

    async fn commit_registration(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
    ) -> StoreResult<()> {
        let kind = billing.as_ref().map(|b| b.kind);
        let result = self
            .timed(
                "commit_registration",
                self.inner
                    .commit_registration(id_scope, record, operation, billing),
            )
            .await;
        if let (Ok(()), Some(kind)) = (&result, kind) {
            self.metrics.bill(kind);
        }
        result
    }

    async fn registration_operation(
        &self,
        id_scope: &IdScope,
        operation_id: &str,
    ) -> StoreResult<Option<RegistrationOperation>> {
        self.timed(
            "registration_operation",
            self.inner.registration_operation(id_scope, operation_id),
        )
        .await
    }

    async fn delete_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let result = self
            .timed(
                "delete_registration",
                self.inner
                    .delete_registration(id_scope, registration_id, precondition),
            )
            .await;
        self.billed(result, |_| OperationKind::RegistrationStateDelete)
    }

    async fn list_registrations_by_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<RegistrationRecord>> {
        self.timed(
            "list_registrations_by_group",
            self.inner
                .list_registrations_by_group(id_scope, group_id, page),
        )
        .await
    }

    async fn count_registrations(&self, id_scope: &IdScope) -> StoreResult<u64> {
        self.timed(
            "count_registrations",
            self.inner.count_registrations(id_scope),
        )
        .await
    }

    async fn purge_registration_operations(
        &self,
        created_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.timed(
            "purge_registration_operations",
            self.inner.purge_registration_operations(created_before),
        )
        .await
    }

    async fn record_operation(&self, operation: OperationRecord) -> StoreResult<()> {
        let kind = operation.kind;
        let result = self
            .timed("record_operation", self.inner.record_operation(operation))
            .await;
        self.billed(result, |_| kind)
    }

    async fn operation_report(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<MeterReport> {
        self.timed(
            "operation_report",
            self.inner.operation_report(id_scope, from, to),
        )
        .await
    }

    async fn operations(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<OperationRecord>> {
        self.timed(
            "operations",
            self.inner.operations(id_scope, from, to, limit),
        )
        .await
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
