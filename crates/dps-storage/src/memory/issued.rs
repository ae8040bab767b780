//! Registration commits (with or without an issued certificate) and issued
//! certificates in the memory store.

use chrono::{DateTime, Utc};
use dps_model::{
    IdScope, IssuedCertificate, IssuedCertificateStatus, OperationRecord, RegistrationId,
    RegistrationOperation, RegistrationRecord,
};

use super::MemoryStore;
use crate::error::{Entity, StoreError, StoreResult};
use crate::{issued, rules, time};

impl MemoryStore {
    /// Record, operation, billing row and certificate: all checked before
    /// anything is changed, so a refusal leaves nothing behind.
    pub(super) fn commit(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
        certificate: Option<IssuedCertificate>,
    ) -> StoreResult<()> {
        issued::check_commit(id_scope, &record, billing.as_ref(), certificate.as_ref())?;
        let key = record.registration_id.key();
        let record = rules::normalize(Entity::Registration, &key, &record)?;
        let operation = rules::normalize(
            Entity::RegistrationOperation,
            &operation.operation_id,
            &operation,
        )?;
        let certificate = certificate
            .map(|c| rules::normalize(Entity::IssuedCertificate, &c.serial_number, &c))
            .transpose()?;
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        if data.operations.contains_key(&operation.operation_id) {
            return Err(StoreError::AlreadyExists {
                entity: Entity::RegistrationOperation,
                id: operation.operation_id,
            });
        }
        if let Some(cert) = &certificate {
            let slot = (
                cert.certificate_authority_name.clone(),
                cert.serial_number.clone(),
            );
            if data.issued.contains_key(&slot) {
                return Err(issued::duplicate(cert));
            }
        }
        if let Some(at) = issued::superseded_at(&record, certificate.as_ref()) {
            for old in data
                .issued
                .values_mut()
                .filter(|old| old.registration_id.key() == key)
            {
                old.supersede(at);
            }
        }
        if let Some(cert) = certificate {
            let slot = (
                cert.certificate_authority_name.clone(),
                cert.serial_number.clone(),
            );
            data.issued.insert(slot, cert);
        }
        data.registrations.insert(key, record);
        data.operations
            .insert(operation.operation_id.clone(), operation);
        if let Some(mut row) = billing {
            row.at = time::truncate(row.at);
            data.billing.push(row);
        }
        Ok(())
    }

    pub(super) fn issued_to(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> Vec<IssuedCertificate> {
        let key = registration_id.key();
        let mut certs: Vec<IssuedCertificate> = self
            .read()
            .data(id_scope)
            .map(|data| {
                data.issued
                    .values()
                    .filter(|c| c.registration_id.key() == key)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        issued::sort_newest_first(&mut certs);
        certs
    }

    pub(super) fn revoke(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        serial_number: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<IssuedCertificate> {
        let key = registration_id.key();
        let at = time::truncate(at);
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let cert = data
            .issued
            .values_mut()
            .find(|c| c.registration_id.key() == key && c.serial_number == serial_number)
            .ok_or_else(|| issued::not_found(serial_number))?;
        cert.revoke(at);
        Ok(cert.clone())
    }

    pub(super) fn revoked_by(&self, id_scope: &IdScope, authority: &str) -> Vec<IssuedCertificate> {
        let mut certs: Vec<IssuedCertificate> = self
            .read()
            .data(id_scope)
            .map(|data| {
                data.issued
                    .values()
                    .filter(|c| {
                        c.certificate_authority_name == authority
                            && c.status == IssuedCertificateStatus::Revoked
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        issued::sort_by_revocation(&mut certs);
        certs
    }
}
