//! A hub connector of your own: device identities recorded in an inventory
//! of yours instead of an Azure IoT hub.
//!
//! The pipeline asks its `HubConnector` for an `IotHub` per linked hub and
//! creates the device's identity and initial twin there. Here each linked
//! hub is a `RuledHub` (`dps_hub::registry_rules`: IoT Hub's registry rules,
//! etags, 404/409/412, twin merges) over an [`Inventory`], the storage: one
//! atomic read-modify-write, in memory here — put your database behind the
//! same call. `hub_battery!` checks the result (this example's test runs
//! it); `Server::builder(config).hub_connector(...)` plugs it in.
//!
//! Run: `cargo run -p dps-examples --example custom_hub`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use dps_hub::registry_rules::{DeviceRecord, RecordStore, RuledHub};
use dps_hub::{Device, HubError, IotHub};
use dps_model::LinkedHub;
use dps_service::{pipeline::HubConnector, server::Server};
use serde_json::json;

/// One hub's device records by id.
#[derive(Debug, Default)]
pub struct Inventory(Mutex<HashMap<String, DeviceRecord>>);

impl RecordStore for Inventory {
    fn update(
        &self,
        device_id: &str,
        change: &mut dyn FnMut(&mut Option<DeviceRecord>) -> Result<(), HubError>,
    ) -> Result<(), HubError> {
        // A database would run this in a transaction on the device's row.
        let mut records = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut record = records.get(device_id).cloned();
        change(&mut record)?;
        match record {
            Some(record) => records.insert(device_id.to_owned(), record),
            None => records.remove(device_id),
        };
        Ok(())
    }
}

/// An inventory-backed hub named `host`.
pub fn inventory_hub(host: &str) -> RuledHub<Inventory> {
    RuledHub::new(host, Inventory::default())
}

/// Gives the pipeline one inventory-backed hub per linked hub host name.
#[derive(Clone, Debug, Default)]
pub struct Inventories(Arc<Mutex<HashMap<String, Arc<RuledHub<Inventory>>>>>);

impl Inventories {
    /// The hub named `host` (created empty on first use).
    pub fn get(&self, host: &str) -> Arc<RuledHub<Inventory>> {
        let mut hubs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = hubs.entry(host.to_ascii_lowercase());
        entry
            .or_insert_with(|| Arc::new(inventory_hub(host)))
            .clone()
    }
}

impl HubConnector for Inventories {
    fn hub(&self, linked: &LinkedHub) -> Result<Arc<dyn IotHub>, HubError> {
        Ok(self.get(&linked.host_name))
    }
}

/// A server recording identities in [`Inventories`]; one device provisioned;
/// returns its identity as recorded.
pub async fn run(data_dir: &Path) -> anyhow::Result<Device> {
    let inventories = Inventories::default();
    let hub = "HostName=inventory.localhost;SharedAccessKeyName=owner;SharedAccessKey=aW52ZW50b3J5";
    let mut config = dps_examples::local_config(data_dir);
    config
        .tenants
        .push(dps_examples::tenant("fabrikam", &[(hub, None)]));
    let server = Server::builder(config)
        .store(dps_storage::MemoryStore::new())
        .hub_connector(inventories.clone())
        .listeners(dps_examples::device_and_service())
        .start()
        .await?;
    let admin = dps_examples::admin(&server)?;
    let twin = json!({"initialTwin": {"tags": {"floor": 3}}});
    let key = dps_examples::enroll(&admin, "sensor-7", twin).await?;
    let done = dps_examples::register(&server, "sensor-7", &key, None).await?;
    server.shutdown().await;
    let records = inventories.get(&done.assigned_hub);
    let recorded = records
        .store()
        .0
        .lock()
        .unwrap()
        .get(&done.device_id)
        .cloned();
    println!(
        "{} recorded on {}: {recorded:?}",
        done.device_id, done.assigned_hub
    );
    let record = recorded.ok_or_else(|| anyhow::anyhow!("{} is not recorded", done.device_id))?;
    Ok(record.device)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    run(data_dir.path()).await?;
    Ok(())
}
