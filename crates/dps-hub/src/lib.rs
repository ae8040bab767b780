//! Linked IoT hubs: what the provisioning service does on a hub, and a client
//! for the IoT Hub registry REST API that does it.
//!
//! * [`IotHub`]: the hub operations provisioning needs (device identity
//!   create/replace/get/delete, twin get/replace/patch).
//! * [`HubClient`]: [`IotHub`] over HTTPS (api-version 2021-04-12), signed with
//!   SAS tokens derived from the hub's service [`ConnectionString`], with
//!   retries of throttling, server and transport failures within a deadline.
//! * [`HubDirectory`]: one cached client per linked hub, sharing connections.
//! * [`provision_devices`]: many devices on one hub with the bulk registry
//!   call (`POST /devices`, identity and initial twin per entry, 100 a call),
//!   each device's outcome its own.
//! * [`ensure_device`] and [`migrate_device`]: the provisioning steps of the
//!   protocol spec (§6.4, §7.1) — make the identity exist with the right
//!   credentials and initial twin; move a device between hubs, copying or
//!   resetting its twin, and delete it from the old hub.
//! * [`wire`]: the IoT Hub `Device`, `Twin` and error-body JSON shapes, shared
//!   with the hub emulator (`dps-hub-sim`).
//! * `conformance` (cargo feature `conformance`): the battery every
//!   [`IotHub`] implementation must pass (`hub_battery!`), run here on
//!   [`HubClient`] against the emulator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dps_hub::HubError> {
//! use dps_attestation::sas::SymmetricKey;
//! use dps_hub::{ensure_device, DeviceAuth, DeviceProvisioning, HubClient, HubClientOptions, TwinAction};
//! use dps_model::{DeviceCapabilities, DeviceId};
//!
//! let options = HubClientOptions::default();
//! let hub = HubClient::from_connection_string(
//!     "HostName=hub-a.example;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0",
//!     &options,
//! )?;
//! let key = SymmetricKey::from_bytes(vec![7u8; 32]);
//! let done = ensure_device(
//!     &hub,
//!     &DeviceProvisioning {
//!         device_id: DeviceId::new("dev-1").expect("valid id"),
//!         auth: DeviceAuth::SymmetricKey { primary: key.clone(), secondary: key },
//!         capabilities: DeviceCapabilities::default(),
//!         initial_twin: None,
//!         twin_action: TwinAction::ApplyInitial,
//!     },
//! )
//! .await?;
//! assert_eq!(done.device.device_id, "dev-1");
//! # Ok(()) }
//! ```
//!
//! This crate does not decide *which* hub a device goes to (that is
//! `dps-allocation`), does not store anything, and speaks only the registry
//! part of IoT Hub's service API: no messaging, methods, jobs or blob import/export.

#![deny(missing_docs)]

mod bulk;
mod client;
#[cfg(feature = "conformance")]
pub mod conformance;
mod connection_string;
mod directory;
mod error;
mod hub;
mod provisioning;
pub mod registry_rules;
pub mod wire;

pub use bulk::{bulk_entry, error_from_entry, provision_devices};
pub use client::{HubClient, HubClientOptions, API_VERSION};
pub use connection_string::ConnectionString;
pub use directory::HubDirectory;
pub use error::HubError;
pub use hub::{IfMatch, IotHub};
pub use provisioning::{
    ensure_device, migrate_device, remove_device, DeviceAuth, DeviceProvisioning, Migration,
    MigrationMode, ProvisionedDevice, TwinAction,
};
pub use wire::{Device, Twin, TwinContent};
