//! One battery every [`Policy`] passes, instantiated per implementation.

use std::sync::Arc;
use std::time::Duration;

use dps_allocation::{
    AllocationRequest, GeoLatencyPolicy, HashedPolicy, HubTable, LatencyTable, Policy,
    StaticPolicy, WebhookPolicy,
};
use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, IndividualEnrollment};

use crate::support::{first_linked_hub_webhook, individual, located, loopback_webhooks, reg};

/// The hubs every battery run uses; the spelling is mixed on purpose.
fn table() -> HubTable {
    HubTable::new(&[
        located("Hub-One.example.net", "westus"),
        located("hub-two.example.net", "eastus"),
        located("HUB-THREE.example.net", "westus"),
        located("hub-four.example.net", "westeurope"),
    ])
    .unwrap()
}

/// An enrollment using `kind`, optionally restricted to `hubs`.
fn enrollment(kind: AllocationPolicy, webhook_url: &str, hubs: &[&str]) -> IndividualEnrollment {
    let mut extra = format!(r#""allocationPolicy":"{}""#, kind.as_str());
    if kind == AllocationPolicy::Custom {
        extra.push_str(&format!(
            r#","customAllocationDefinition":{{"webhookUrl":"{webhook_url}","apiVersion":"2021-10-01"}}"#
        ));
    }
    if !hubs.is_empty() {
        extra.push_str(&format!(
            r#","iotHubs":{}"#,
            serde_json::to_string(hubs).unwrap()
        ));
    }
    individual(&extra)
}

/// The subsets of hubs each policy is tried with (static: one hub each).
fn subsets(kind: AllocationPolicy) -> Vec<Vec<&'static str>> {
    if kind == AllocationPolicy::Static {
        vec![
            vec!["hub-one.example.net"],
            vec!["HUB-two.example.net"],
            vec!["hub-four.example.net"],
        ]
    } else {
        vec![
            vec![],
            vec!["hub-two.example.net"],
            vec!["hub-one.example.net", "hub-three.example.net"],
            vec![
                "hub-two.example.net",
                "hub-four.example.net",
                "hub-three.example.net",
            ],
        ]
    }
}

async fn battery(policy: &dyn Policy, webhook_url: &str) {
    let kind = policy.kind();
    let hubs = table();
    for subset in subsets(kind) {
        let enrollment = enrollment(kind, webhook_url, &subset);
        for i in 0..8 {
            let id = reg(&format!("battery-device-{i}"));
            let request = AllocationRequest::new(
                &id,
                EnrollmentRef::Individual(&enrollment),
                &hubs,
                AllocationPolicy::Hashed,
            )
            .unwrap();
            assert_eq!(request.candidates.policy, kind);
            let first = policy.allocate(&request).await.unwrap();

            // Only a candidate, spelled exactly as linked.
            let index = hubs.find(&first.hub_host_name).expect("a linked hub");
            assert!(
                request.candidates.hubs.contains(index),
                "{kind:?} chose {} outside {subset:?}",
                first.hub_host_name
            );
            assert_eq!(hubs.get(index).host_name(), first.hub_host_name);
            // The enrollment's restriction is honoured.
            if !subset.is_empty() {
                assert!(subset
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&first.hub_host_name)));
            }
            // Deterministic.
            let again = policy.allocate(&request).await.unwrap();
            assert_eq!(again, first);
        }
    }
}

#[tokio::test]
async fn hashed_passes_the_battery() {
    battery(&HashedPolicy, "").await;
}

#[tokio::test]
async fn geo_latency_passes_the_battery() {
    let table = LatencyTable::new()
        .with_default_region("us")
        .with_round_trip("us", "westus", Duration::from_millis(10))
        .with_round_trip("us", "eastus", Duration::from_millis(60));
    battery(&GeoLatencyPolicy::new(Arc::new(table)), "").await;
    battery(&GeoLatencyPolicy::default(), "").await;
}

#[tokio::test]
async fn static_passes_the_battery() {
    battery(&StaticPolicy, "").await;
}

#[tokio::test]
async fn custom_passes_the_battery() {
    let webhook = first_linked_hub_webhook().await;
    let policy = WebhookPolicy::new(loopback_webhooks()).unwrap();
    battery(&policy, &webhook.url).await;
}
