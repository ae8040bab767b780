//! The conformance battery every allocation [`Policy`] must pass, built-in or
//! yours, instantiated per policy with [`policy_battery!`](crate::policy_battery):
//!
//! ```
//! use std::sync::Arc;
//! use dps_allocation::conformance::TestPolicy;
//! use dps_allocation::HashedPolicy;
//!
//! async fn fresh() -> TestPolicy {
//!     TestPolicy::new(Arc::new(HashedPolicy))
//! }
//!
//! dps_allocation::policy_battery!(fresh);
//! # fn main() {}
//! ```
//!
//! What every policy must do, whatever it reads:
//!
//! * answer only with a hub of `request.candidates.hubs`, spelled exactly as
//!   linked: never a hub the enrollment left out, never one with
//!   `applyAllocationPolicy=false`, never one a payload or a previous
//!   assignment names from outside the set;
//! * answer a single candidate with that hub, and (unless it is a
//!   single-hub policy like `static`) answer any non-empty set;
//! * refuse an empty candidate set with an error whose code is a 4xx, never
//!   a panic or a 500;
//! * give the same answer to the same request, sequentially and
//!   concurrently (unless declared [`TestPolicy::nondeterministic`]), so a
//!   device that registers again lands on the same hub;
//! * cope with 64 hubs, weights outside 1..=1000, missing or odd locations,
//!   and any device payload, address and attestation without panicking.
//!
//! The functions panic (assert) on the first deviation, naming the policy,
//! the device and the candidates.

mod checks;
mod inputs;

use std::any::Any;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::Policy;

pub use checks::{
    answers_every_candidate_set, concurrent_calls_stay_in_candidates, many_hubs_and_odd_weights,
    never_chooses_a_hub_outside_the_policy, no_candidate_is_a_clean_error,
    odd_device_input_is_handled, same_request_same_hub,
};
pub use inputs::{linked_hub, odd_payloads};

/// A policy under test, with what the battery needs to know about it.
pub struct TestPolicy {
    /// The policy under test.
    pub policy: Arc<dyn Policy>,
    enrollment_members: Map<String, Value>,
    deterministic: bool,
    single_candidate_only: bool,
    _guard: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for TestPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPolicy")
            .field("kind", &self.policy.kind())
            .field("deterministic", &self.deterministic)
            .field("single_candidate_only", &self.single_candidate_only)
            .finish_non_exhaustive()
    }
}

impl TestPolicy {
    /// A deterministic policy that chooses among any number of candidates.
    pub fn new(policy: Arc<dyn Policy>) -> TestPolicy {
        TestPolicy {
            policy,
            enrollment_members: Map::new(),
            deterministic: true,
            single_candidate_only: false,
            _guard: Box::new(()),
        }
    }

    /// JSON members added to every enrollment the battery builds, for
    /// policies that read their settings from the enrollment (the webhook
    /// policy's `customAllocationDefinition`). `members` must be an object.
    pub fn with_enrollment_members(mut self, members: Value) -> TestPolicy {
        match members {
            Value::Object(map) => self.enrollment_members = map,
            other => panic!("enrollment members must be a JSON object, got {other}"),
        }
        self
    }

    /// The policy may answer the same request differently (e.g. it balances
    /// by load); the determinism checks only check membership then.
    pub fn nondeterministic(mut self) -> TestPolicy {
        self.deterministic = false;
        self
    }

    /// The policy only serves requests with exactly one candidate (like
    /// `static`) and may refuse larger sets; the battery gives it singles.
    pub fn single_candidate_only(mut self) -> TestPolicy {
        self.single_candidate_only = true;
        self
    }

    /// Keep `guard` alive as long as the fixture (a webhook server, a temp dir).
    pub fn keep_alive(mut self, guard: impl Any + Send + Sync) -> TestPolicy {
        self._guard = Box::new(guard);
        self
    }

    /// Does the policy promise the same answer to the same request?
    pub fn is_deterministic(&self) -> bool {
        self.deterministic
    }

    /// Does the policy only serve single-candidate requests?
    pub fn is_single_candidate_only(&self) -> bool {
        self.single_candidate_only
    }

    /// The members every battery enrollment carries.
    pub fn enrollment_members(&self) -> &Map<String, Value> {
        &self.enrollment_members
    }
}

/// Instantiate the whole battery as `#[tokio::test]` functions in the current
/// module. `$factory` names an `async fn() -> TestPolicy`.
#[macro_export]
macro_rules! policy_battery {
    ($factory:path) => {
        $crate::policy_battery!(@tests $factory;
            answers_every_candidate_set,
            never_chooses_a_hub_outside_the_policy,
            no_candidate_is_a_clean_error,
            same_request_same_hub,
            concurrent_calls_stay_in_candidates,
            many_hubs_and_odd_weights,
            odd_device_input_is_handled
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
