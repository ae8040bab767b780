//! The conformance battery every [`IotHub`] implementation must pass — the
//! real [`crate::HubClient`] against a hub (or the `dps-hub-sim` emulator),
//! or a connector of your own that keeps identities somewhere else —
//! instantiated per implementation with [`hub_battery!`](crate::hub_battery):
//!
//! ```no_run
//! use std::sync::Arc;
//! use dps_hub::conformance::TestHub;
//! # fn my_hub() -> Arc<dyn dps_hub::IotHub> { unimplemented!() }
//!
//! async fn fresh() -> TestHub {
//!     TestHub::new(my_hub()) // a hub with no device yet
//! }
//!
//! dps_hub::hub_battery!(fresh);
//! # fn main() {}
//! ```
//!
//! The rules are IoT Hub's registry rules, as provisioning relies on them:
//! a create without `If-Match` creates or fails with
//! [`HubError::Conflict`]; `If-Match: *` needs the record to exist; a stale
//! etag fails with [`HubError::PreconditionFailed`]; every write gives a new
//! etag; a new identity has an empty twin; deleting an identity deletes its
//! twin; device ids are case-sensitive; a missing device is
//! [`HubError::DeviceNotFound`] naming the hub and the device; and
//! [`crate::ensure_device`] converges when run again. If the fixture can
//! take the hub down ([`HubOutage`]), failures while it is down must be
//! retryable errors naming the hub.
//!
//! Each test gets a fresh, empty hub from the factory. The functions panic
//! (assert) on the first deviation, naming what was expected.

mod checks;
mod devices;

use std::any::Any;
use std::sync::Arc;

use crate::{HubError, IotHub};

pub use checks::{
    concurrent_creates_have_one_winner, create_on_a_taken_id_is_a_conflict,
    create_then_read_identity_and_twin, delete_takes_the_twin_and_is_final,
    device_ids_are_case_sensitive, ensure_device_converges, missing_devices_are_not_found,
    outage_errors_are_retryable, twin_replace_patch_and_etags, writes_need_the_current_etag,
    x509_and_edge_identities,
};
pub use devices::{sas_device, sas_provisioning};

/// Takes the hub under test down and brings it back, for the outage check.
pub trait HubOutage: Send + Sync {
    /// From now on every request fails as a dead or overloaded hub's would
    /// (no connection, 5xx or throttling), until [`HubOutage::end`].
    fn begin(&self);
    /// Serve normally again.
    fn end(&self);
}

/// A fresh, empty hub for one test, plus whatever must live as long as it.
pub struct TestHub {
    /// The hub under test.
    pub hub: Arc<dyn IotHub>,
    outage: Option<Arc<dyn HubOutage>>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for TestHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHub")
            .field("host_name", &self.hub.host_name())
            .field("outage", &self.outage.is_some())
            .finish_non_exhaustive()
    }
}

impl TestHub {
    /// A hub with no device.
    pub fn new(hub: Arc<dyn IotHub>) -> TestHub {
        TestHub {
            hub,
            outage: None,
            _guard: Box::new(()),
        }
    }

    /// Let the battery take the hub down (otherwise the outage check passes
    /// without running).
    pub fn with_outage(mut self, outage: Arc<dyn HubOutage>) -> TestHub {
        self.outage = Some(outage);
        self
    }

    /// Keep `guard` alive as long as the fixture (an emulator, a temp dir).
    pub fn keep_alive(mut self, guard: impl Any + Send + Sync) -> TestHub {
        self._guard = Box::new(guard);
        self
    }

    /// The outage hook, if the fixture has one.
    pub fn outage(&self) -> Option<&dyn HubOutage> {
        self.outage.as_deref()
    }
}

/// Instantiate the whole battery as `#[tokio::test]` functions in the current
/// module. `$factory` names an `async fn() -> TestHub` giving a fresh hub.
#[macro_export]
macro_rules! hub_battery {
    ($factory:path) => {
        $crate::hub_battery!(@tests $factory;
            create_then_read_identity_and_twin,
            create_on_a_taken_id_is_a_conflict,
            writes_need_the_current_etag,
            twin_replace_patch_and_etags,
            delete_takes_the_twin_and_is_final,
            missing_devices_are_not_found,
            device_ids_are_case_sensitive,
            x509_and_edge_identities,
            ensure_device_converges,
            concurrent_creates_have_one_winner,
            outage_errors_are_retryable
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $factory().await;
                $crate::conformance::$name(&fixture).await;
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

/// The error names this hub (case-insensitively, as host names compare).
fn assert_names_hub(hub: &dyn IotHub, err: &HubError) {
    let host = err.host().unwrap_or_default();
    assert!(
        host.eq_ignore_ascii_case(hub.host_name()),
        "the error must name hub {}, it names {host:?}: {err}",
        hub.host_name()
    );
}
