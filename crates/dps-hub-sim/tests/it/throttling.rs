//! IoT Hub's throttling model over HTTP: off by default, a bulk call costs
//! one registry operation per entry, 429 `ThrottlingException` with
//! `Retry-After` beyond the limit, and the allowance refills at the tier's rate.

use std::time::{Duration, Instant};

use dps_hub_sim::{HubSim, HubSimConfig, HubSpec, HubTier, Throttling};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{http, owner_token, HUB_A, HUB_B};

/// One emulated minute per real second: one S1 unit allows 100 registry
/// operations a (real) second.
const SPEEDUP: f64 = 60.0;

fn bulk_body(prefix: &str, count: usize) -> Value {
    json!((0..count)
        .map(|i| json!({"id": format!("{prefix}-{i}"), "importMode": "create"}))
        .collect::<Vec<_>>())
}

#[tokio::test]
async fn bulk_calls_count_per_entry_and_429_carries_retry_after() {
    let throttled = Throttling {
        speedup: SPEEDUP,
        ..Throttling::new(HubTier::S1, 1)
    };
    let sim = HubSim::start(HubSimConfig {
        hubs: vec![
            HubSpec::new(HUB_A).throttled(throttled),
            HubSpec::new(HUB_B),
        ],
        ..HubSimConfig::new("127.0.0.1:0".parse().unwrap(), &[])
    })
    .await
    .unwrap();
    let client = http(&sim);
    let post = |host: &'static str, body: Value| {
        let request = client
            .post(format!("https://{host}/devices?api-version=2021-04-12"))
            .header("Authorization", owner_token(&sim, host))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string());
        async move { request.send().await.unwrap() }
    };

    // The reference's example: two bulk creates of 50 pass, the third is refused.
    assert_eq!(
        post(HUB_A, bulk_body("a", 50)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        post(HUB_A, bulk_body("b", 50)).await.status(),
        StatusCode::OK
    );
    let refused = post(HUB_A, bulk_body("c", 50)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["iothub-errorcode"], "ThrottlingException");
    let retry_after: f64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 50 operations at 100/min, a minute being a second here: about half a second.
    assert!((0.3..=0.6).contains(&retry_after), "{retry_after}");
    assert_eq!(
        sim.device_count(HUB_A),
        100,
        "nothing of the refused call applied"
    );
    assert_eq!(sim.throttled_count(HUB_A), 1);

    // After Retry-After the same call passes.
    let waited = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(retry_after)).await;
    assert_eq!(
        post(HUB_A, bulk_body("c", 50)).await.status(),
        StatusCode::OK
    );
    assert!(waited.elapsed() < Duration::from_secs(2));
    assert_eq!(sim.registry_operation_count(HUB_A), 200);

    // Single-device calls count one each; the unthrottled hub never refuses.
    let get = client
        .get(format!(
            "https://{HUB_A}/devices/a-1?api-version=2021-04-12"
        ))
        .header("Authorization", owner_token(&sim, HUB_A))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        get.status(),
        StatusCode::OK | StatusCode::TOO_MANY_REQUESTS
    ));
    assert_eq!(sim.registry_operation_count(HUB_A), 201);
    for round in 0..5 {
        let reply = post(HUB_B, bulk_body(&format!("b{round}"), 100)).await;
        assert_eq!(reply.status(), StatusCode::OK);
    }
    assert_eq!(sim.throttled_count(HUB_B), 0);
    assert_eq!(sim.registry_operation_count(HUB_B), 500);
    sim.shutdown().await;
}
