//! The bulk registry operation (`POST /devices`): up to [`MAX_BULK_DEVICES`]
//! `ExportImportDevice` entries in, one `BulkRegistryOperationResult` out.
//!
//! Shapes as in the IoT Hub REST reference ("Bulk Registry - Update Registry",
//! api-version 2021-04-12) and the official `azure-iothub` Node SDK, which
//! sends `deviceId` renamed to `id` plus an `importMode`, and spells the modes
//! with either case (`create`, `Update`, `DeleteIfMatchETag`): modes are read
//! case-insensitively and written in the reference's camelCase.

use std::fmt;

use dps_model::{DeviceCapabilities, TwinCollection};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::device::{AuthenticationMechanism, DeviceStatus};

/// The most entries one bulk call may carry.
pub const MAX_BULK_DEVICES: usize = 100;

/// What a bulk entry does with its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportMode {
    /// Register a new identity (and its initial twin); an existing id is an error.
    Create,
    /// Overwrite an existing identity whatever its etag; a missing id is an error.
    Update,
    /// Overwrite an existing identity if `eTag` matches.
    UpdateIfMatchETag,
    /// Delete an existing identity whatever its etag.
    Delete,
    /// Delete an existing identity if `eTag` matches.
    DeleteIfMatchETag,
    /// Replace the twin's tags and desired properties given.
    UpdateTwin,
    /// Replace the twin's tags and desired properties if `twinETag` matches.
    UpdateTwinIfMatchETag,
}

impl ImportMode {
    const ALL: [ImportMode; 7] = [
        ImportMode::Create,
        ImportMode::Update,
        ImportMode::UpdateIfMatchETag,
        ImportMode::Delete,
        ImportMode::DeleteIfMatchETag,
        ImportMode::UpdateTwin,
        ImportMode::UpdateTwinIfMatchETag,
    ];

    /// The reference's spelling (`create`, `updateIfMatchETag`…).
    pub fn name(self) -> &'static str {
        match self {
            ImportMode::Create => "create",
            ImportMode::Update => "update",
            ImportMode::UpdateIfMatchETag => "updateIfMatchETag",
            ImportMode::Delete => "delete",
            ImportMode::DeleteIfMatchETag => "deleteIfMatchETag",
            ImportMode::UpdateTwin => "updateTwin",
            ImportMode::UpdateTwinIfMatchETag => "updateTwinIfMatchETag",
        }
    }

    /// The mode with this name, any case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for ImportMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ImportMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ImportMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ImportMode::from_name(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown importMode {text:?}")))
    }
}

/// `properties` of a bulk entry: the twin's desired (and reported) properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertyContainer {
    /// Desired properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<TwinCollection>,
    /// Reported properties (ignored by hubs on import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<TwinCollection>,
}

/// One entry of a bulk call: an identity and, optionally, its twin's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportImportDevice {
    /// Device id.
    pub id: String,
    /// Module id (module entries; not used by dps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// Identity etag, checked by the `…IfMatchETag` identity modes.
    #[serde(rename = "eTag", default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// What to do.
    pub import_mode: ImportMode,
    /// Identity status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceStatus>,
    /// Why the status was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Credentials; keys are generated for a `sas` identity sent without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationMechanism>,
    /// Twin etag, checked by `updateTwinIfMatchETag`.
    #[serde(rename = "twinETag", default, skip_serializing_if = "Option::is_none")]
    pub twin_e_tag: Option<String>,
    /// Twin tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TwinCollection>,
    /// Twin properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<PropertyContainer>,
    /// Capabilities (IoT Edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    /// Scope of an edge device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    /// Scopes of parent edge devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
}

impl ExportImportDevice {
    /// An entry with only an id and a mode.
    pub fn new(id: impl Into<String>, import_mode: ImportMode) -> Self {
        ExportImportDevice {
            id: id.into(),
            module_id: None,
            e_tag: None,
            import_mode,
            status: None,
            status_reason: None,
            authentication: None,
            twin_e_tag: None,
            tags: None,
            properties: None,
            capabilities: None,
            device_scope: None,
            parent_scopes: None,
        }
    }
}

/// Why one entry of a bulk call failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistryOperationError {
    /// The entry's device id.
    #[serde(default)]
    pub device_id: String,
    /// The error code name (`DeviceAlreadyExists`, `DeviceNotFound`…).
    #[serde(default)]
    pub error_code: String,
    /// The error text.
    #[serde(default)]
    pub error_status: String,
    /// The entry's module id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The operation that failed, if the hub says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// A warning about one entry (`DeviceRegisteredWithoutTwin`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistryOperationWarning {
    /// The entry's device id.
    #[serde(default)]
    pub device_id: String,
    /// The warning code.
    #[serde(default)]
    pub warning_code: String,
    /// The warning text.
    #[serde(default)]
    pub warning_status: String,
}

/// The reply of a bulk call: every entry not named in `errors` succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistryOperationResult {
    /// Every entry succeeded.
    pub is_successful: bool,
    /// The entries that failed.
    #[serde(default)]
    pub errors: Vec<DeviceRegistryOperationError>,
    /// Warnings about entries that succeeded.
    #[serde(default)]
    pub warnings: Vec<DeviceRegistryOperationWarning>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modes_read_any_case_and_write_camel_case() {
        for (text, mode) in [
            ("create", ImportMode::Create),
            ("Update", ImportMode::Update),
            ("UpdateIfMatchETag", ImportMode::UpdateIfMatchETag),
            ("deleteifmatchetag", ImportMode::DeleteIfMatchETag),
        ] {
            let entry: ExportImportDevice =
                serde_json::from_value(json!({"id": "d", "importMode": text})).unwrap();
            assert_eq!(entry.import_mode, mode);
        }
        let written = serde_json::to_value(ExportImportDevice {
            e_tag: Some("e".into()),
            twin_e_tag: Some("t".into()),
            ..ExportImportDevice::new("d1", ImportMode::UpdateTwinIfMatchETag)
        })
        .unwrap();
        assert_eq!(
            written,
            json!({"id": "d1", "importMode": "updateTwinIfMatchETag", "eTag": "e", "twinETag": "t"})
        );
        assert!(serde_json::from_value::<ExportImportDevice>(
            json!({"id": "d", "importMode": "createOrUpsert"})
        )
        .is_err());
    }
}
