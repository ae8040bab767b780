//! The public policy battery (`dps_allocation::conformance`), once per
//! built-in policy.

mod hashed {
    use std::sync::Arc;

    use dps_allocation::conformance::TestPolicy;
    use dps_allocation::HashedPolicy;

    async fn fresh() -> TestPolicy {
        TestPolicy::new(Arc::new(HashedPolicy))
    }

    dps_allocation::policy_battery!(fresh);
}

/// With round trips known for some regions (the battery's hubs sit in
/// westus, eastus, westeurope, an empty region and none).
mod geo_latency {
    use std::sync::Arc;
    use std::time::Duration;

    use dps_allocation::conformance::TestPolicy;
    use dps_allocation::{GeoLatencyPolicy, LatencyTable};

    async fn fresh() -> TestPolicy {
        let table = LatencyTable::new()
            .with_default_region("us")
            .with_round_trip("us", "westus", Duration::from_millis(10))
            .with_round_trip("us", "eastus", Duration::from_millis(60));
        let policy =
            GeoLatencyPolicy::new(Arc::new(table)).with_tie_tolerance(Duration::from_millis(5));
        TestPolicy::new(Arc::new(policy))
    }

    dps_allocation::policy_battery!(fresh);
}

/// Knowing no round trip at all (it degrades to hashed).
mod geo_latency_unmeasured {
    use std::sync::Arc;

    use dps_allocation::conformance::TestPolicy;
    use dps_allocation::GeoLatencyPolicy;

    async fn fresh() -> TestPolicy {
        TestPolicy::new(Arc::new(GeoLatencyPolicy::default()))
    }

    dps_allocation::policy_battery!(fresh);
}

mod static_hub {
    use std::sync::Arc;

    use dps_allocation::conformance::TestPolicy;
    use dps_allocation::StaticPolicy;

    async fn fresh() -> TestPolicy {
        TestPolicy::new(Arc::new(StaticPolicy)).single_candidate_only()
    }

    dps_allocation::policy_battery!(fresh);
}

/// The webhook policy against a loopback webhook that picks the first hub
/// it is offered.
mod custom_webhook {
    use std::sync::Arc;

    use dps_allocation::conformance::TestPolicy;
    use dps_allocation::WebhookPolicy;

    use crate::support::{first_linked_hub_webhook, loopback_webhooks};

    async fn fresh() -> TestPolicy {
        let webhook = first_linked_hub_webhook().await;
        let policy = WebhookPolicy::new(loopback_webhooks()).expect("webhook policy");
        let members = serde_json::json!({
            "allocationPolicy": "custom",
            "customAllocationDefinition": {
                "webhookUrl": webhook.url,
                "apiVersion": "2021-10-01"
            }
        });
        TestPolicy::new(Arc::new(policy))
            .with_enrollment_members(members)
            .keep_alive(webhook)
    }

    dps_allocation::policy_battery!(fresh);
}

/// The battery catches policies that break its rules.
mod the_battery_bites {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use dps_allocation::conformance::{
        answers_every_candidate_set, same_request_same_hub, TestPolicy,
    };
    use dps_allocation::{Allocation, AllocationError, AllocationRequest, Policy};
    use dps_model::AllocationPolicy;

    /// Always the tenant's first linked hub, candidate or not.
    struct FirstLinked;

    #[async_trait]
    impl Policy for FirstLinked {
        fn kind(&self) -> AllocationPolicy {
            AllocationPolicy::Hashed
        }
        async fn allocate(
            &self,
            request: &AllocationRequest<'_>,
        ) -> Result<Allocation, AllocationError> {
            let all = request.hubs.names(request.hubs.all());
            Ok(Allocation::hub(all[0].clone()))
        }
    }

    /// Round robin over the candidates: in the set, but not repeatable.
    #[derive(Default)]
    struct RoundRobin(AtomicUsize);

    #[async_trait]
    impl Policy for RoundRobin {
        fn kind(&self) -> AllocationPolicy {
            AllocationPolicy::Hashed
        }
        async fn allocate(
            &self,
            request: &AllocationRequest<'_>,
        ) -> Result<Allocation, AllocationError> {
            let names = request.hubs.names(request.candidates.hubs);
            let turn = self.0.fetch_add(1, Ordering::Relaxed);
            names
                .get(turn % names.len().max(1))
                .map(|name| Allocation::hub(name.clone()))
                .ok_or(AllocationError::NoCandidateHub {
                    policy: AllocationPolicy::Hashed,
                    reason: "no candidate".to_owned(),
                })
        }
    }

    #[tokio::test]
    #[should_panic(expected = "outside the candidates")]
    async fn a_hub_outside_the_candidates_fails() {
        answers_every_candidate_set(&TestPolicy::new(Arc::new(FirstLinked))).await;
    }

    #[tokio::test]
    #[should_panic(expected = "a second ask moved it")]
    async fn an_unrepeatable_answer_fails_unless_declared() {
        same_request_same_hub(&TestPolicy::new(Arc::new(RoundRobin::default()))).await;
    }

    #[tokio::test]
    async fn a_declared_nondeterministic_policy_passes() {
        let fixture = TestPolicy::new(Arc::new(RoundRobin::default())).nondeterministic();
        same_request_same_hub(&fixture).await;
        answers_every_candidate_set(&fixture).await;
    }
}
