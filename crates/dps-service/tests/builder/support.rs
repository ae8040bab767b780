//! Parts the builder tests plug in: an in-memory hub connector that keeps
//! the identities it is given, an allocation policy that follows a tag in
//! the device's payload, and a configuration on loopback ports.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use dps_allocation::{
    Allocation, AllocationError, AllocationRequest, LatencySource, Policy, PreparedHub,
};
use dps_hub::{Device, HubError, IfMatch, IotHub, Twin};
use dps_model::{AllocationPolicy, DeviceId, LinkedHub};
use dps_service::config::{LinkedHubBootstrap, TenantBootstrap};
use dps_service::pipeline::HubConnector;
use dps_service::ServiceConfig;

/// The hubs of the test tenant.
pub(crate) const HUBS: [&str; 2] = ["hub-a.test", "hub-b.test"];

/// A server configuration in `dir`: every listener on an ephemeral loopback
/// port, one tenant (`builder`, service host 127.0.0.2) linked to [`HUBS`].
pub(crate) fn config(dir: &Path) -> ServiceConfig {
    let mut config = ServiceConfig {
        data_dir: dir.to_path_buf(),
        ..ServiceConfig::default()
    };
    config.device.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.service.listen = SocketAddr::from(([127, 0, 0, 2], 0));
    config.tenants = vec![TenantBootstrap {
        name: "builder".to_owned(),
        service_host_name: Some("127.0.0.2".to_owned()),
        id_scope: None,
        linked_hubs: HUBS
            .iter()
            .map(|hub| LinkedHubBootstrap {
                connection_string: format!(
                    "HostName={hub};SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0"
                ),
                allocation_weight: 1,
                location: None,
            })
            .collect(),
    }];
    config
}

/// Identities created through it, by hub: `(hub, device id)`.
#[derive(Clone, Default)]
pub(crate) struct RecordingHubs {
    devices: Arc<Mutex<BTreeMap<(String, String), Device>>>,
}

impl RecordingHubs {
    /// The devices created so far, as `(hub, device id)`.
    pub(crate) fn identities(&self) -> Vec<(String, String)> {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices.keys().cloned().collect()
    }
}

impl HubConnector for RecordingHubs {
    fn hub(&self, linked: &LinkedHub) -> Result<Arc<dyn IotHub>, HubError> {
        Ok(Arc::new(RecordingHub {
            host: linked.host_name.clone(),
            devices: self.devices.clone(),
        }))
    }
}

struct RecordingHub {
    host: String,
    devices: Arc<Mutex<BTreeMap<(String, String), Device>>>,
}

impl RecordingHub {
    fn key(&self, id: &str) -> (String, String) {
        (self.host.clone(), id.to_owned())
    }
}

#[async_trait]
impl IotHub for RecordingHub {
    fn host_name(&self) -> &str {
        &self.host
    }
    async fn put_device(&self, device: &Device, _: IfMatch) -> Result<Device, HubError> {
        let stored = Device {
            etag: Some("1".to_owned()),
            ..device.clone()
        };
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices.insert(self.key(&device.device_id), stored.clone());
        Ok(stored)
    }
    async fn get_device(&self, id: &DeviceId) -> Result<Device, HubError> {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices
            .get(&self.key(id.as_str()))
            .cloned()
            .ok_or_else(|| HubError::DeviceNotFound {
                host: self.host.clone(),
                device_id: id.as_str().to_owned(),
                status: 404,
                code: Some("DeviceNotFound".to_owned()),
                message: "no such device".to_owned(),
            })
    }
    async fn delete_device(&self, id: &DeviceId, _: IfMatch) -> Result<(), HubError> {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices.remove(&self.key(id.as_str()));
        Ok(())
    }
    async fn get_twin(&self, id: &DeviceId) -> Result<Twin, HubError> {
        Ok(Twin {
            device_id: Some(id.as_str().to_owned()),
            ..Twin::default()
        })
    }
    async fn replace_twin(&self, id: &DeviceId, twin: &Twin, _: IfMatch) -> Result<Twin, HubError> {
        Ok(Twin {
            device_id: Some(id.as_str().to_owned()),
            ..twin.clone()
        })
    }
    async fn patch_twin(&self, id: &DeviceId, patch: &Twin, _: IfMatch) -> Result<Twin, HubError> {
        self.replace_twin(id, patch, IfMatch::Any).await
    }
}

/// Round trips that make the second hub of [`HUBS`] the nearest to everyone.
pub(crate) struct SecondHubNearest;

impl LatencySource for SecondHubNearest {
    fn round_trip(&self, _: Option<IpAddr>, hub: &PreparedHub) -> Option<Duration> {
        let millis = if hub.host_name() == HUBS[1] { 1 } else { 50 };
        Some(Duration::from_millis(millis))
    }
}

/// Chooses the offered hub whose name starts with the payload's `"site"`
/// (else the first offered hub) and answers the site back in the payload.
pub(crate) struct BySite;

#[async_trait]
impl Policy for BySite {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Custom
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let site = request
            .device
            .payload
            .and_then(|p| p["site"].as_str())
            .unwrap_or_default();
        let offered: Vec<&str> = request
            .candidates
            .hubs
            .iter()
            .map(|i| request.hubs.get(i).host_name())
            .collect();
        let hub = offered
            .iter()
            .find(|hub| !site.is_empty() && hub.starts_with(site))
            .or(offered.first())
            .ok_or_else(|| AllocationError::NoCandidateHub {
                policy: AllocationPolicy::Custom,
                reason: "no hub offered".to_owned(),
            })?;
        Ok(Allocation {
            payload: Some(serde_json::json!({ "site": site })),
            ..Allocation::hub(*hub)
        })
    }
}

/// Stands in for the built-in `hashed`: every device to the second hub.
pub(crate) struct AlwaysSecondHub;

#[async_trait]
impl Policy for AlwaysSecondHub {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Hashed
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let second = request
            .candidates
            .hubs
            .iter()
            .map(|i| request.hubs.get(i).host_name())
            .find(|hub| *hub == HUBS[1]);
        second
            .map(Allocation::hub)
            .ok_or_else(|| AllocationError::NoCandidateHub {
                policy: AllocationPolicy::Hashed,
                reason: format!("{} is not offered", HUBS[1]),
            })
    }
}
