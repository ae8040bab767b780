//! Twin state kept per device, and the IoT Hub merge rules.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_hub::wire::{METADATA_KEY, VERSION_KEY};
use dps_model::TwinCollection;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Tags, desired and reported properties of one device, with versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TwinState {
    pub(crate) version: i64,
    pub(crate) tags: TwinCollection,
    pub(crate) desired: TwinCollection,
    pub(crate) desired_version: i64,
    pub(crate) desired_updated: String,
    pub(crate) reported: TwinCollection,
    pub(crate) reported_version: i64,
    pub(crate) reported_updated: String,
}

impl TwinState {
    pub(crate) fn new(now: &str) -> Self {
        TwinState {
            version: 1,
            tags: TwinCollection::new(),
            desired: TwinCollection::new(),
            desired_version: 1,
            desired_updated: now.to_owned(),
            reported: TwinCollection::new(),
            reported_version: 1,
            reported_updated: now.to_owned(),
        }
    }

    /// Twin etags are the version as 8 big-endian bytes in base64
    /// (`AAAAAAAAAAE=`), the form IoT Hub uses.
    pub(crate) fn etag(&self) -> String {
        BASE64.encode(self.version.to_be_bytes())
    }

    /// Set the content of a brand-new twin (bulk create with a twin): no
    /// version step, as if the twin had been created with it.
    pub(crate) fn initialise(
        &mut self,
        tags: Option<TwinCollection>,
        desired: Option<TwinCollection>,
    ) {
        if let Some(tags) = tags {
            self.tags = without_nulls(strip_metadata(tags));
        }
        if let Some(desired) = desired {
            self.desired = without_nulls(strip_metadata(desired));
        }
    }

    /// Replace tags and desired properties (PUT /twins).
    pub(crate) fn replace(&mut self, tags: TwinCollection, desired: TwinCollection, now: &str) {
        self.tags = without_nulls(strip_metadata(tags));
        self.desired = without_nulls(strip_metadata(desired));
        self.desired_version += 1;
        self.desired_updated = now.to_owned();
        self.version += 1;
    }

    /// Merge tags and desired properties (PATCH /twins); `null` deletes.
    pub(crate) fn patch(
        &mut self,
        tags: Option<TwinCollection>,
        desired: Option<TwinCollection>,
        now: &str,
    ) {
        if let Some(tags) = tags {
            merge(&mut self.tags, strip_metadata(tags));
        }
        if let Some(desired) = desired {
            merge(&mut self.desired, strip_metadata(desired));
            self.desired_version += 1;
            self.desired_updated = now.to_owned();
        }
        self.version += 1;
    }

    pub(crate) fn desired_with_metadata(&self) -> TwinCollection {
        with_metadata(&self.desired, self.desired_version, &self.desired_updated)
    }

    pub(crate) fn reported_with_metadata(&self) -> TwinCollection {
        with_metadata(
            &self.reported,
            self.reported_version,
            &self.reported_updated,
        )
    }
}

fn with_metadata(collection: &TwinCollection, version: i64, updated: &str) -> TwinCollection {
    let mut out = collection.clone();
    out.insert(
        METADATA_KEY.to_owned(),
        json!({"$lastUpdated": updated, "$lastUpdatedVersion": version}),
    );
    out.insert(VERSION_KEY.to_owned(), json!(version));
    out
}

/// Clients often send back what they read: the hub's bookkeeping keys are not data.
fn strip_metadata(mut collection: TwinCollection) -> TwinCollection {
    collection.remove(METADATA_KEY);
    collection.remove(VERSION_KEY);
    collection
}

/// Recursive merge: objects merge key by key, `null` deletes, anything else replaces.
pub(crate) fn merge(target: &mut TwinCollection, patch: TwinCollection) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(patch_obj) => match target.get_mut(&key) {
                Some(Value::Object(existing)) => merge(existing, patch_obj),
                _ => {
                    target.insert(key, Value::Object(without_nulls(patch_obj)));
                }
            },
            other => {
                target.insert(key, other);
            }
        }
    }
}

/// A collection with every `null` member removed, at any depth.
fn without_nulls(collection: TwinCollection) -> TwinCollection {
    collection
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::Null => None,
            Value::Object(inner) => Some((k, Value::Object(without_nulls(inner)))),
            other => Some((k, other)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> TwinCollection {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test literal is an object"),
        }
    }

    #[test]
    fn merge_is_recursive_and_null_deletes() {
        let mut target = obj(json!({"a": 1, "b": {"x": 1, "y": 2}, "c": "keep"}));
        merge(
            &mut target,
            obj(json!({"a": null, "b": {"y": null, "z": 3}, "d": {"n": null, "m": 1}})),
        );
        assert_eq!(
            Value::Object(target),
            json!({"b": {"x": 1, "z": 3}, "c": "keep", "d": {"m": 1}})
        );
    }

    #[test]
    fn versions_and_metadata() {
        let mut twin = TwinState::new("t0");
        assert_eq!(twin.etag(), "AAAAAAAAAAE=");
        twin.patch(Some(obj(json!({"site": "a"}))), None, "t1");
        assert_eq!((twin.version, twin.desired_version), (2, 1));
        twin.replace(
            TwinCollection::new(),
            obj(json!({"$version": 9, "$metadata": {}, "interval": 5})),
            "t2",
        );
        assert_eq!((twin.version, twin.desired_version), (3, 2));
        assert!(twin.tags.is_empty());
        let desired = twin.desired_with_metadata();
        assert_eq!(desired["interval"], json!(5));
        assert_eq!(desired["$version"], json!(2));
        assert_eq!(desired["$metadata"]["$lastUpdated"], json!("t2"));
    }
}
