//! The engine: dispatch by policy, replacing a policy, carrying out decisions.

use std::sync::Arc;

use async_trait::async_trait;
use dps_allocation::{
    Allocation, AllocationError, AllocationRequest, Allocator, AllocatorConfig, Decision,
    HashedPolicy, HubTable, Policy,
};
use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, ErrorCode};

use crate::support::{
    first_linked_hub_webhook, hubs, individual, linked, loopback_allocator_config, reg,
};

#[tokio::test]
async fn dispatches_by_the_requests_policy() {
    let table = HubTable::new(&[linked("a.net"), linked("b.net"), linked("c.net")]).unwrap();
    let allocator = Allocator::new(loopback_allocator_config()).unwrap();
    let id = reg("dev-1");

    let hashed = individual("");
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&hashed),
        &table,
        AllocationPolicy::Hashed,
    )
    .unwrap();
    let expected = HashedPolicy::choose("dev-1", &table, table.all()).unwrap();
    assert_eq!(
        allocator.allocate(&request).await.unwrap(),
        Allocation::hub(table.get(expected).host_name())
    );

    let fixed = individual(r#""allocationPolicy":"static","iotHubs":["c.net"]"#);
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&fixed),
        &table,
        AllocationPolicy::Hashed,
    )
    .unwrap();
    assert_eq!(
        allocator.allocate(&request).await.unwrap().hub_host_name,
        "c.net"
    );

    let webhook = first_linked_hub_webhook().await;
    let custom = individual(&format!(
        r#""allocationPolicy":"custom","iotHubs":["b.net"],"customAllocationDefinition":{{"webhookUrl":"{}","apiVersion":"2021-10-01"}}"#,
        webhook.url
    ));
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&custom),
        &table,
        AllocationPolicy::Hashed,
    )
    .unwrap();
    assert_eq!(
        allocator.allocate(&request).await.unwrap().hub_host_name,
        "b.net"
    );
    assert_eq!(webhook.received().len(), 1);
}

/// A policy that always takes the last candidate.
struct LastHub;

#[async_trait]
impl Policy for LastHub {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Hashed
    }
    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let last = request.candidates.hubs.iter().last().expect("candidates");
        Ok(Allocation::hub(request.hubs.get(last).host_name()))
    }
}

#[tokio::test]
async fn a_policy_can_be_replaced() {
    let table = HubTable::new(&hubs(4)).unwrap();
    let allocator = Allocator::new(AllocatorConfig::default())
        .unwrap()
        .with_policy(Arc::new(LastHub));
    let enrollment = individual("");
    for i in 0..8 {
        let id = reg(&format!("d{i}"));
        let request = AllocationRequest::new(
            &id,
            EnrollmentRef::Individual(&enrollment),
            &table,
            AllocationPolicy::Hashed,
        )
        .unwrap();
        assert_eq!(
            allocator.allocate(&request).await.unwrap().hub_host_name,
            "hub-3.example.net"
        );
    }
}

#[tokio::test]
async fn keeping_a_hub_skips_the_policy_but_requires_the_hub_to_be_linked() {
    let table = HubTable::new(&hubs(3)).unwrap();
    let allocator = Allocator::new(AllocatorConfig::default()).unwrap();
    let enrollment = individual("");
    let id = reg("dev-1");
    let request = AllocationRequest::new(
        &id,
        EnrollmentRef::Individual(&enrollment),
        &table,
        AllocationPolicy::Hashed,
    )
    .unwrap();

    let kept = allocator
        .resolve(&request, &Decision::KeepHub("HUB-2.example.net".into()))
        .await
        .unwrap();
    assert_eq!(kept, Allocation::hub("hub-2.example.net"));

    let err = allocator
        .resolve(&request, &Decision::KeepHub("unlinked.net".into()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AllocationError::CurrentHubNotLinked {
            hub: "unlinked.net".into()
        }
    );
    assert_eq!(err.error_code(), ErrorCode::LINKED_HUB_NOT_FOUND);
    assert!(err.to_string().contains("\"unlinked.net\""), "{err}");

    let allocated = allocator
        .resolve(&request, &Decision::Allocate)
        .await
        .unwrap();
    assert_eq!(allocated, allocator.allocate(&request).await.unwrap());
}
