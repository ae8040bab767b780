//! The conformance battery every [`Store`] backend must pass, written once over
//! `Arc<dyn Store>` and instantiated per backend with
//! [`store_battery!`](crate::store_battery):
//!
//! ```
//! use std::sync::Arc;
//! use dps_storage::conformance::TestStore;
//! use dps_storage::MemoryStore;
//!
//! async fn fresh() -> TestStore {
//!     TestStore::new(Arc::new(MemoryStore::new()), ())
//! }
//!
//! dps_storage::store_battery!(fresh);
//! # fn main() {}
//! ```
//!
//! Each test gets a fresh, empty store from the factory. The functions panic
//! (assert) on the first deviation, naming what was expected.

mod authorities;
mod enrollment_and_registration;
mod enrollments;
mod fixtures;
mod issued;
mod meter;
mod paging;
mod registrations;
mod superseded;
mod tenants;

use std::any::Any;
use std::sync::Arc;

use crate::Store;

pub use authorities::{
    certificate_authority, certificate_authority_lifecycle,
    credential_policies_reference_their_authority, policy_and_authority_delete_race_one_winner,
};
pub use enrollment_and_registration::{
    delete_enrollment_takes_its_registration, enrollment_read_with_its_registration,
};
pub use enrollments::{
    billing_rows_for_enrollment_writes, case_insensitive_ids,
    concurrent_writers_one_etag_one_winner, enrollment_etag_conflicts, group_etag_conflicts,
    unknown_tenant_is_typed,
};
pub use fixtures::{enrollment, group, registration, tenant};
pub use issued::{
    credential_policy_in_use_by_enrollments, issued_certificate,
    issued_certificate_commit_is_all_or_nothing, issued_certificates_roll_over_and_revoke,
};
pub use meter::{meter_counts_exact_per_kind_and_hour, meter_rows_listed_in_time_order};
pub use paging::{page_through_groups, page_through_ten_thousand_enrollments};
pub use registrations::{
    commit_and_read_registrations, commit_is_all_or_nothing, concurrent_commits_all_stored,
    delete_registration_with_billing, list_registrations_by_group, purge_old_operations,
};
pub use superseded::assignment_without_certificate_supersedes_it;
pub use tenants::{delete_tenant_removes_everything, tenant_lifecycle};

/// A fresh store for one test, plus whatever must live as long as it (a temp dir).
pub struct TestStore {
    /// The store under test.
    pub store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl TestStore {
    /// Wrap a store and the value that keeps its resources alive.
    pub fn new(store: Arc<dyn Store>, guard: impl Any + Send + Sync) -> Self {
        TestStore {
            store,
            _guard: Box::new(guard),
        }
    }
}

/// What a battery factory may return: a store, or (for backends that need a
/// server, e.g. PostgreSQL) `Option<TestStore>`, where `None` means the
/// backend is unavailable here and the factory already said why; the test
/// then passes without running.
pub trait IntoFixture {
    /// The store to test, if there is one.
    fn into_fixture(self) -> Option<TestStore>;
}

impl IntoFixture for TestStore {
    fn into_fixture(self) -> Option<TestStore> {
        Some(self)
    }
}

impl IntoFixture for Option<TestStore> {
    fn into_fixture(self) -> Option<TestStore> {
        self
    }
}

/// Instantiate the whole battery as `#[tokio::test]` functions in the current
/// module. `$factory` names an `async fn() -> TestStore` giving a fresh store
/// (or an `async fn() -> Option<TestStore>`, see [`IntoFixture`]).
#[macro_export]
macro_rules! store_battery {
    ($factory:path) => {
        $crate::store_battery!(@tests $factory;
            tenant_lifecycle,
            delete_tenant_removes_everything,
            enrollment_etag_conflicts,
            group_etag_conflicts,
            case_insensitive_ids,
            unknown_tenant_is_typed,
            billing_rows_for_enrollment_writes,
            concurrent_writers_one_etag_one_winner,
            page_through_ten_thousand_enrollments,
            page_through_groups,
            commit_and_read_registrations,
            commit_is_all_or_nothing,
            concurrent_commits_all_stored,
            delete_registration_with_billing,
            delete_enrollment_takes_its_registration,
            enrollment_read_with_its_registration,
            list_registrations_by_group,
            purge_old_operations,
            meter_counts_exact_per_kind_and_hour,
            meter_rows_listed_in_time_order,
            certificate_authority_lifecycle,
            credential_policies_reference_their_authority,
            policy_and_authority_delete_race_one_winner,
            issued_certificates_roll_over_and_revoke,
            issued_certificate_commit_is_all_or_nothing,
            assignment_without_certificate_supersedes_it,
            credential_policy_in_use_by_enrollments
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $crate::conformance::IntoFixture::into_fixture($factory().await) else {
                    return;
                };
                $crate::conformance::$name(::std::sync::Arc::clone(&fixture.store)).await;
            }
        )*
    };
}

/// Assert that `$result` is an `Err` matching `$pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err(err) => assert!(
                matches!(err, $pattern $(if $guard)?),
                "expected {}, got error {err:?}",
                stringify!($pattern)
            ),
            Ok(value) => panic!("expected {}, got Ok({value:?})", stringify!($pattern)),
        }
    };
}
pub(crate) use assert_err;
