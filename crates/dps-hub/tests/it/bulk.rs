//! Provisioning many devices with one bulk registry call, each device's
//! outcome its own, and throttled hubs retried within the deadline.

use std::time::{Duration, Instant};

use dps_hub::{provision_devices, HubClientOptions, HubError, IfMatch, IotHub, TwinAction};
use dps_hub_sim::{HubSim, HubSimConfig, HubSpec, HubTier, Throttling};
use serde_json::json;

use crate::support::{id, initial_twin, sas_request, Fixture, HUB_A};

#[tokio::test]
async fn one_call_creates_identities_with_twins_and_failures_stay_per_device() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    // Already on the hub: its create entry is refused, then it converges alone.
    hub.put_device(&sas_request("old", None).to_device(), IfMatch::None)
        .await
        .unwrap();
    let twin = initial_twin(json!({"tags": {"site": "n"}, "properties": {"desired": {"i": 1}}}));
    let mut keep_missing = sas_request("keep-missing", None);
    keep_missing.twin_action = TwinAction::Keep;
    let mut bad = sas_request("bad", None);
    bad.auth = dps_hub::DeviceAuth::X509Thumbprint {
        primary: "not-a-thumbprint".into(),
        secondary: None,
    };
    let requests = vec![
        sas_request("new-1", Some(twin.clone())),
        sas_request("new-2", None),
        sas_request("old", Some(twin)),
        keep_missing,
        bad,
    ];
    let before = fx.sim.request_count(HUB_A);
    let outcomes = provision_devices(&hub, &requests).await;
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    assert!(
        outcomes[2].is_ok(),
        "existing device converges: {:?}",
        outcomes[2]
    );
    assert!(
        outcomes[3].is_ok(),
        "keep on a missing device creates it: {:?}",
        outcomes[3]
    );
    match &outcomes[4] {
        Err(HubError::Rejected {
            status: 400, code, ..
        }) => {
            assert_eq!(code.as_deref(), Some("ArgumentInvalid"))
        }
        other => panic!("only the bad device fails: {other:?}"),
    }
    // One bulk call, then the fallbacks of "old" (create 409, update, twin)
    // and "keep-missing" (create).
    assert_eq!(fx.sim.request_count(HUB_A) - before, 1 + 3 + 1);
    let created = fx.sim.twin(HUB_A, "new-1").unwrap();
    assert_eq!(created.version, Some(1), "identity and twin in one step");
    assert_eq!(created.tags.unwrap()["site"], "n");
    assert_eq!(
        fx.sim.twin(HUB_A, "old").unwrap().tags.unwrap()["site"],
        "n"
    );
    assert!(fx.sim.device(HUB_A, "bad").is_none());
    let got = hub.get_device(&id("new-2")).await.unwrap();
    assert_eq!(
        got.authentication
            .unwrap()
            .symmetric_key
            .unwrap()
            .primary_key,
        Some(crate::support::key(1).to_base64())
    );
}

#[tokio::test]
async fn a_throttled_bulk_call_is_retried_after_retry_after() {
    // One S1 unit, one emulated minute per real 100 ms: 100 operations, then
    // 1,000 a second.
    let throttling = Throttling {
        speedup: 600.0,
        ..Throttling::new(HubTier::S1, 1)
    };
    let sim = HubSim::start(HubSimConfig {
        hubs: vec![HubSpec::new(HUB_A).throttled(throttling)],
        ..HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[])
    })
    .await
    .unwrap();
    let options = HubClientOptions {
        retry_deadline: Duration::from_secs(5),
        ..HubClientOptions::default()
    }
    .trust_ca_pem(sim.ca_pem().unwrap())
    .resolve(HUB_A, sim.addr());
    let hub = dps_hub::HubClient::from_connection_string(
        &sim.connection_string(HUB_A).unwrap(),
        &options,
    )
    .unwrap();
    let requests: Vec<_> = (0..100)
        .map(|i| sas_request(&format!("t-{i}"), None))
        .collect();
    let started = Instant::now();
    assert!(provision_devices(&hub, &requests)
        .await
        .iter()
        .all(Result::is_ok));
    // The bucket is empty now: the next 60 wait for 60 operations' refill.
    let more: Vec<_> = (0..60)
        .map(|i| sas_request(&format!("u-{i}"), None))
        .collect();
    let outcomes = provision_devices(&hub, &more).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert!(sim.throttled_count(HUB_A) >= 1);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim.device_count(HUB_A), 160);

    // Past the deadline, the throttling error reaches every device of the call.
    let impatient = HubClientOptions {
        retry_deadline: Duration::from_millis(1),
        ..options
    };
    let hub = dps_hub::HubClient::from_connection_string(
        &sim.connection_string(HUB_A).unwrap(),
        &impatient,
    )
    .unwrap();
    let burst: Vec<_> = (0..100)
        .map(|i| sas_request(&format!("v-{i}"), None))
        .collect();
    let outcomes = provision_devices(&hub, &burst).await;
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Err(HubError::Throttled {
                retry_after: Some(_),
                ..
            })
        )),
        "{:?}",
        outcomes.first()
    );
    sim.shutdown().await;
}
