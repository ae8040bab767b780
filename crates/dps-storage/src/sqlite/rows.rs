//! Writes prepared for SQL: keys lower-cased, times in microseconds, records
//! encoded as JSON — done by the caller's task before the write reaches the
//! single writer, so the writer only runs statements.

use dps_model::{
    IdScope, IssuedCertificate, OperationRecord, RegistrationOperation, RegistrationRecord,
};

use super::issued::IssuedRow;
use crate::error::{Entity, StoreResult};
use crate::time;
use crate::{issued, rules};

/// A billing row ready to insert.
#[derive(Debug)]
pub(crate) struct BillingRow {
    /// The tenant, for errors.
    pub(crate) id_scope: IdScope,
    pub(crate) scope_key: String,
    pub(crate) at_us: i64,
    pub(crate) kind: &'static str,
    pub(crate) subject: Option<String>,
}

impl BillingRow {
    pub(crate) fn new(row: &OperationRecord) -> Self {
        BillingRow {
            id_scope: row.id_scope.clone(),
            scope_key: row.id_scope.key(),
            at_us: time::to_micros(row.at),
            kind: row.kind.as_str(),
            subject: row.subject.clone(),
        }
    }
}

/// One `commit_registration` call ready to insert.
#[derive(Debug)]
pub(crate) struct RegistrationCommit {
    /// The tenant, for errors.
    pub(crate) id_scope: IdScope,
    pub(crate) scope_key: String,
    pub(crate) registration_key: String,
    pub(crate) group_key: Option<String>,
    pub(crate) etag: String,
    pub(crate) record_body: String,
    pub(crate) operation_id: String,
    pub(crate) operation_created_us: i64,
    pub(crate) operation_body: String,
    pub(crate) billing: Option<BillingRow>,
    /// A certificate issued with the registration: such a commit never
    /// takes the multi-row fast path.
    pub(crate) certificate: Option<IssuedRow>,
    /// When the registration's active certificates become superseded
    /// ([`issued::superseded_at`]), in the Azure form their JSON holds.
    pub(crate) superseded_at: Option<String>,
}

impl RegistrationCommit {
    /// Check and encode; a billing row of another tenant, or a certificate of
    /// another registration, is refused.
    pub(crate) fn encode(
        id_scope: &IdScope,
        record: &RegistrationRecord,
        operation: &RegistrationOperation,
        billing: Option<&OperationRecord>,
        certificate: Option<IssuedCertificate>,
    ) -> StoreResult<Self> {
        issued::check_commit(id_scope, record, billing, certificate.as_ref())?;
        let registration_key = record.registration_id.key();
        Ok(RegistrationCommit {
            id_scope: id_scope.clone(),
            scope_key: id_scope.key(),
            group_key: record.enrollment_group_id.as_ref().map(|g| g.key()),
            etag: record.etag.as_str().to_owned(),
            record_body: rules::encode(Entity::Registration, &registration_key, record)?,
            registration_key,
            operation_id: operation.operation_id.clone(),
            operation_created_us: time::to_micros(operation.created),
            operation_body: rules::encode(
                Entity::RegistrationOperation,
                &operation.operation_id,
                operation,
            )?,
            billing: billing.map(|row| BillingRow {
                // Same tenant, checked above; stored under the commit's key.
                scope_key: id_scope.key(),
                ..BillingRow::new(row)
            }),
            superseded_at: issued::superseded_at(record, certificate.as_ref())
                .map(|at| dps_model::time::format(&at)),
            certificate: certificate.map(IssuedRow::encode).transpose()?,
        })
    }
}
