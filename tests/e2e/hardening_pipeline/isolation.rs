//! One tenant's hanging hub or webhook delays only that tenant's devices:
//! registrations serialise per (ID scope, registration id), so the same id
//! in another tenant — which at 8ad8c6e shared a lock shard, being the same
//! id — goes straight through.

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_hub_sim::Fault;
use reqwest::StatusCode;
use serde_json::json;

use super::{client_from, device_token, enroll, poll, register, second_tenant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hub_of_one_tenant_does_not_delay_the_same_id_in_another_tenant() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-b.test"],
        ..SystemOptions::default()
    })
    .await?;
    // Tenant A's device goes to hub A only; tenant B has only hub B.
    let key_a = enroll(
        &system,
        system.scope(),
        "same-id",
        json!({"iotHubs": ["hub-a.test"]}),
    )
    .await;
    let hub_a_requests = system.hubs.request_count("hub-a.test");
    system
        .hubs
        .set_fault_times("hub-a.test", Fault::Delay(Duration::from_secs(3)), 1);
    let a_is_waiting = async {
        while system.hubs.request_count("hub-a.test") == hub_a_requests {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (elapsed_b, elapsed_a, status_a) =
        tenant_b_while_a_hangs(&system, &key_a, a_is_waiting, [70, 71]).await;
    eprintln!("tenant B's registration of the same id: {elapsed_b:?}");
    assert!(
        elapsed_b < Duration::from_millis(200),
        "tenant B's device took {elapsed_b:?} while tenant A's hub hung"
    );
    // Tenant A's registration did wait for its hub, and then finished.
    assert_eq!(status_a, StatusCode::ACCEPTED);
    assert!(elapsed_a >= Duration::from_secs(3));
    system.hubs.clear_fault("hub-a.test");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_of_one_tenant_does_not_delay_the_same_id_in_another_tenant() -> Result<()>
{
    let system = TestSystem::start(SystemOptions {
        hubs: &["hub-a.test", "hub-b.test"],
        configure: &|config| {
            // The webhook runs on loopback, which the egress policy refuses
            // unless the operator allows it.
            config.egress.allowed_networks = vec!["127.0.0.0/8".to_owned()];
            config.egress.allow_http_networks = vec!["127.0.0.0/8".to_owned()];
        },
    })
    .await?;
    let (url, webhook_calls) = hanging_webhook().await?;
    let key_a = enroll(
        &system,
        system.scope(),
        "same-id",
        json!({"allocationPolicy": "custom",
            "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"}}),
    )
    .await;
    let a_is_waiting = async {
        while webhook_calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (elapsed_b, elapsed_a, _) =
        tenant_b_while_a_hangs(&system, &key_a, a_is_waiting, [72, 73]).await;
    eprintln!("tenant B's registration of the same id while A's webhook hangs: {elapsed_b:?}");
    assert!(
        elapsed_b < Duration::from_millis(200),
        "tenant B's device took {elapsed_b:?} while tenant A's webhook hung"
    );
    // Tenant A's registration waited for its webhook's timeout.
    assert!(elapsed_a >= Duration::from_secs(1));
    system.stop().await;
    Ok(())
}

/// Tenant A (the system's tenant) registers `same-id` with `key_a`, which
/// hangs on A's dependency; once `a_is_waiting` resolves (A holds its
/// device lock), a second tenant's `same-id` registers and is assigned to
/// `hub-b.test`. Each tenant's device connects from its own 127.0.0.N.
/// Returns how long tenant B's register took, how long tenant A's took,
/// and A's answer status.
async fn tenant_b_while_a_hangs(
    system: &TestSystem,
    key_a: &str,
    a_is_waiting: impl Future<Output = ()>,
    [source_a, source_b]: [u8; 2],
) -> (Duration, Duration, StatusCode) {
    let scope_a = system.scope().to_string();
    let tenant_b = second_tenant(system, "tenant-b", &["hub-b.test"]).await;
    let scope_b = tenant_b.id_scope.to_string();
    let key_b = enroll(system, &tenant_b.id_scope, "same-id", json!({})).await;
    let warm_key = enroll(system, &tenant_b.id_scope, "warm-up", json!({})).await;
    let body = json!({"registrationId": "same-id"});

    // Tenant B's connection and caches are warm before the measurement.
    let http_b = client_from(system, Ipv4Addr::new(127, 0, 0, source_b));
    let warm = register(
        &http_b,
        system,
        &scope_b,
        "warm-up",
        Some(&device_token(&scope_b, "warm-up", &warm_key)),
        &json!({"registrationId": "warm-up"}),
    )
    .await;
    assert_eq!(warm.status, StatusCode::ACCEPTED);

    let http_a = client_from(system, Ipv4Addr::new(127, 0, 0, source_a));
    let token_a = device_token(&scope_a, "same-id", key_a);
    let stuck = async {
        let started = Instant::now();
        let answer = register(&http_a, system, &scope_a, "same-id", Some(&token_a), &body).await;
        (started.elapsed(), answer.status)
    };
    let measured = async {
        a_is_waiting.await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let token_b = device_token(&scope_b, "same-id", &key_b);
        let started = Instant::now();
        let answer = register(&http_b, system, &scope_b, "same-id", Some(&token_b), &body).await;
        (started.elapsed(), answer, token_b)
    };
    let ((elapsed_a, status_a), (elapsed_b, answer_b, token_b)) = tokio::join!(stuck, measured);

    assert_eq!(answer_b.status, StatusCode::ACCEPTED);
    let operation = answer_b.json()["operationId"].as_str().unwrap().to_owned();
    let polled = poll(&http_b, system, &scope_b, "same-id", &token_b, &operation).await;
    assert_eq!(
        polled.json()["registrationState"]["assignedHub"],
        "hub-b.test"
    );
    (elapsed_b, elapsed_a, status_a)
}

/// A webhook that accepts connections and never answers; counts them.
async fn hanging_webhook() -> Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let url = format!("http://{}/allocate", listener.local_addr()?);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    Ok((url, accepted))
}
