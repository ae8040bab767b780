//! The initial device twin an enrollment carries to the hub.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Free-form twin JSON (tags or desired properties). Stored and returned as given.
pub type TwinCollection = Map<String, Value>;

/// `initialTwin`: tags and desired properties written to the hub at assignment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwin {
    /// Twin tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TwinCollection>,
    /// Twin properties (only `desired` is settable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<InitialTwinProperties>,
}

/// `initialTwin.properties`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwinProperties {
    /// Desired properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<TwinCollection>,
}

impl InitialTwin {
    /// The tags, or an empty collection.
    pub fn tags_or_empty(&self) -> TwinCollection {
        self.tags.clone().unwrap_or_default()
    }

    /// The desired properties, or an empty collection.
    pub fn desired_or_empty(&self) -> TwinCollection {
        self.properties
            .as_ref()
            .and_then(|p| p.desired.clone())
            .unwrap_or_default()
    }
}

/// The legacy `initialTwinState` shape some clients still write
/// (`{"tags":…, "desiredProperties":…}`), converted on read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyInitialTwinState {
    /// Twin tags.
    #[serde(default)]
    pub tags: Option<TwinCollection>,
    /// Desired properties.
    #[serde(default)]
    pub desired_properties: Option<TwinCollection>,
}

impl From<LegacyInitialTwinState> for InitialTwin {
    fn from(legacy: LegacyInitialTwinState) -> Self {
        InitialTwin {
            tags: legacy.tags,
            properties: legacy
                .desired_properties
                .map(|desired| InitialTwinProperties {
                    desired: Some(desired),
                }),
        }
    }
}
