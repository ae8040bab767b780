//! [`Inventory`]: an [`IotHub`] keeping identities and twins in memory with
//! IoT Hub's registry rules (what `hub_battery!` checks): a create without
//! `If-Match` fails on a taken id (409), `If-Match: *` needs the record
//! (404), a stale etag fails (412), every write gets a new etag, twin
//! patches merge objects and delete with `null`, ids are case-sensitive.
//! Put your database behind the same calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use dps_hub::{Device, HubError, IfMatch, IotHub, Twin, TwinContent};
use dps_model::{DeviceId, TwinCollection};
use serde_json::Value;

type HubResult<T> = Result<T, HubError>;

/// One hub's devices by id: identity, twin, twin etag.
#[derive(Debug, Default)]
pub struct Inventory {
    host: String,
    devices: Mutex<HashMap<String, (Device, TwinContent, String)>>,
    etags: AtomicU64,
}

impl Inventory {
    /// An empty inventory answering for hub `host`.
    pub fn new(host: &str) -> Self {
        let host = host.to_owned();
        Inventory {
            host,
            ..Inventory::default()
        }
    }

    /// The identity of `device_id`, if recorded.
    pub fn device(&self, device_id: &str) -> Option<Device> {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices.get(device_id).map(|d| d.0.clone())
    }

    fn etag(&self) -> String {
        self.etags.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// IoT Hub's `If-Match` rules, given the record's current etag.
    fn check(&self, id: &str, now: Option<&str>, cond: &IfMatch, create: bool) -> HubResult<()> {
        match (now, cond) {
            (None, IfMatch::None) if create => Ok(()),
            (None, _) => Err(self.refuse(id, 404)),
            (Some(_), IfMatch::None) if create => Err(self.refuse(id, 409)),
            (Some(now), IfMatch::Etag(tag)) if tag.trim_matches('"') != now => {
                Err(self.refuse(id, 412))
            }
            _ => Ok(()),
        }
    }

    /// The error IoT Hub answers with `status` (404, 409 or 412).
    fn refuse(&self, id: &str, status: u16) -> HubError {
        let host = self.host.clone();
        let (device_id, code, message) = (id.to_owned(), None, format!("{id}: {status}"));
        match status {
            404 => HubError::DeviceNotFound {
                host,
                device_id,
                status,
                code,
                message,
            },
            409 => HubError::Conflict {
                host,
                device_id,
                status,
                code,
                message,
            },
            _ => HubError::PreconditionFailed {
                host,
                device_id,
                status,
                code,
                message,
            },
        }
    }

    /// Read the twin, or first replace (`true`) or merge (`false`) `write` into it.
    fn twin(&self, id: &DeviceId, write: Option<(&Twin, IfMatch, bool)>) -> HubResult<Twin> {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let record = devices.get_mut(id.as_str());
        let cond = write.as_ref().map_or(IfMatch::Any, |w| w.1.clone());
        let now = record.as_ref().map(|r| r.2.as_str());
        self.check(id.as_str(), now, &cond, false)?;
        let Some((_, content, etag)) = record else {
            unreachable!("checked above")
        };
        if let Some((twin, _, replace)) = write {
            let tags = twin.tags.clone().unwrap_or_default();
            let desired = twin.content().desired;
            if replace {
                *content = TwinContent { tags, desired };
            } else {
                merge(&mut content.tags, tags);
                merge(&mut content.desired, desired);
            }
            *etag = self.etag();
        }
        let (device_id, etag) = (Some(id.to_string()), Some(etag.clone()));
        Ok(Twin {
            device_id,
            etag,
            ..content.to_twin()
        })
    }
}

/// A twin patch: objects merge, `null` deletes, anything else replaces.
fn merge(into: &mut TwinCollection, patch: TwinCollection) {
    for (key, value) in patch {
        match (into.get_mut(&key), value) {
            (_, Value::Null) => drop(into.remove(&key)),
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            (_, value) => drop(into.insert(key, value)),
        }
    }
}

#[async_trait]
impl IotHub for Inventory {
    fn host_name(&self) -> &str {
        &self.host
    }
    async fn put_device(&self, device: &Device, cond: IfMatch) -> HubResult<Device> {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let old = devices.get(&device.device_id);
        let now = old.and_then(|d| d.0.etag.as_deref());
        self.check(&device.device_id, now, &cond, true)?;
        let (twin, twin_etag) = old.map_or_else(Default::default, |d| (d.1.clone(), d.2.clone()));
        let stored = Device {
            etag: Some(self.etag()),
            ..device.clone()
        };
        devices.insert(device.device_id.clone(), (stored.clone(), twin, twin_etag));
        Ok(stored)
    }
    async fn get_device(&self, id: &DeviceId) -> HubResult<Device> {
        self.device(id.as_str())
            .ok_or_else(|| self.refuse(id.as_str(), 404))
    }
    async fn delete_device(&self, id: &DeviceId, cond: IfMatch) -> HubResult<()> {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let now = devices.get(id.as_str()).and_then(|d| d.0.etag.as_deref());
        self.check(id.as_str(), now, &cond, false)?;
        devices.remove(id.as_str());
        Ok(())
    }
    async fn get_twin(&self, id: &DeviceId) -> HubResult<Twin> {
        self.twin(id, None)
    }
    async fn replace_twin(&self, id: &DeviceId, twin: &Twin, cond: IfMatch) -> HubResult<Twin> {
        self.twin(id, Some((twin, cond, true)))
    }
    async fn patch_twin(&self, id: &DeviceId, patch: &Twin, cond: IfMatch) -> HubResult<Twin> {
        self.twin(id, Some((patch, cond, false)))
    }
}
