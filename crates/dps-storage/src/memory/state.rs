//! The store's state behind its lock: tenants and their records, and the
//! generic get/put/delete/page every record kind shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, ETag, EnrollmentGroup, IdScope, IndividualEnrollment, IssuedCertificate,
    OperationRecord, Precondition, RegistrationOperation, RegistrationRecord, Tenant,
};

use super::MemoryStore;
use crate::authorities::StoredCertificateAuthority;
use crate::error::{StoreError, StoreResult};
use crate::rules::{self, EnrollmentLike};
use crate::store::Written;
use crate::time;
use crate::token::{Page, PageRequest};

#[derive(Debug, Default)]
pub(super) struct State {
    /// By ID scope key.
    pub(super) tenants: BTreeMap<String, TenantData>,
    /// Tenant name → ID scope key.
    pub(super) names: HashMap<String, String>,
}

#[derive(Debug)]
pub(super) struct TenantData {
    pub(super) tenant: Tenant,
    pub(super) enrollments: BTreeMap<String, IndividualEnrollment>,
    pub(super) groups: BTreeMap<String, EnrollmentGroup>,
    pub(super) registrations: BTreeMap<String, RegistrationRecord>,
    pub(super) operations: HashMap<String, RegistrationOperation>,
    pub(super) billing: Vec<OperationRecord>,
    /// Certificate authorities by name (case-sensitive).
    pub(super) authorities: BTreeMap<String, StoredCertificateAuthority>,
    /// Credential policies by name (case-sensitive).
    pub(super) policies: BTreeMap<String, CredentialPolicy>,
    /// Issued certificates by (CA name, serial number).
    pub(super) issued: BTreeMap<(String, String), IssuedCertificate>,
}

impl State {
    pub(super) fn data(&self, id_scope: &IdScope) -> Option<&TenantData> {
        self.tenants.get(&id_scope.key())
    }

    pub(super) fn data_mut(&mut self, id_scope: &IdScope) -> StoreResult<&mut TenantData> {
        self.tenants
            .get_mut(&id_scope.key())
            .ok_or_else(|| StoreError::UnknownTenant {
                id_scope: id_scope.clone(),
            })
    }
}

/// Where a tenant keeps records of type `T`.
pub(super) type Shelf<T> = fn(&mut TenantData) -> &mut BTreeMap<String, T>;
pub(super) type ShelfRef<T> = fn(&TenantData) -> &BTreeMap<String, T>;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    // A panic while holding the lock cannot leave a half-applied write: every
    // write checks and prepares everything before it mutates.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get<T: EnrollmentLike>(
        &self,
        id_scope: &IdScope,
        key: &str,
        shelf: ShelfRef<T>,
    ) -> Option<T> {
        self.read()
            .data(id_scope)
            .and_then(|data| shelf(data).get(key).cloned())
    }

    pub(super) fn put<T: EnrollmentLike>(
        &self,
        id_scope: &IdScope,
        mut record: T,
        precondition: Precondition,
        shelf: Shelf<T>,
    ) -> StoreResult<Written<T>> {
        let now = time::now();
        let key = record.key();
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let current = shelf(data).get(&key);
        let current_tag = current.map(|c| c.etag().cloned().unwrap_or_else(|| ETag::new("")));
        let outcome =
            rules::check_put(T::ENTITY, record.id(), current_tag.as_ref(), &precondition)?;
        rules::stamp(&mut record, current.and_then(T::created), now);
        let record = rules::normalize(T::ENTITY, &key, &record)?;
        data.billing.push(rules::billing(
            id_scope,
            T::billing_kind(outcome),
            record.id(),
            now,
        ));
        shelf(data).insert(key, record.clone());
        Ok(Written { record, outcome })
    }

    pub(super) fn delete<T: EnrollmentLike>(
        &self,
        id_scope: &IdScope,
        id: &str,
        key: &str,
        precondition: Precondition,
        shelf: Shelf<T>,
    ) -> StoreResult<()> {
        let now = time::now();
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let current_tag = shelf(data)
            .get(key)
            .map(|c| c.etag().cloned().unwrap_or_else(|| ETag::new("")));
        rules::check_delete(T::ENTITY, id, current_tag.as_ref(), &precondition)?;
        shelf(data).remove(key);
        data.billing
            .push(rules::billing(id_scope, T::BILLING[2], id, now));
        Ok(())
    }

    pub(super) fn page<T: Clone>(map: &BTreeMap<String, T>, page: &PageRequest) -> Page<T> {
        let size = page.effective_size();
        let rows = match page.after_key() {
            Some(after) => map
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .take(size + 1)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => map
                .iter()
                .take(size + 1)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        Page::from_overfetch(rows, size)
    }
}

pub(super) fn enrollments(data: &mut TenantData) -> &mut BTreeMap<String, IndividualEnrollment> {
    &mut data.enrollments
}
pub(super) fn enrollments_ref(data: &TenantData) -> &BTreeMap<String, IndividualEnrollment> {
    &data.enrollments
}
pub(super) fn groups(data: &mut TenantData) -> &mut BTreeMap<String, EnrollmentGroup> {
    &mut data.groups
}
pub(super) fn groups_ref(data: &TenantData) -> &BTreeMap<String, EnrollmentGroup> {
    &data.groups
}

pub(super) fn in_range(at: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    let at = time::to_micros(at);
    time::to_micros(from) <= at && at < time::to_micros(to)
}
