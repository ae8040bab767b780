//! Throttling after authentication: bad tokens spend their address's budget,
//! never the tenant's; the defaults stop one tenant's burst without touching
//! another tenant; polls, status lookups and the service API are limited per
//! tenant with `429` and `Retry-After`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use dps_attestation::keys::{derive_device_key, generate_key};
use dps_attestation::sas::SymmetricKey;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::{EnrollmentGroup, Precondition};
use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::json;

use super::{client_from, device_token, enroll, poll, register, second_tenant};
use crate::service_client::Service;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
const DEVICES: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 67);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_bad_tokens_do_not_throttle_a_good_device() -> Result<()> {
    // A tight tenant budget, as an operator might set it: at 8ad8c6e the
    // attacker's refused requests spent it before being authenticated.
    let system = TestSystem::start(SystemOptions {
        configure: &|config| {
            config.throttling.registrations_per_second = 1;
            config.throttling.burst = 5;
        },
        ..SystemOptions::default()
    })
    .await?;
    let scope = system.scope().to_string();
    let key = enroll(&system, system.scope(), "good-dev", json!({})).await;
    let body = json!({"registrationId": "good-dev"});

    let attacker = client_from(&system, ATTACKER);
    let forged = device_token(&scope, "good-dev", &generate_key());
    let statuses: Vec<StatusCode> = futures::stream::iter(0..100)
        .map(|_| {
            let (attacker, system, scope, forged, body) =
                (&attacker, &system, &scope, &forged, &body);
            async move {
                register(attacker, system, scope, "good-dev", Some(forged), body)
                    .await
                    .status
            }
        })
        .buffer_unordered(10)
        .collect()
        .await;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(refused + throttled, 100, "{statuses:?}");
    assert!(
        throttled >= 40,
        "the attacker's address is throttled after its failure burst (50): {refused} refused, {throttled} throttled"
    );

    // The good device, at another address, registers at once.
    let http = client_from(&system, DEVICES);
    let token = device_token(&scope, "good-dev", &key);
    let answer = register(&http, &system, &scope, "good-dev", Some(&token), &body).await;
    assert_eq!(
        answer.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let operation = answer.json()["operationId"].as_str().unwrap().to_owned();
    let polled = poll(&http, &system, &scope, "good-dev", &token, &operation).await;
    assert_eq!(polled.json()["status"], "assigned");
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_one_tenants_burst_is_throttled_and_another_tenant_is_not() -> Result<()>
{
    let system = TestSystem::start(SystemOptions::default()).await?;
    let scope = system.scope().to_string();
    let group_key = generate_key();
    let group = EnrollmentGroup::from_json(
        json!({"enrollmentGroupId": "fleet", "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": group_key}}})
        .to_string()
        .as_bytes(),
    )?;
    system
        .server
        .store()
        .put_enrollment_group(system.scope(), group, Precondition::None)
        .await?;
    let group_key = SymmetricKey::from_base64(&group_key)?;
    let other = second_tenant(&system, "other-tenant", &["hub-a.test"]).await;
    let other_key = enroll(&system, &other.id_scope, "calm-dev", json!({})).await;

    // 2,000 registrations of tenant A's devices, as fast as they go.
    let http = Arc::new(client_from(&system, DEVICES));
    let started = Instant::now();
    let answers: Vec<(StatusCode, Option<String>, serde_json::Value)> =
        futures::stream::iter(0..2_000)
            .map(|i| {
                let id = format!("burst-{i}");
                let key = derive_device_key(&group_key, &id).to_base64();
                let token = device_token(&scope, &id, &key);
                let (http, system, scope) = (http.clone(), &system, &scope);
                async move {
                    let answer = register(
                        &http,
                        system,
                        scope,
                        &id,
                        Some(&token),
                        &json!({ "registrationId": id }),
                    )
                    .await;
                    let retry_after = answer.retry_after().map(str::to_owned);
                    (answer.status, retry_after, answer.json())
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let accepted = answers
        .iter()
        .filter(|(s, ..)| *s == StatusCode::ACCEPTED)
        .count();
    let throttled: Vec<_> = answers
        .iter()
        .filter(|(s, ..)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    eprintln!(
        "2,000 registrations in {elapsed:?}: {accepted} accepted, {} throttled",
        throttled.len()
    );
    assert_eq!(accepted + throttled.len(), 2_000);
    // Default: 200/s with a burst of 400.
    let allowed = 400 + (200.0 * elapsed.as_secs_f64()).ceil() as usize + 1;
    assert!(
        accepted <= allowed,
        "{accepted} accepted in {elapsed:?}, at most {allowed} allowed"
    );
    assert!(!throttled.is_empty(), "the burst was throttled");
    for (_, retry_after, body) in &throttled {
        assert_eq!(body["errorCode"], 429001, "{body}");
        assert!(retry_after
            .as_deref()
            .is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    }

    // Tenant B still registers at once.
    let other_scope = other.id_scope.to_string();
    let token = device_token(&other_scope, "calm-dev", &other_key);
    let answer = register(
        &http,
        &system,
        &other_scope,
        "calm-dev",
        Some(&token),
        &json!({"registrationId": "calm-dev"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_status_lookups_and_the_service_api_are_throttled_per_tenant() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| {
            config.throttling.polls_per_second = 1;
            config.throttling.polls_burst = 3;
            config.throttling.service_requests_per_second = 1;
            config.throttling.service_burst = 3;
        },
        ..SystemOptions::default()
    })
    .await?;
    let scope = system.scope().to_string();
    let key = enroll(&system, system.scope(), "poller", json!({})).await;
    let http = client_from(&system, DEVICES);
    let token = device_token(&scope, "poller", &key);
    let answer = register(
        &http,
        &system,
        &scope,
        "poller",
        Some(&token),
        &json!({"registrationId": "poller"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let operation = answer.json()["operationId"].as_str().unwrap().to_owned();

    // Three polls pass; the fourth, and a status lookup, wait.
    for _ in 0..3 {
        let polled = poll(&http, &system, &scope, "poller", &token, &operation).await;
        assert_eq!(polled.status, StatusCode::OK);
    }
    let polled = poll(&http, &system, &scope, "poller", &token, &operation).await;
    assert_eq!(polled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(polled.json()["errorCode"], 429001);
    assert_eq!(polled.retry_after(), Some("1"));
    let lookup = http
        .post(format!(
            "https://{}/{scope}/registrations/poller?api-version=2021-06-01",
            system.device_host
        ))
        .header("authorization", &token)
        .json(&json!({"registrationId": "poller"}))
        .send()
        .await?;
    assert_eq!(lookup.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(lookup.headers().contains_key("retry-after"));

    // The service API: three requests pass, the fourth waits; the operator
    // has a budget of its own.
    let owner = Service::owner(&system)?;
    for _ in 0..3 {
        assert_eq!(owner.get("/enrollments/poller").await?.status, 200);
    }
    let refused = owner.get("/enrollments/poller").await?;
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.error_code(), Some(429001));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        Service::operator(&system)?.get("/tenants").await?.status,
        200
    );

    // A second later the budgets have refilled.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(owner.get("/enrollments/poller").await?.status, 200);
    let polled = poll(&http, &system, &scope, "poller", &token, &operation).await;
    assert_eq!(polled.status, StatusCode::OK);
    system.stop().await;
    Ok(())
}
