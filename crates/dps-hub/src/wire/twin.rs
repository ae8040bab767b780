//! The IoT Hub device `Twin`, as `/twins/{id}` sends and returns it.

use dps_model::{DeviceCapabilities, InitialTwin, TwinCollection};
use serde::{Deserialize, Serialize};

use super::device::{AuthenticationType, ConnectionState, DeviceStatus, X509Thumbprint};

/// Key of the metadata object inside `desired` and `reported`.
pub const METADATA_KEY: &str = "$metadata";
/// Key of the collection version inside `desired` and `reported`.
pub const VERSION_KEY: &str = "$version";

/// A device twin. Optional fields are left out when writing, so a `Twin`
/// holding only `tags` and `properties.desired` is a valid replace or patch body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    /// Device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Module id (module twins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// Entity tag of the twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Entity tag of the device identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_etag: Option<String>,
    /// Twin version, incremented on every change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Identity status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceStatus>,
    /// Why the status was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update_time: Option<String>,
    /// Connection state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<ConnectionState>,
    /// When the device was last active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<String>,
    /// Cloud-to-device messages queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_message_count: Option<u64>,
    /// How the device authenticates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<AuthenticationType>,
    /// Thumbprints of an X.509 device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<X509Thumbprint>,
    /// Device capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    /// Scope of an edge device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_scope: Option<String>,
    /// Scopes of parent edge devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_scopes: Option<Vec<String>>,
    /// Twin tags (service-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TwinCollection>,
    /// Desired and reported properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<TwinProperties>,
}

/// `properties` of a twin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinProperties {
    /// Desired properties (with `$metadata` and `$version` when read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<TwinCollection>,
    /// Reported properties (read-only for services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<TwinCollection>,
}

/// The service-writable part of a twin: tags and desired properties, without
/// `$metadata`/`$version`. What DPS writes at assignment and carries between hubs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TwinContent {
    /// Tags.
    pub tags: TwinCollection,
    /// Desired properties.
    pub desired: TwinCollection,
}

impl TwinContent {
    /// The tags and desired properties of an enrollment's initial twin (empty when absent).
    pub fn from_initial(initial: Option<&InitialTwin>) -> Self {
        initial
            .map(|t| TwinContent {
                tags: t.tags_or_empty(),
                desired: t.desired_or_empty(),
            })
            .unwrap_or_default()
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.desired.is_empty()
    }

    /// A replace/patch body carrying exactly these tags and desired properties.
    pub fn to_twin(&self) -> Twin {
        Twin {
            tags: Some(self.tags.clone()),
            properties: Some(TwinProperties {
                desired: Some(self.desired.clone()),
                reported: None,
            }),
            ..Twin::default()
        }
    }
}

impl Twin {
    /// Tags and desired properties with the hub's `$metadata`/`$version` removed.
    pub fn content(&self) -> TwinContent {
        TwinContent {
            tags: self.tags.clone().unwrap_or_default(),
            desired: self.desired().map(without_metadata).unwrap_or_default(),
        }
    }

    /// `properties.desired` as sent (metadata included).
    pub fn desired(&self) -> Option<&TwinCollection> {
        self.properties.as_ref().and_then(|p| p.desired.as_ref())
    }

    /// `properties.reported` as sent (metadata included).
    pub fn reported(&self) -> Option<&TwinCollection> {
        self.properties.as_ref().and_then(|p| p.reported.as_ref())
    }

    /// `$version` of the desired properties.
    pub fn desired_version(&self) -> Option<i64> {
        self.desired()
            .and_then(|d| d.get(VERSION_KEY))
            .and_then(|v| v.as_i64())
    }
}

/// A property collection without its top-level `$metadata` and `$version`.
pub fn without_metadata(collection: &TwinCollection) -> TwinCollection {
    collection
        .iter()
        .filter(|(k, _)| k.as_str() != METADATA_KEY && k.as_str() != VERSION_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
