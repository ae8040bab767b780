//! A hub connector of your own: device identities recorded in your own
//! inventory instead of an Azure IoT hub.
//!
//! The registration pipeline asks its `HubConnector` for an `IotHub` per
//! linked hub and creates the device's identity and initial twin there
//! (`dps_hub::ensure_device`). `Inventories` hands out one
//! [`inventory::Inventory`] per linked hub: an `IotHub` keeping IoT Hub's
//! registry rules in memory (put your database behind the same calls),
//! which `hub_battery!` (`dps_hub::conformance`) checks; this example's test
//! runs it. `Server::builder(config).hub_connector(...)` plugs it in.
//!
//! Run: `cargo run -p dps-examples --example custom_hub`.

pub mod inventory;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use dps_hub::{Device, HubError, IotHub};
use dps_model::LinkedHub;
use dps_service::{pipeline::HubConnector, server::Server};
use serde_json::json;

use inventory::Inventory;

/// Gives the pipeline one [`Inventory`] per linked hub host name.
#[derive(Clone, Debug, Default)]
pub struct Inventories(Arc<Mutex<HashMap<String, Arc<Inventory>>>>);

impl Inventories {
    /// The inventory of hub `host` (created empty on first use).
    pub fn get(&self, host: &str) -> Arc<Inventory> {
        let mut hubs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = host.to_ascii_lowercase();
        hubs.entry(key)
            .or_insert_with(|| Arc::new(Inventory::new(host)))
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
    let recorded = inventories.get(&done.assigned_hub).device(&done.device_id);
    println!(
        "{} recorded on {}: {recorded:?}",
        done.device_id, done.assigned_hub
    );
    recorded.ok_or_else(|| anyhow::anyhow!("{} is not in the inventory", done.device_id))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    run(data_dir.path()).await?;
    Ok(())
}
