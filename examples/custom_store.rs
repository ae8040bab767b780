//! A store of your own: here one that wraps any other store and keeps an
//! audit trail of every write (which operation, and whether it succeeded).
//!
//! A store implements `dps_storage::Store` (tenants, enrollments, groups,
//! registration records, device operations, the billing meter);
//! `Server::builder(config).store(...)` uses it instead of opening
//! `storage_url`: the service API, the registration pipeline and the meter
//! all write through it.
//! `store_battery!` (`dps_storage::conformance`) is the contract every
//! backend passes; this example's test runs it on `AuditedStore`.
//!
//! The macro only saves writing one forwarding body 36 times: reads go
//! to the inner store, writes are recorded once they return. Run:
//! `cargo run -p dps-examples --example custom_store`.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_model::{
    CredentialPolicy, EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment,
    OperationRecord,
};
use dps_model::{Precondition, RegistrationId, RegistrationOperation, RegistrationRecord, Tenant};
use dps_service::server::Server;
use dps_storage::{
    MemoryStore, MeterReport, Page, PageRequest, Store, StoreResult, StoredCertificateAuthority,
    Written,
};

/// Where the writes are recorded, e.g. `"put_enrollment: ok"`, oldest first.
pub type AuditTrail = Arc<Mutex<Vec<String>>>;

/// `inner`, with every write recorded in `trail`.
pub struct AuditedStore<S> {
    /// The store doing the work.
    pub inner: S,
    /// The audit trail (keep a clone to read it).
    pub trail: AuditTrail,
}

macro_rules! audited_store {
    (reads { $(fn $r:ident($($ra:ident: $rt:ty),*) -> $rv:ty;)* }
     writes { $(fn $w:ident($($wa:ident: $wt:ty),*) -> $wv:ty;)* }) => {
        #[async_trait]
        impl<S: Store> Store for AuditedStore<S> {
            $(async fn $r(&self, $($ra: $rt),*) -> StoreResult<$rv> { self.inner.$r($($ra),*).await })*
            $(async fn $w(&self, $($wa: $wt),*) -> StoreResult<$wv> {
                let result = self.inner.$w($($wa),*).await;
                let outcome = result.as_ref().map_or_else(|err| format!("failed ({err})"), |_| "ok".into());
                let mut trail = self.trail.lock().unwrap_or_else(PoisonError::into_inner);
                trail.push(format!("{}: {outcome}", stringify!($w)));
                result
            })*
        }
    };
}

audited_store! {
    reads {
        fn tenant(id_scope: &IdScope) -> Option<Tenant>;
        fn tenant_by_name(name: &str) -> Option<Tenant>;
        fn list_tenants() -> Vec<Tenant>;
        fn enrollment(scope: &IdScope, id: &RegistrationId) -> Option<IndividualEnrollment>;
        fn enrollment_with_registration(scope: &IdScope, id: &RegistrationId) -> Option<(IndividualEnrollment, Option<RegistrationRecord>)>;
        fn list_enrollments(scope: &IdScope, page: &PageRequest) -> Page<IndividualEnrollment>;
        fn enrollment_group(scope: &IdScope, id: &EnrollmentGroupId) -> Option<EnrollmentGroup>;
        fn list_enrollment_groups(scope: &IdScope, page: &PageRequest) -> Page<EnrollmentGroup>;
        fn all_enrollment_groups(scope: &IdScope) -> Vec<EnrollmentGroup>;
        fn registration(scope: &IdScope, id: &RegistrationId) -> Option<RegistrationRecord>;
        fn registration_operation(scope: &IdScope, operation_id: &str) -> Option<RegistrationOperation>;
        fn list_registrations_by_group(scope: &IdScope, id: &EnrollmentGroupId, page: &PageRequest) -> Page<RegistrationRecord>;
        fn count_registrations(scope: &IdScope) -> u64;
        fn operation_report(scope: &IdScope, from: DateTime<Utc>, to: DateTime<Utc>) -> MeterReport;
        fn operations(scope: &IdScope, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<OperationRecord>;
        fn certificate_authority(scope: &IdScope, name: &str) -> Option<StoredCertificateAuthority>;
        fn list_certificate_authorities(scope: &IdScope) -> Vec<StoredCertificateAuthority>;
        fn credential_policy(scope: &IdScope, name: &str) -> Option<CredentialPolicy>;
        fn list_credential_policies(scope: &IdScope) -> Vec<CredentialPolicy>;
    }
    writes {
        fn create_tenant(tenant: Tenant) -> Tenant;
        fn replace_tenant(tenant: Tenant, precondition: Precondition) -> Tenant;
        fn delete_tenant(scope: &IdScope, precondition: Precondition) -> ();
        fn put_enrollment(scope: &IdScope, enrollment: IndividualEnrollment, precondition: Precondition) -> Written<IndividualEnrollment>;
        fn delete_enrollment(scope: &IdScope, id: &RegistrationId, precondition: Precondition) -> ();
        fn delete_enrollment_and_registration(scope: &IdScope, id: &RegistrationId, precondition: Precondition) -> ();
        fn import_enrollments(scope: &IdScope, enrollments: Vec<IndividualEnrollment>) -> usize;
        fn put_enrollment_group(scope: &IdScope, group: EnrollmentGroup, precondition: Precondition) -> Written<EnrollmentGroup>;
        fn delete_enrollment_group(scope: &IdScope, id: &EnrollmentGroupId, precondition: Precondition) -> ();
        fn commit_registration(scope: &IdScope, record: RegistrationRecord, operation: RegistrationOperation, billing: Option<OperationRecord>) -> ();
        fn delete_registration(scope: &IdScope, id: &RegistrationId, precondition: Precondition) -> ();
        fn purge_registration_operations(created_before: DateTime<Utc>) -> u64;
        fn record_operation(operation: OperationRecord) -> ();
        fn create_certificate_authority(scope: &IdScope, ca: StoredCertificateAuthority) -> StoredCertificateAuthority;
        fn delete_certificate_authority(scope: &IdScope, name: &str, precondition: Precondition) -> ();
        fn put_credential_policy(scope: &IdScope, policy: CredentialPolicy, precondition: Precondition) -> Written<CredentialPolicy>;
        fn delete_credential_policy(scope: &IdScope, name: &str, precondition: Precondition) -> ();
    }
}

/// A server on an audited in-memory store; one device enrolled and
/// provisioned; returns the audit trail.
pub async fn run(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let trail = AuditTrail::default();
    let store = AuditedStore {
        inner: MemoryStore::new(),
        trail: trail.clone(),
    };
    let server = Server::builder(dps_examples::local_config(data_dir))
        .store(store)
        .hub_emulator()
        .listeners(dps_examples::device_and_service())
        .start()
        .await?;
    let admin = dps_examples::admin(&server)?;
    let key = dps_examples::enroll(&admin, "audited-device", serde_json::json!({})).await?;
    dps_examples::register(&server, "audited-device", &key, None).await?;
    server.shutdown().await;
    let entries = trail.lock().unwrap_or_else(PoisonError::into_inner).clone();
    entries.iter().for_each(|entry| println!("audit: {entry}"));
    Ok(entries)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    run(data_dir.path()).await?;
    Ok(())
}
