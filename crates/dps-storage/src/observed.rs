//! [`ObservedStore`]: any [`Store`] with a [`StoreObserver`] told of every
//! call (its name, whether it writes, how it ended, how long it took), for
//! audit trails, tracing or metrics without writing a forwarding body per
//! store method.
//!
//! ```
//! use dps_storage::{MemoryStore, ObservedStore, StoreCall, StoreError};
//!
//! struct PrintWrites;
//! impl dps_storage::StoreObserver for PrintWrites {
//!     fn observe(&self, call: StoreCall, result: Result<(), &StoreError>) {
//!         if call.writes {
//!             println!("{}: {}", call.name, if result.is_ok() { "ok" } else { "failed" });
//!         }
//!     }
//! }
//! let store = ObservedStore::new(MemoryStore::new(), PrintWrites);
//! # let _ = store;
//! ```

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment,
    IssuedCertificate, OperationRecord, Precondition, RegistrationId, RegistrationOperation,
    RegistrationRecord, Tenant,
};

use crate::{
    MeterReport, Page, PageRequest, Store, StoreError, StoreResult, StoredCertificateAuthority,
    WriterStats, Written,
};

/// One finished store call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreCall {
    /// The [`Store`] method, e.g. `"put_enrollment"`.
    pub name: &'static str,
    /// Whether the method changes what is stored.
    pub writes: bool,
    /// How long the inner store took.
    pub elapsed: Duration,
}

/// Told of every call an [`ObservedStore`] forwards, once it has ended.
pub trait StoreObserver: Send + Sync {
    /// `call` ended with `result` (the value itself stays with the caller).
    fn observe(&self, call: StoreCall, result: Result<(), &StoreError>);
}

/// `inner`, with `observer` told of every call.
#[derive(Debug)]
pub struct ObservedStore<S, O> {
    inner: S,
    observer: O,
}

impl<S, O> ObservedStore<S, O> {
    /// Wrap `inner`.
    pub fn new(inner: S, observer: O) -> Self {
        ObservedStore { inner, observer }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }
}

impl<S, O: StoreObserver> ObservedStore<S, O> {
    fn tell<T>(&self, name: &'static str, writes: bool, started: Instant, result: &StoreResult<T>) {
        let elapsed = started.elapsed();
        let call = StoreCall {
            name,
            writes,
            elapsed,
        };
        self.observer.observe(call, result.as_ref().map(|_| ()));
    }
}

/// One forwarding body per method: the list of signatures is kept here only.
macro_rules! observed_store {
    ($( $kind:ident fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; )*) => {
        #[async_trait]
        impl<S: Store, O: StoreObserver + 'static> Store for ObservedStore<S, O> {
            $(
                async fn $name(&self, $($arg: $ty),*) -> StoreResult<$out> {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.tell(stringify!($name), observed_store!(@writes $kind), started, &result);
                    result
                }
            )*

            fn writer_stats(&self) -> Option<WriterStats> {
                self.inner.writer_stats()
            }
        }
    };
    (@writes read) => { false };
    (@writes write) => { true };
}

observed_store! {
    write fn create_tenant(tenant: Tenant) -> Tenant;
    read fn tenant(id_scope: &IdScope) -> Option<Tenant>;
    read fn tenant_by_name(name: &str) -> Option<Tenant>;
    read fn list_tenants() -> Vec<Tenant>;
    write fn replace_tenant(tenant: Tenant, precondition: Precondition) -> Tenant;
    write fn delete_tenant(scope: &IdScope, precondition: Precondition) -> ();
    write fn put_enrollment(scope: &IdScope, enrollment: IndividualEnrollment, precondition: Precondition) -> Written<IndividualEnrollment>;
    read fn enrollment(scope: &IdScope, id: &RegistrationId) -> Option<IndividualEnrollment>;
    read fn enrollment_with_registration(scope: &IdScope, id: &RegistrationId) -> Option<(IndividualEnrollment, Option<RegistrationRecord>)>;
    read fn list_enrollments(scope: &IdScope, page: &PageRequest) -> Page<IndividualEnrollment>;
    write fn delete_enrollment(scope: &IdScope, id: &RegistrationId, precondition: Precondition) -> ();
    write fn delete_enrollment_and_registration(scope: &IdScope, id: &RegistrationId, precondition: Precondition) -> ();
    write fn import_enrollments(scope: &IdScope, enrollments: Vec<IndividualEnrollment>) -> usize;
    write fn put_enrollment_group(scope: &IdScope, group: EnrollmentGroup, precondition: Precondition) -> Written<EnrollmentGroup>;
    read fn enrollment_group(scope: &IdScope, id: &EnrollmentGroupId) -> Option<EnrollmentGroup>;
    read fn list_enrollment_groups(scope: &IdScope, page: &PageRequest) -> Page<EnrollmentGroup>;
    read fn all_enrollment_groups(scope: &IdScope) -> Vec<EnrollmentGroup>;
    write fn delete_enrollment_group(scope: &IdScope, id: &EnrollmentGroupId, precondition: Precondition) -> ();
    write fn commit_registration(scope: &IdScope, record: RegistrationRecord, operation: RegistrationOperation, billing: Option<OperationRecord>) -> ();
    read fn registration(scope: &IdScope, id: &RegistrationId) -> Option<RegistrationRecord>;
    read fn registration_operation(scope: &IdScope, operation_id: &str) -> Option<RegistrationOperation>;
    read fn list_registrations_by_group(scope: &IdScope, id: &EnrollmentGroupId, page: &PageRequest) -> Page<RegistrationRecord>;
    read fn count_registrations(scope: &IdScope) -> u64;
    write fn delete_registration(scope: &IdScope, id: &RegistrationId, precondition: Precondition) -> ();
    write fn purge_registration_operations(created_before: DateTime<Utc>) -> u64;
    write fn record_operation(operation: OperationRecord) -> ();
    read fn operation_report(scope: &IdScope, from: DateTime<Utc>, to: DateTime<Utc>) -> MeterReport;
    read fn operations(scope: &IdScope, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<OperationRecord>;
    write fn create_certificate_authority(scope: &IdScope, ca: StoredCertificateAuthority) -> StoredCertificateAuthority;
    read fn certificate_authority(scope: &IdScope, name: &str) -> Option<StoredCertificateAuthority>;
    read fn list_certificate_authorities(scope: &IdScope) -> Vec<StoredCertificateAuthority>;
    write fn delete_certificate_authority(scope: &IdScope, name: &str, precondition: Precondition) -> ();
    write fn put_credential_policy(scope: &IdScope, policy: CredentialPolicy, precondition: Precondition) -> Written<CredentialPolicy>;
    read fn credential_policy(scope: &IdScope, name: &str) -> Option<CredentialPolicy>;
    read fn list_credential_policies(scope: &IdScope) -> Vec<CredentialPolicy>;
    write fn delete_credential_policy(scope: &IdScope, name: &str, precondition: Precondition) -> ();
    write fn commit_registration_with_certificate(scope: &IdScope, record: RegistrationRecord, operation: RegistrationOperation, billing: Option<OperationRecord>, certificate: IssuedCertificate) -> ();
    read fn issued_certificates(scope: &IdScope, id: &RegistrationId) -> Vec<IssuedCertificate>;
    write fn revoke_issued_certificate(scope: &IdScope, id: &RegistrationId, serial_number: &str, at: DateTime<Utc>) -> IssuedCertificate;
    read fn revoked_certificates(scope: &IdScope, authority_name: &str) -> Vec<IssuedCertificate>;
}
