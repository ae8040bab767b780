//! The allocation engine: which linked IoT hub a registering device goes to,
//! and what a re-registration does to a device that already has one
//! (spec §5, §6).
//!
//! * [`HubTable`]: a tenant's linked hubs, prepared once (hash seeds, weights).
//! * [`candidate_hubs`] / [`AllocationRequest::new`]: the policy (enrollment
//!   `allocationPolicy`, else the tenant default) and the hubs it may choose.
//! * [`Policy`]: the pluggable trait, with the four built-ins:
//!   [`HashedPolicy`] (weighted rendezvous hashing with a fixed hash, so a
//!   device keeps its hub across processes and releases),
//!   [`GeoLatencyPolicy`] (lowest round trip from a [`LatencySource`]: a
//!   configured [`LatencyTable`] and/or [`LiveProber`] measurements; ties
//!   hashed), [`StaticPolicy`] and [`WebhookPolicy`] (the custom webhook,
//!   whose every failure is a distinct error naming its cause).
//! * [`Allocator`]: holds one policy of each kind and dispatches.
//! * `conformance` (cargo feature `conformance`): the battery every
//!   [`Policy`], built-in or yours, must pass (`policy_battery!`).
//! * [`plan_before_allocation`] / [`plan_after_allocation`]: the
//!   reprovisioning rules (keep or move, migrate or reset the twin, the
//!   substatus, the legacy sticky hub).
//!
//! ```
//! use dps_allocation::{
//!     plan_after_allocation, plan_before_allocation, AllocationRequest, Allocator,
//!     AllocatorConfig, Decision, HubTable, TwinAction,
//! };
//! use dps_model::{AllocationPolicy, IndividualEnrollment, LinkedHub, RegistrationId};
//! use dps_model::enrollment::EnrollmentRef;
//!
//! let hub = |name: &str| LinkedHub {
//!     host_name: name.to_owned(),
//!     connection_string: String::new(),
//!     allocation_weight: 1,
//!     apply_allocation_policy: true,
//!     location: None,
//! };
//! let hubs = HubTable::new(&[hub("hub-a.example"), hub("hub-b.example")]).unwrap();
//! let enrollment = IndividualEnrollment::from_json(
//!     br#"{"registrationId":"dev-1","attestation":{"type":"symmetricKey"}}"#,
//! ).unwrap();
//! let id = RegistrationId::new("dev-1").unwrap();
//! let allocator = Allocator::new(AllocatorConfig::default()).unwrap();
//!
//! // First registration: no previous record.
//! let decision = plan_before_allocation(None, enrollment.reprovision_policy, "2021-06-01");
//! assert_eq!(decision, Decision::Allocate);
//! let request = AllocationRequest::new(
//!     &id, EnrollmentRef::Individual(&enrollment), &hubs, AllocationPolicy::Hashed,
//! ).unwrap();
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let allocation = runtime.block_on(allocator.resolve(&request, &decision)).unwrap();
//! let plan = plan_after_allocation(
//!     None, enrollment.reprovision_policy, "2021-06-01", &allocation.hub_host_name,
//! );
//! assert_eq!(plan.twin, TwinAction::ApplyInitial);
//! assert!(allocation.hub_host_name.starts_with("hub-"));
//! ```
//!
//! What this crate does not do: it writes nothing to hubs or storage (the
//! plan says what the service should do), reads no configuration files (it
//! takes typed values), and knows no HTTP status codes of its own API —
//! errors carry a DPS [`ErrorCode`](dps_model::ErrorCode) via
//! [`AllocationError::error_code`] and the service renders them. The only
//! I/O is the webhook call and the optional latency prober. It follows no
//! redirect and uses no proxy for the webhook: either would take the call
//! past the egress policy.

#![deny(missing_docs)]

mod allocator;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod egress;
mod error;
mod hash;
mod hubs;
pub mod latency;
mod policy;
mod reprovision;
mod request;

pub use allocator::{Allocator, AllocatorConfig};
pub use error::AllocationError;
pub use hubs::{candidate_hubs, Candidates, HubIndex, HubSet, HubTable, PreparedHub};
pub use latency::{LatencySource, LatencyTable, LiveLatency, LiveProber};
pub use policy::{GeoLatencyPolicy, HashedPolicy, StaticPolicy, WebhookConfig, WebhookPolicy};
pub use reprovision::{
    plan_after_allocation, plan_before_allocation, Decision, ReprovisionPlan, TwinAction,
};
pub use request::{Allocation, AllocationRequest, DeviceAttestation, DeviceContext, Policy};
