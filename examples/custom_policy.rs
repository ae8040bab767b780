//! An allocation policy of your own, beside the built-ins.
//!
//! `ByRegion` sends a device to the candidate hub whose `location` is the
//! `region` the device names in its registration payload, and spreads
//! every other device with the built-in hashing. A policy implements
//! `dps_allocation::Policy`: it is offered the enrollment's candidate hubs
//! (linked, eligible, within the enrollment's `iotHubs`) and must answer
//! one of them; `dps_allocation::conformance` (`policy_battery!`) checks
//! that and the rest of the contract, and this example's test runs it.
//!
//! `Server::builder(config).policy("by-region", ByRegion)` registers it.
//! Enrollments choose it with Azure's own fields — `"allocationPolicy":
//! "custom"` and `customAllocationDefinition.webhookUrl` set to
//! `policy_url("by-region")` (`dps-policy://by-region`) — so every SDK and
//! tool that writes enrollments can select it.
//!
//! Run: `cargo run -p dps-examples --example custom_policy`.

use std::path::Path;

use async_trait::async_trait;
use dps_allocation::{Allocation, AllocationError, AllocationRequest, HashedPolicy, Policy};
use dps_model::AllocationPolicy;
use dps_service::server::{policy_url, Server};
use dps_storage::MemoryStore;
use serde_json::{json, Value};

/// The hub in the device's region, else an evenly spread one.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByRegion;

#[async_trait]
impl Policy for ByRegion {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Custom
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let (hubs, candidates) = (request.hubs, request.candidates.hubs);
        let region = request
            .device
            .payload
            .and_then(|p| p.get("region"))
            .and_then(Value::as_str);
        let in_region = |r: &str| {
            candidates.iter().find(|&i| {
                hubs.get(i)
                    .location()
                    .is_some_and(|l| l.eq_ignore_ascii_case(r))
            })
        };
        let chosen = region
            .and_then(in_region)
            .or_else(|| HashedPolicy::choose(request.registration_id.as_str(), hubs, candidates))
            .ok_or_else(|| AllocationError::NoCandidateHub {
                policy: AllocationPolicy::Custom,
                reason: "the enrollment leaves no hub to choose from".to_owned(),
            })?;
        Ok(Allocation::hub(hubs.get(chosen).host_name()))
    }
}

/// Two regions' hubs (emulated), a server using `ByRegion`, and one device
/// in each region; returns each device's hub.
pub async fn run(data_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let (hubs, connector) =
        dps_examples::emulated_hubs(&["hub-us.localhost", "hub-eu.localhost"]).await?;
    let us = hubs
        .connection_string("hub-us.localhost")
        .unwrap_or_default();
    let eu = hubs
        .connection_string("hub-eu.localhost")
        .unwrap_or_default();
    let mut config = dps_examples::local_config(data_dir);
    config.tenants.push(dps_examples::tenant(
        "contoso",
        &[(&us, Some("us")), (&eu, Some("eu"))],
    ));
    let server = Server::builder(config)
        .store(MemoryStore::new())
        .hub_connector(connector)
        .policy("by-region", ByRegion)
        .listeners(dps_examples::device_and_service())
        .start()
        .await?;

    let admin = dps_examples::admin(&server)?;
    let by_region = json!({
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": policy_url("by-region"), "apiVersion": "2021-10-01"}
    });
    let mut assigned = Vec::new();
    for (device, region) in [("meter-eu-1", "eu"), ("meter-us-1", "us")] {
        let key = dps_examples::enroll(&admin, device, by_region.clone()).await?;
        let payload = json!({ "region": region });
        let registration = dps_examples::register(&server, device, &key, Some(payload)).await?;
        println!("{device} (region {region}) → {}", registration.assigned_hub);
        assigned.push((device.to_owned(), registration.assigned_hub));
    }
    server.shutdown().await;
    hubs.shutdown().await;
    Ok(assigned)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    run(data_dir.path()).await?;
    Ok(())
}
