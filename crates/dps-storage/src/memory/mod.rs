//! The in-memory backend: everything in maps behind one lock. For tests and
//! for embedding dps where nothing must survive a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, ETag, EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment,
    IssuedCertificate, OperationRecord, Precondition, RegistrationId, RegistrationOperation,
    RegistrationRecord, Tenant,
};

use crate::authorities::StoredCertificateAuthority;
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules::{self, EnrollmentLike};
use crate::store::{MeterReport, Store, Written};
use crate::time;
use crate::token::{Page, PageRequest};

mod authorities;
mod issued;
mod state;

use self::state::{enrollments, enrollments_ref, groups, groups_ref, in_range, State, TenantData};

/// A store that keeps everything in memory. Same semantics as the durable
/// backends (records come back exactly as if they had been stored as JSON);
/// nothing survives the value.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_certificate_authority(
        &self,
        id_scope: &IdScope,
        authority: StoredCertificateAuthority,
    ) -> StoreResult<StoredCertificateAuthority> {
        self.create_authority(id_scope, authority)
    }

    async fn certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<StoredCertificateAuthority>> {
        Ok(self
            .read()
            .data(id_scope)
            .and_then(|data| data.authorities.get(name).cloned()))
    }

    async fn list_certificate_authorities(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<StoredCertificateAuthority>> {
        Ok(self
            .read()
            .data(id_scope)
            .map(|data| data.authorities.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn delete_certificate_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        self.delete_authority(id_scope, name, precondition)
    }

    async fn put_credential_policy(
        &self,
        id_scope: &IdScope,
        policy: CredentialPolicy,
        precondition: Precondition,
    ) -> StoreResult<Written<CredentialPolicy>> {
        self.put_policy(id_scope, policy, precondition)
    }

    async fn credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
    ) -> StoreResult<Option<CredentialPolicy>> {
        Ok(self
            .read()
            .data(id_scope)
            .and_then(|data| data.policies.get(name).cloned()))
    }

    async fn list_credential_policies(
        &self,
        id_scope: &IdScope,
    ) -> StoreResult<Vec<CredentialPolicy>> {
        Ok(self
            .read()
            .data(id_scope)
            .map(|data| data.policies.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn delete_credential_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        self.delete_policy(id_scope, name, precondition)
    }

    async fn create_tenant(&self, mut tenant: Tenant) -> StoreResult<Tenant> {
        let key = tenant.id_scope.key();
        let mut state = self.write();
        if state.tenants.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.id_scope.to_string(),
            });
        }
        if state.names.contains_key(&tenant.name) {
            return Err(StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.name.clone(),
            });
        }
        tenant.etag = ETag::generate();
        let tenant = rules::normalize(Entity::Tenant, &key, &tenant)?;
        state.names.insert(tenant.name.clone(), key.clone());
        state.tenants.insert(
            key,
            TenantData {
                tenant: tenant.clone(),
                enrollments: BTreeMap::new(),
                groups: BTreeMap::new(),
                registrations: BTreeMap::new(),
                operations: HashMap::new(),
                billing: Vec::new(),
                authorities: BTreeMap::new(),
                policies: BTreeMap::new(),
                issued: BTreeMap::new(),
            },
        );
        Ok(tenant)
    }

    async fn tenant(&self, id_scope: &IdScope) -> StoreResult<Option<Tenant>> {
        Ok(self.read().data(id_scope).map(|d| d.tenant.clone()))
    }

    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let state = self.read();
        Ok(state
            .names
            .get(name)
            .and_then(|key| state.tenants.get(key))
            .map(|d| d.tenant.clone()))
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let mut all: Vec<Tenant> = self
            .read()
            .tenants
            .values()
            .map(|d| d.tenant.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn replace_tenant(
        &self,
        mut tenant: Tenant,
        precondition: Precondition,
    ) -> StoreResult<Tenant> {
        let key = tenant.id_scope.key();
        let mut state = self.write();
        let Some(current) = state.tenants.get(&key).map(|d| d.tenant.clone()) else {
            return Err(StoreError::NotFound {
                entity: Entity::Tenant,
                id: tenant.id_scope.to_string(),
            });
        };
        rules::check_put(
            Entity::Tenant,
            tenant.id_scope.as_str(),
            Some(&current.etag),
            &precondition,
        )?;
        if tenant.name != current.name && state.names.contains_key(&tenant.name) {
            return Err(StoreError::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.name.clone(),
            });
        }
        tenant.etag = ETag::generate();
        tenant.created = current.created;
        let tenant = rules::normalize(Entity::Tenant, &key, &tenant)?;
        state.names.remove(&current.name);
        state.names.insert(tenant.name.clone(), key.clone());
        if let Some(data) = state.tenants.get_mut(&key) {
            data.tenant = tenant.clone();
        }
        Ok(tenant)
    }

    async fn delete_tenant(
        &self,
        id_scope: &IdScope,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let key = id_scope.key();
        let mut state = self.write();
        let current = state.tenants.get(&key).map(|d| d.tenant.etag.clone());
        rules::check_delete(
            Entity::Tenant,
            id_scope.as_str(),
            current.as_ref(),
            &precondition,
        )?;
        if let Some(data) = state.tenants.remove(&key) {
            state.names.remove(&data.tenant.name);
        }
        Ok(())
    }

    async fn enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<IndividualEnrollment>> {
        Ok(self.get(id_scope, &registration_id.key(), enrollments_ref))
    }

    async fn put_enrollment(
        &self,
        id_scope: &IdScope,
        enrollment: IndividualEnrollment,
        precondition: Precondition,
    ) -> StoreResult<Written<IndividualEnrollment>> {
        self.put(id_scope, enrollment, precondition, enrollments)
    }

    async fn delete_enrollment(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        self.delete(
            id_scope,
            registration_id.as_str(),
            &registration_id.key(),
            precondition,
            enrollments,
        )
    }

    async fn delete_enrollment_and_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let key = registration_id.key();
        // One lock for both removals: nobody sees one without the other.
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let current_tag = data
            .enrollments
            .get(&key)
            .map(|c| c.etag().cloned().unwrap_or_else(|| ETag::new("")));
        rules::check_delete(
            Entity::Enrollment,
            registration_id.as_str(),
            current_tag.as_ref(),
            &precondition,
        )?;
        data.enrollments.remove(&key);
        data.registrations.remove(&key);
        data.billing.push(rules::billing(
            id_scope,
            dps_model::OperationKind::EnrollmentDelete,
            registration_id.as_str(),
            time::now(),
        ));
        Ok(())
    }

    async fn list_enrollments(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<IndividualEnrollment>> {
        Ok(match self.read().data(id_scope) {
            Some(data) => Self::page(&data.enrollments, page),
            None => Page::from_overfetch(Vec::new(), 1),
        })
    }

    async fn import_enrollments(
        &self,
        id_scope: &IdScope,
        enrollments: Vec<IndividualEnrollment>,
    ) -> StoreResult<usize> {
        let now = time::now();
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let mut prepared = Vec::with_capacity(enrollments.len());
        for mut enrollment in enrollments {
            let key = enrollment.key();
            rules::stamp_import(&mut enrollment, now);
            prepared.push((
                key.clone(),
                rules::normalize(Entity::Enrollment, &key, &enrollment)?,
            ));
        }
        let count = prepared.len();
        data.enrollments.extend(prepared);
        Ok(count)
    }

    async fn enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
    ) -> StoreResult<Option<EnrollmentGroup>> {
        Ok(self.get(id_scope, &group_id.key(), groups_ref))
    }

    async fn put_enrollment_group(
        &self,
        id_scope: &IdScope,
        group: EnrollmentGroup,
        precondition: Precondition,
    ) -> StoreResult<Written<EnrollmentGroup>> {
        self.put(id_scope, group, precondition, groups)
    }

    async fn delete_enrollment_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        self.delete(
            id_scope,
            group_id.as_str(),
            &group_id.key(),
            precondition,
            groups,
        )
    }

    async fn list_enrollment_groups(
        &self,
        id_scope: &IdScope,
        page: &PageRequest,
    ) -> StoreResult<Page<EnrollmentGroup>> {
        Ok(match self.read().data(id_scope) {
            Some(data) => Self::page(&data.groups, page),
            None => Page::from_overfetch(Vec::new(), 1),
        })
    }

    async fn all_enrollment_groups(&self, id_scope: &IdScope) -> StoreResult<Vec<EnrollmentGroup>> {
        Ok(self
            .read()
            .data(id_scope)
            .map(|data| data.groups.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Option<RegistrationRecord>> {
        Ok(self
            .read()
            .data(id_scope)
            .and_then(|data| data.registrations.get(&registration_id.key()).cloned()))
    }

    async fn commit_registration(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
    ) -> StoreResult<()> {
        self.commit(id_scope, record, operation, billing, None)
    }

    async fn commit_registration_with_certificate(
        &self,
        id_scope: &IdScope,
        record: RegistrationRecord,
        operation: RegistrationOperation,
        billing: Option<OperationRecord>,
        certificate: IssuedCertificate,
    ) -> StoreResult<()> {
        self.commit(id_scope, record, operation, billing, Some(certificate))
    }

    async fn issued_certificates(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        Ok(self.issued_to(id_scope, registration_id))
    }

    async fn revoke_issued_certificate(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        serial_number: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<IssuedCertificate> {
        self.revoke(id_scope, registration_id, serial_number, at)
    }

    async fn revoked_certificates(
        &self,
        id_scope: &IdScope,
        authority_name: &str,
    ) -> StoreResult<Vec<IssuedCertificate>> {
        Ok(self.revoked_by(id_scope, authority_name))
    }

    async fn registration_operation(
        &self,
        id_scope: &IdScope,
        operation_id: &str,
    ) -> StoreResult<Option<RegistrationOperation>> {
        Ok(self
            .read()
            .data(id_scope)
            .and_then(|data| data.operations.get(operation_id).cloned()))
    }

    async fn delete_registration(
        &self,
        id_scope: &IdScope,
        registration_id: &RegistrationId,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let now = time::now();
        let key = registration_id.key();
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let current = data.registrations.get(&key).map(|r| r.etag.clone());
        rules::check_delete(
            Entity::Registration,
            registration_id.as_str(),
            current.as_ref(),
            &precondition,
        )?;
        data.registrations.remove(&key);
        data.billing.push(rules::billing(
            id_scope,
            dps_model::OperationKind::RegistrationStateDelete,
            registration_id.as_str(),
            now,
        ));
        Ok(())
    }

    async fn list_registrations_by_group(
        &self,
        id_scope: &IdScope,
        group_id: &EnrollmentGroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<RegistrationRecord>> {
        let state = self.read();
        let Some(data) = state.data(id_scope) else {
            return Ok(Page::from_overfetch(Vec::new(), 1));
        };
        let size = page.effective_size();
        let after = page.after_key().unwrap_or("");
        let rows = data
            .registrations
            .iter()
            .filter(|(key, _)| key.as_str() > after)
            .filter(|(_, r)| r.enrollment_group_id.as_ref() == Some(group_id))
            .take(size + 1)
            .map(|(key, r)| (key.clone(), r.clone()))
            .collect();
        Ok(Page::from_overfetch(rows, size))
    }

    async fn count_registrations(&self, id_scope: &IdScope) -> StoreResult<u64> {
        Ok(self
            .read()
            .data(id_scope)
            .map_or(0, |data| data.registrations.len() as u64))
    }

    async fn purge_registration_operations(
        &self,
        created_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let cutoff = time::to_micros(created_before);
        let mut purged = 0;
        for data in self.write().tenants.values_mut() {
            let before = data.operations.len();
            data.operations
                .retain(|_, op| time::to_micros(op.created) >= cutoff);
            purged += (before - data.operations.len()) as u64;
        }
        Ok(purged)
    }

    async fn record_operation(&self, mut operation: OperationRecord) -> StoreResult<()> {
        operation.at = time::truncate(operation.at);
        let mut state = self.write();
        state
            .data_mut(&operation.id_scope.clone())?
            .billing
            .push(operation);
        Ok(())
    }

    async fn operation_report(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<MeterReport> {
        let mut buckets = BTreeMap::new();
        if let Some(data) = self.read().data(id_scope) {
            for row in data.billing.iter().filter(|r| in_range(r.at, from, to)) {
                let hour = time::hour_index(time::to_micros(row.at));
                *buckets.entry((hour, row.kind)).or_insert(0u64) += 1;
            }
        }
        Ok(MeterReport::from_buckets(
            id_scope,
            from,
            to,
            buckets
                .into_iter()
                .map(|((hour, kind), count)| (hour, kind, count)),
        ))
    }

    async fn operations(
        &self,
        id_scope: &IdScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<OperationRecord>> {
        let state = self.read();
        let Some(data) = state.data(id_scope) else {
            return Ok(Vec::new());
        };
        let mut rows: Vec<OperationRecord> = data
            .billing
            .iter()
            .filter(|r| in_range(r.at, from, to))
            .cloned()
            .collect();
        // Stable: rows of one instant stay in insertion order.
        rows.sort_by_key(|r| r.at);
        rows.truncate(limit);
        Ok(rows)
    }
}
