//! IoT Hub's identity registry rules, for anyone keeping device identities
//! somewhere of their own (a database, an inventory, a test double) behind
//! an [`IotHub`] that must behave as the hub does and pass
//! `hub_battery!` (feature `conformance`).
//!
//! * [`RuledHub`] over a [`RecordStore`]: write one atomic `update` for your
//!   storage and get every rule of the hub's registry (what a connector
//!   usually wants).
//! * [`check_if_match`], [`refusal`], [`merge_twin_patch`]: the rules one by
//!   one, for an `IotHub` written from scratch.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use dps_model::{DeviceId, TwinCollection};
use serde_json::Value;

use crate::{Device, HubError, IfMatch, IotHub, Twin, TwinContent};

/// The error IoT Hub answers with HTTP `status` about `device_id` on hub
/// `host` (404 not found, 409 conflict, 412 precondition failed, and so on),
/// classified exactly as [`HubClient`](crate::HubClient) classifies a real
/// hub's reply.
pub fn refusal(host: &str, device_id: &str, status: u16) -> HubError {
    let message = format!("{device_id}: refused with {status}");
    crate::client::error_from_status(host, device_id, status, message)
}

/// Whether a write with condition `cond` may proceed on a record whose
/// current etag is `current` (`None`: no record). `create` is a device
/// `PUT`, where no `If-Match` means "create": 409 on a taken id. Otherwise
/// the record must exist (404), and an etag condition must match (412).
pub fn check_if_match(
    host: &str,
    device_id: &str,
    current: Option<&str>,
    cond: &IfMatch,
    create: bool,
) -> Result<(), HubError> {
    match (current, cond) {
        (None, IfMatch::None) if create => Ok(()),
        (None, _) => Err(refusal(host, device_id, 404)),
        (Some(_), IfMatch::None) if create => Err(refusal(host, device_id, 409)),
        (Some(now), IfMatch::Etag(tag)) if tag.trim_matches('"') != now => {
            Err(refusal(host, device_id, 412))
        }
        _ => Ok(()),
    }
}

/// Apply a twin patch as IoT Hub does: objects merge key by key, `null`
/// deletes a key, anything else replaces the value.
pub fn merge_twin_patch(into: &mut TwinCollection, patch: TwinCollection) {
    for (key, value) in patch {
        match (into.get_mut(&key), value) {
            (_, Value::Null) => {
                into.remove(&key);
            }
            (Some(Value::Object(old)), Value::Object(new)) => merge_twin_patch(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// What a registry keeps of one device: its identity (with the identity's
/// etag) and its twin's tags and desired properties with the twin's etag.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRecord {
    /// The identity as last written.
    pub device: Device,
    /// Tags and desired properties.
    pub twin: TwinContent,
    /// The twin's etag.
    pub twin_etag: String,
}

/// Where a [`RuledHub`] keeps its records: one atomic read-modify-write.
pub trait RecordStore: Send + Sync {
    /// Run `change` on the record of `device_id` (ids are case-sensitive;
    /// `None`: no such device) and keep what it leaves there (`None`
    /// deletes), atomically with respect to other updates of the same id;
    /// when `change` fails nothing is kept and its error is returned.
    fn update(
        &self,
        device_id: &str,
        change: &mut dyn FnMut(&mut Option<DeviceRecord>) -> Result<(), HubError>,
    ) -> Result<(), HubError>;
}

/// An [`IotHub`] named `host` over any [`RecordStore`], with IoT Hub's
/// registry rules: `If-Match` on every write, fresh etags, 404/409/412 as
/// the hub answers them, twin patches merged.
#[derive(Debug)]
pub struct RuledHub<S> {
    host: String,
    store: S,
    etags: AtomicU64,
}

impl<S: RecordStore> RuledHub<S> {
    /// Hub `host` keeping its devices in `store`.
    pub fn new(host: &str, store: S) -> Self {
        let host = host.to_owned();
        let etags = AtomicU64::new(1);
        RuledHub { host, store, etags }
    }

    /// The storage behind this hub.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn etag(&self) -> String {
        format!("{:x}", self.etags.fetch_add(1, Ordering::Relaxed))
    }

    fn write<T>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Option<DeviceRecord>) -> Result<T, HubError>,
    ) -> Result<T, HubError> {
        let mut answer = None;
        self.store.update(id, &mut |record| {
            answer = Some(change(record)?);
            Ok(())
        })?;
        answer.ok_or_else(|| refusal(&self.host, id, 500))
    }

    /// Read the twin, or first replace (`true`) or merge (`false`) `write` into it.
    fn twin(
        &self,
        id: &DeviceId,
        write: Option<(&Twin, &IfMatch, bool)>,
    ) -> Result<Twin, HubError> {
        self.write(id.as_str(), |record| {
            let cond = write.map_or(&IfMatch::Any, |w| w.1);
            let now = record.as_ref().map(|r| r.twin_etag.as_str());
            check_if_match(&self.host, id.as_str(), now, cond, false)?;
            let record = record
                .as_mut()
                .ok_or_else(|| refusal(&self.host, id.as_str(), 404))?;
            if let Some((twin, _, replace)) = write {
                let (tags, desired) = (
                    twin.tags.clone().unwrap_or_default(),
                    twin.content().desired,
                );
                if replace {
                    record.twin = TwinContent { tags, desired };
                } else {
                    merge_twin_patch(&mut record.twin.tags, tags);
                    merge_twin_patch(&mut record.twin.desired, desired);
                }
                record.twin_etag = self.etag();
            }
            Ok(Twin {
                device_id: Some(id.to_string()),
                etag: Some(record.twin_etag.clone()),
                ..record.twin.to_twin()
            })
        })
    }
}

#[async_trait]
impl<S: RecordStore> IotHub for RuledHub<S> {
    fn host_name(&self) -> &str {
        &self.host
    }

    async fn put_device(&self, device: &Device, if_match: IfMatch) -> Result<Device, HubError> {
        self.write(&device.device_id, |record| {
            let now = record.as_ref().and_then(|r| r.device.etag.as_deref());
            check_if_match(&self.host, &device.device_id, now, &if_match, true)?;
            let stored = Device {
                etag: Some(self.etag()),
                ..device.clone()
            };
            match record {
                Some(record) => record.device = stored.clone(),
                None => {
                    *record = Some(DeviceRecord {
                        device: stored.clone(),
                        twin: TwinContent::default(),
                        twin_etag: self.etag(),
                    })
                }
            }
            Ok(stored)
        })
    }

    async fn get_device(&self, device_id: &DeviceId) -> Result<Device, HubError> {
        self.write(device_id.as_str(), |record| match record {
            Some(record) => Ok(record.device.clone()),
            None => Err(refusal(&self.host, device_id.as_str(), 404)),
        })
    }

    async fn delete_device(&self, device_id: &DeviceId, if_match: IfMatch) -> Result<(), HubError> {
        self.write(device_id.as_str(), |record| {
            let now = record.as_ref().and_then(|r| r.device.etag.as_deref());
            check_if_match(&self.host, device_id.as_str(), now, &if_match, false)?;
            *record = None;
            Ok(())
        })
    }

    async fn get_twin(&self, device_id: &DeviceId) -> Result<Twin, HubError> {
        self.twin(device_id, None)
    }

    async fn replace_twin(
        &self,
        device_id: &DeviceId,
        twin: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError> {
        self.twin(device_id, Some((twin, &if_match, true)))
    }

    async fn patch_twin(
        &self,
        device_id: &DeviceId,
        patch: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError> {
        self.twin(device_id, Some((patch, &if_match, false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collection(value: Value) -> TwinCollection {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn if_match_rules_are_the_hubs() {
        let check = |current, cond: IfMatch, create| {
            check_if_match("h", "d", current, &cond, create).map_err(|e| e.status())
        };
        assert_eq!(check(None, IfMatch::None, true), Ok(()));
        assert_eq!(check(Some("1"), IfMatch::None, true), Err(Some(409)));
        assert_eq!(check(None, IfMatch::Any, true), Err(Some(404)));
        assert_eq!(check(None, IfMatch::Any, false), Err(Some(404)));
        assert_eq!(check(Some("1"), IfMatch::Any, false), Ok(()));
        let tag = |t: &str| IfMatch::Etag(t.to_owned());
        assert_eq!(check(Some("1"), tag("\"1\""), false), Ok(()));
        assert_eq!(check(Some("1"), tag("2"), false), Err(Some(412)));
        assert!(matches!(
            check_if_match("h", "d", None, &IfMatch::Any, false),
            Err(HubError::DeviceNotFound { .. })
        ));
    }

    #[test]
    fn patches_merge_objects_and_null_deletes() {
        let mut twin = collection(json!({"a": {"b": 1, "c": 2}, "d": 3, "e": 4}));
        merge_twin_patch(
            &mut twin,
            collection(json!({"a": {"b": null, "x": 5}, "d": null, "e": [1]})),
        );
        assert_eq!(
            serde_json::to_value(&twin).unwrap(),
            json!({"a": {"c": 2, "x": 5}, "e": [1]})
        );
    }
}
