//! The bulk registry call (`POST /devices`) of [`HubClient`].

use reqwest::Method;

use super::{reply, HubClient};
use crate::hub::{IfMatch, IotHub};
use crate::wire::{BulkRegistryOperationResult, ExportImportDevice, MAX_BULK_DEVICES};
use crate::HubError;

impl HubClient {
    /// `POST /devices` with up to [`MAX_BULK_DEVICES`] entries. Both answers
    /// carrying a `BulkRegistryOperationResult` are results: `200` (every
    /// entry applied) and `400` (some entries refused, named in `errors`).
    /// Throttling, server and transport failures are retried like every call.
    pub(super) async fn post_bulk(
        &self,
        devices: &[ExportImportDevice],
    ) -> Result<BulkRegistryOperationResult, HubError> {
        if devices.is_empty() {
            return Ok(BulkRegistryOperationResult {
                is_successful: true,
                ..Default::default()
            });
        }
        if devices.len() > MAX_BULK_DEVICES {
            return Err(HubError::InvalidOptions {
                reason: format!(
                    "a bulk registry call holds at most {MAX_BULK_DEVICES} devices, not {}",
                    devices.len()
                ),
            });
        }
        let body = self.to_json(&devices)?;
        let reply = self
            .send_accepting(
                Method::POST,
                "/devices?".to_owned(),
                Some(body),
                &IfMatch::None,
                None,
                &[400],
            )
            .await?;
        match serde_json::from_slice::<BulkRegistryOperationResult>(&reply.body) {
            Ok(result) => Ok(result),
            // A 400 without the result shape: the request as a whole was refused.
            Err(_) if reply.status == 400 => Err(reply::error_from_reply(
                self.host_name(),
                reply.status,
                &reqwest::header::HeaderMap::new(),
                &reply.body,
                "",
            )),
            Err(err) => Err(HubError::InvalidResponse {
                host: self.host_name().to_owned(),
                status: reply.status,
                reason: format!("body is not a BulkRegistryOperationResult: {err}"),
            }),
        }
    }
}
