//! Dead, failing, throttling and slow hubs: retries within the deadline, then typed errors.

use std::time::{Duration, Instant};

use dps_hub::{ensure_device, HubClient, HubClientOptions, HubError, IotHub};
use dps_hub_sim::{Fault, HubSim, HubSimConfig};

use crate::support::{id, sas_request, Fixture, HUB_A, HUB_B};

#[tokio::test]
async fn transient_503_is_retried_to_success() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    fx.sim.set_fault_times(HUB_A, Fault::Status(503), 2);
    let done = ensure_device(&hub, &sas_request("r-1", None))
        .await
        .unwrap();
    assert!(done.created);
    assert_eq!(
        fx.sim.request_count(HUB_A),
        3,
        "two failures, then the create"
    );
    assert_eq!(fx.sim.request_count(HUB_B), 0);
}

#[tokio::test]
async fn persistent_503_gives_a_server_error_at_the_deadline() {
    let fx = Fixture::start().await;
    let options = fx
        .options
        .clone()
        .retry_deadline(Duration::from_millis(600));
    let hub = fx.client_with(HUB_A, &options);
    fx.sim.set_fault(HUB_A, Fault::Status(503));
    let started = Instant::now();
    let err = hub.get_device(&id("x")).await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        HubError::Server {
            host,
            status,
            code,
            message,
        } => {
            assert_eq!((host.as_str(), *status), (HUB_A, 503));
            assert_eq!(code.as_deref(), Some("ServiceUnavailable"));
            assert!(message.contains("503"), "{message}");
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert!(fx.sim.request_count(HUB_A) >= 3, "it retried");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    fx.sim.clear_fault(HUB_A);
    assert!(matches!(
        hub.get_device(&id("x")).await,
        Err(HubError::DeviceNotFound { .. })
    ));
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let fx = Fixture::start().await;
    let hub = fx.client(HUB_A);
    fx.sim.set_fault_times(
        HUB_A,
        Fault::Throttle {
            retry_after_secs: 1,
        },
        1,
    );
    let started = Instant::now();
    ensure_device(&hub, &sas_request("r-2", None))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited Retry-After"
    );

    // A Retry-After beyond the deadline is not waited for.
    let short = fx.client_with(
        HUB_A,
        &fx.options
            .clone()
            .retry_deadline(Duration::from_millis(500)),
    );
    fx.sim.set_fault(
        HUB_A,
        Fault::Throttle {
            retry_after_secs: 5,
        },
    );
    let started = Instant::now();
    match short.get_device(&id("r-2")).await {
        Err(HubError::Throttled {
            status: 429,
            retry_after,
            code,
            ..
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(5)));
            assert_eq!(code.as_deref(), Some("ThrottlingException"));
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        fx.sim.request_count(HUB_A),
        3,
        "throttled, create, throttled again without a retry"
    );
}

#[tokio::test]
async fn unreachable_hub_is_a_transport_error_quickly() {
    let fx = Fixture::start().await;
    let options = fx
        .options
        .clone()
        .retry_deadline(Duration::from_millis(500));
    let hub = fx.client_with(HUB_A, &options);
    fx.sim.set_fault(HUB_A, Fault::Unreachable);
    let started = Instant::now();
    match hub.get_device(&id("u-1")).await {
        Err(HubError::Transport {
            host, timed_out, ..
        }) => {
            assert_eq!(host, HUB_A);
            assert!(!timed_out);
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // Hub B on the same listener is unaffected.
    let b = fx.client(HUB_B);
    assert!(matches!(
        b.get_device(&id("u-1")).await,
        Err(HubError::DeviceNotFound { .. })
    ));
}

#[tokio::test]
async fn request_cut_without_reply_is_a_transport_error() {
    // A hub named by IP gets no SNI, so the cut happens per request instead.
    let sim = HubSim::start(HubSimConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        &["127.0.0.1"],
    ))
    .await
    .unwrap();
    let cs = sim
        .connection_string("127.0.0.1")
        .unwrap()
        .replace("HostName=127.0.0.1", &format!("HostName={}", sim.addr()));
    let options = HubClientOptions::default()
        .trust_ca_pem(sim.ca_pem().unwrap())
        .retry_deadline(Duration::from_millis(300));
    let hub = HubClient::from_connection_string(&cs, &options).unwrap();
    assert!(matches!(
        hub.get_device(&id("ip-1")).await,
        Err(HubError::DeviceNotFound { .. })
    ));
    sim.set_fault("127.0.0.1", Fault::Unreachable);
    assert!(matches!(
        hub.get_device(&id("ip-1")).await,
        Err(HubError::Transport { .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn nothing_listening_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let options = HubClientOptions::default()
        .resolve("gone.example", addr)
        .retry_deadline(Duration::from_millis(300));
    let hub = HubClient::from_connection_string(
        "HostName=gone.example;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAA==",
        &options,
    )
    .unwrap();
    let started = Instant::now();
    match hub.get_device(&id("x")).await {
        Err(HubError::Transport {
            host,
            timed_out,
            reason,
        }) => {
            assert_eq!(host, "gone.example");
            assert!(!timed_out, "{reason}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn slow_hub_times_out() {
    let fx = Fixture::start().await;
    let options = HubClientOptions {
        request_timeout: Duration::from_millis(200),
        retry_deadline: Duration::from_millis(100),
        ..fx.options.clone()
    };
    let hub = fx.client_with(HUB_A, &options);
    fx.sim
        .set_fault(HUB_A, Fault::Delay(Duration::from_secs(2)));
    match hub.get_device(&id("slow")).await {
        Err(HubError::Transport { timed_out, .. }) => assert!(timed_out),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn untrusted_certificate_is_a_transport_error() {
    let fx = Fixture::start().await;
    let options = HubClientOptions::default()
        .resolve(HUB_A, fx.sim.addr())
        .retry_deadline(Duration::from_millis(100));
    let hub = fx.client_with(HUB_A, &options);
    match hub.get_device(&id("x")).await {
        Err(HubError::Transport { reason, .. }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("expected Transport, got {other:?}"),
    }
}
