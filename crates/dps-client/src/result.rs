//! What a successful provisioning returns.

use dps_model::{DeviceRegistrationResult, RegistrationSubstatus};
use serde::Serialize;
use serde_json::Value;

/// A device assigned to a hub.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The registration id.
    pub registration_id: String,
    /// The hub's host name.
    pub assigned_hub: String,
    /// The device id on that hub.
    pub device_id: String,
    /// How it came to be assigned.
    pub substatus: Option<RegistrationSubstatus>,
    /// Data returned by a custom allocation webhook.
    pub payload: Option<Value>,
    /// The operation that completed.
    pub operation_id: String,
    /// For symmetric-key devices: the hub connection string the device can use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_connection_string: Option<String>,
    /// The full answer of the service.
    pub raw: DeviceRegistrationResult,
}
