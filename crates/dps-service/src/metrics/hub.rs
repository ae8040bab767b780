//! IoT hub calls, timed: a decorator over any [`IotHub`] that records each
//! call's duration and result in `dps_hub_call_duration_seconds`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use dps_hub::wire::{BulkRegistryOperationResult, Device, ExportImportDevice, Twin};
use dps_hub::{HubError, IfMatch, IotHub};
use dps_model::DeviceId;

use super::device::DeviceMetrics;

/// A hub client whose calls are timed.
pub struct TimedHub {
    inner: Arc<dyn IotHub>,
    metrics: Arc<DeviceMetrics>,
}

impl TimedHub {
    /// Time the calls of `inner` into `metrics`.
    pub fn new(inner: Arc<dyn IotHub>, metrics: Arc<DeviceMetrics>) -> Self {
        TimedHub { inner, metrics }
    }

    async fn timed<T>(
        &self,
        call: &'static str,
        work: impl Future<Output = Result<T, HubError>>,
    ) -> Result<T, HubError> {
        let started = Instant::now();
        let result = work.await;
        self.metrics
            .hub_call(call, result.is_ok(), started.elapsed());
        result
    }
}

#[async_trait]
impl IotHub for TimedHub {
    fn host_name(&self) -> &str {
        self.inner.host_name()
    }

    async fn bulk_registry(
        &self,
        devices: &[ExportImportDevice],
    ) -> Result<BulkRegistryOperationResult, HubError> {
        self.timed("bulk_registry", self.inner.bulk_registry(devices))
            .await
    }

    async fn put_device(&self, device: &Device, if_match: IfMatch) -> Result<Device, HubError> {
        self.timed("put_device", self.inner.put_device(device, if_match))
            .await
    }

    async fn get_device(&self, device_id: &DeviceId) -> Result<Device, HubError> {
        self.timed("get_device", self.inner.get_device(device_id))
            .await
    }

    async fn delete_device(&self, device_id: &DeviceId, if_match: IfMatch) -> Result<(), HubError> {
        self.timed(
            "delete_device",
            self.inner.delete_device(device_id, if_match),
        )
        .await
    }

    async fn get_twin(&self, device_id: &DeviceId) -> Result<Twin, HubError> {
        self.timed("get_twin", self.inner.get_twin(device_id)).await
    }

    async fn replace_twin(
        &self,
        device_id: &DeviceId,
        twin: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError> {
        self.timed(
            "replace_twin",
            self.inner.replace_twin(device_id, twin, if_match),
        )
        .await
    }

    async fn patch_twin(
        &self,
        device_id: &DeviceId,
        patch: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError> {
        self.timed(
            "patch_twin",
            self.inner.patch_twin(device_id, patch, if_match),
        )
        .await
    }

    async fn create_or_update_device(&self, device: &Device) -> Result<(Device, bool), HubError> {
        // Forwarded whole: the client's own create-or-replace (up to four
        // requests) counts as one call.
        self.timed(
            "create_or_update_device",
            self.inner.create_or_update_device(device),
        )
        .await
    }
}
