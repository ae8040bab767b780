//! The identities the battery writes.

use dps_attestation::sas::SymmetricKey;
use dps_model::{DeviceCapabilities, DeviceId, InitialTwin};

use crate::{Device, DeviceAuth, DeviceProvisioning, TwinAction};

/// A 32-byte key of one repeated byte.
pub(crate) fn key(byte: u8) -> SymmetricKey {
    SymmetricKey::from_bytes(vec![byte; 32])
}

/// A device id the battery uses (always valid).
pub(crate) fn id(value: &str) -> DeviceId {
    DeviceId::new(value).expect("battery device ids are valid")
}

/// A provisioning request for a symmetric-key device with keys made of
/// `key_byte`, applying `initial_twin`.
pub fn sas_provisioning(
    device_id: &str,
    key_byte: u8,
    initial_twin: Option<InitialTwin>,
) -> DeviceProvisioning {
    DeviceProvisioning {
        device_id: id(device_id),
        auth: DeviceAuth::SymmetricKey {
            primary: key(key_byte),
            secondary: key(key_byte.wrapping_add(1)),
        },
        capabilities: DeviceCapabilities::default(),
        initial_twin,
        twin_action: TwinAction::ApplyInitial,
    }
}

/// The identity record of [`sas_provisioning`].
pub fn sas_device(device_id: &str, key_byte: u8) -> Device {
    sas_provisioning(device_id, key_byte, None).to_device()
}

/// The base64 primary key of an identity, if it has one.
pub(crate) fn primary_key(device: &Device) -> Option<&str> {
    device
        .authentication
        .as_ref()?
        .symmetric_key
        .as_ref()?
        .primary_key
        .as_deref()
}

/// An initial twin with one tag and one desired property.
pub(crate) fn initial_twin(tag: &str) -> InitialTwin {
    serde_json::from_value(serde_json::json!({
        "tags": { "battery": tag },
        "properties": { "desired": { "interval": 30, "mode": { "level": tag } } }
    }))
    .expect("initial twin JSON")
}
