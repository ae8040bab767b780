//! The operations DPS performs on a linked hub, as a trait.

use async_trait::async_trait;
use dps_model::DeviceId;

use crate::wire::{BulkRegistryOperationResult, Device, ExportImportDevice, Twin};
use crate::HubError;

/// The `If-Match` condition of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// No `If-Match`. For a device `PUT` this means "create": the hub answers
    /// 409 `DeviceAlreadyExists` when the id is taken.
    None,
    /// `If-Match: *`: the record must exist, whatever its etag.
    Any,
    /// `If-Match: "<etag>"`: the record must still carry this etag.
    Etag(String),
}

impl IfMatch {
    /// The header value, quoted as the hub expects; `None` for no header.
    pub fn header_value(&self) -> Option<String> {
        match self {
            IfMatch::None => None,
            IfMatch::Any => Some("*".to_owned()),
            IfMatch::Etag(tag) => {
                let bare = tag.trim().trim_matches('"');
                Some(format!("\"{bare}\""))
            }
        }
    }
}

/// An IoT hub's identity registry and twins, as far as provisioning needs them.
///
/// [`crate::HubClient`] implements it over the hub's REST API; tests may
/// implement it in memory. Implementations are shared between tasks.
#[async_trait]
pub trait IotHub: Send + Sync {
    /// The hub's host name (what registrations report as `assignedHub`).
    fn host_name(&self) -> &str;

    /// `PUT /devices/{id}`: create (`IfMatch::None`) or replace an identity.
    async fn put_device(&self, device: &Device, if_match: IfMatch) -> Result<Device, HubError>;

    /// `GET /devices/{id}`.
    async fn get_device(&self, device_id: &DeviceId) -> Result<Device, HubError>;

    /// `DELETE /devices/{id}`; the twin goes with it.
    async fn delete_device(&self, device_id: &DeviceId, if_match: IfMatch) -> Result<(), HubError>;

    /// `GET /twins/{id}`.
    async fn get_twin(&self, device_id: &DeviceId) -> Result<Twin, HubError>;

    /// `PUT /twins/{id}`: replace tags and desired properties.
    async fn replace_twin(
        &self,
        device_id: &DeviceId,
        twin: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError>;

    /// `PATCH /twins/{id}`: merge tags and desired properties (`null` deletes a key).
    async fn patch_twin(
        &self,
        device_id: &DeviceId,
        patch: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError>;

    /// `POST /devices`: the bulk registry operation, up to
    /// [`crate::wire::MAX_BULK_DEVICES`] entries; every entry not named in the
    /// result's `errors` was applied. The default applies the entries one by
    /// one with the single-device calls, for hubs without a bulk API.
    async fn bulk_registry(
        &self,
        devices: &[ExportImportDevice],
    ) -> Result<BulkRegistryOperationResult, HubError> {
        crate::bulk::one_by_one(self, devices).await
    }

    /// Create the identity, or replace it if the id is taken (`If-Match: "*"`).
    /// Returns the hub's record and whether it was newly created.
    async fn create_or_update_device(&self, device: &Device) -> Result<(Device, bool), HubError> {
        // Two rounds cover a concurrent delete between our create and update.
        let mut last = None;
        for _ in 0..2 {
            match self.put_device(device, IfMatch::None).await {
                Ok(created) => return Ok((created, true)),
                Err(HubError::Conflict { .. }) => {}
                Err(other) => return Err(other),
            }
            match self.put_device(device, IfMatch::Any).await {
                Ok(updated) => return Ok((updated, false)),
                Err(err @ HubError::DeviceNotFound { .. }) => last = Some(err),
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or_else(|| HubError::InvalidResponse {
            host: self.host_name().to_owned(),
            status: 404,
            reason: "device kept disappearing between create and update".to_owned(),
        }))
    }
}
