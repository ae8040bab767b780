//! The IoT Hub `Device` identity, as `/devices/{id}` sends and returns it.

use std::fmt;

use dps_model::DeviceCapabilities;
use serde::{Deserialize, Serialize};

/// A device identity in the hub's identity registry.
///
/// Every field is optional on the wire: a client writes only what it sets; the
/// hub (and the emulator) fills in the rest on reply. Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Device id (case-sensitive).
    pub device_id: String,
    /// Distinguishes devices that reused an id; assigned by the hub at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<String>,
    /// Entity tag of the identity (unquoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `Connected` or `Disconnected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<ConnectionState>,
    /// Whether the device may connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceStatus>,
    /// Why the status was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// When the connection state last changed (Azure timestamp text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state_updated_time: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_updated_time: Option<String>,
    /// When the device was last active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<String>,
    /// Cloud-to-device messages queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_message_count: Option<u64>,
    /// How the device authenticates to the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationMechanism>,
    /// Device capabilities (IoT Edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    /// Scope of an edge device (nested edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    /// Scopes of the parent edge devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
}

impl Device {
    /// The authentication type, `sas` when none is given (the hub's default).
    pub fn authentication_type(&self) -> AuthenticationType {
        self.authentication
            .as_ref()
            .map(|a| a.auth_type)
            .unwrap_or(AuthenticationType::Sas)
    }

    /// The status, `enabled` when none is given (the hub's default).
    pub fn status_or_default(&self) -> DeviceStatus {
        self.status.unwrap_or(DeviceStatus::Enabled)
    }
}

/// `status` of a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceStatus {
    /// The device may connect.
    #[default]
    Enabled,
    /// The device may not connect.
    Disabled,
}

/// `connectionState` of a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnectionState {
    /// Not connected.
    #[default]
    Disconnected,
    /// Connected.
    Connected,
}

/// `authentication` of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationMechanism {
    /// Keys of a `sas` device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyPair>,
    /// Thumbprints of a `selfSigned` device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<X509Thumbprint>,
    /// The authentication type.
    #[serde(rename = "type", default)]
    pub auth_type: AuthenticationType,
}

/// `authentication.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthenticationType {
    /// Shared access signatures signed with the device's symmetric key.
    #[default]
    Sas,
    /// A self-signed (or any) certificate identified by its thumbprint.
    SelfSigned,
    /// A certificate chaining to a CA verified on the hub.
    CertificateAuthority,
    /// No authentication (module identities inheriting the device's).
    None,
}

impl AuthenticationType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticationType::Sas => "sas",
            AuthenticationType::SelfSigned => "selfSigned",
            AuthenticationType::CertificateAuthority => "certificateAuthority",
            AuthenticationType::None => "none",
        }
    }
}

/// `authentication.symmetricKey`: base64 keys. `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyPair {
    /// Primary key, base64; `null` asks the hub to generate one.
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Secondary key, base64; `null` asks the hub to generate one.
    #[serde(default)]
    pub secondary_key: Option<String>,
}

impl fmt::Debug for SymmetricKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |k: &Option<String>| k.as_ref().map(|_| "<redacted>");
        f.debug_struct("SymmetricKeyPair")
            .field("primary_key", &shown(&self.primary_key))
            .field("secondary_key", &shown(&self.secondary_key))
            .finish()
    }
}

/// `authentication.x509Thumbprint`: hex SHA-1 or SHA-256 thumbprints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    /// Primary thumbprint.
    #[serde(default)]
    pub primary_thumbprint: Option<String>,
    /// Secondary thumbprint.
    #[serde(default)]
    pub secondary_thumbprint: Option<String>,
}

/// `GET /statistics/devices`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatistics {
    /// All devices.
    pub total_device_count: u64,
    /// Enabled devices.
    pub enabled_device_count: u64,
    /// Disabled devices.
    pub disabled_device_count: u64,
}
