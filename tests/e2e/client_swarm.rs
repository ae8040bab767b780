//! Swarms of `dps-client` devices against the real server: thousands of
//! symmetric-key devices spread evenly over four hubs, and a mixed swarm
//! whose enrollments are created through the service API routes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use axum::Json;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{Audience, ExpiryPolicy, SasToken, SymmetricKey};
use dps_client::service::ServiceClient;
use dps_client::swarm::{self, DeviceKind, PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress};
use dps_client::TlsTrust;
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_model::{EnrollmentGroup, IdScope, IndividualEnrollment, Precondition};
use serde_json::Value;

const HUBS: [&str; 4] = ["hub-0.test", "hub-1.test", "hub-2.test", "hub-3.test"];

fn swarm_config(system: &TestSystem, concurrency: usize) -> Result<SwarmConfig> {
    let mut config = SwarmConfig::new(
        system.device_host.clone(),
        system.scope().to_string(),
        TlsTrust::new(false, &[system.server.trust_pem()])?,
    );
    config.concurrency = concurrency;
    config.poll_interval = Some(Duration::ZERO);
    config.timeout = Duration::from_secs(60);
    Ok(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_devices_spread_evenly_over_four_hubs() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &HUBS,
        ..SystemOptions::default()
    })
    .await?;
    let count = 2_000u64;
    let plan = SwarmPlan::prepare(PlanOptions::new(
        "even",
        count,
        swarm::Mix::only(DeviceKind::Symmetric),
    ))?;
    let enrollments = plan
        .individual_enrollments()
        .iter()
        .map(|e| IndividualEnrollment::from_json(e.to_string().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    system
        .server
        .store()
        .import_enrollments(system.scope(), enrollments)
        .await?;

    let progress = Arc::new(SwarmProgress::default());
    let report = swarm::run(
        &swarm_config(&system, 16)?,
        Arc::new(plan),
        progress.clone(),
    )
    .await;
    eprintln!("{report}");
    assert_eq!(report.failed(), 0, "{:?}", report.sample_errors);
    assert_eq!(report.succeeded, count);
    assert_eq!(
        progress.done.load(std::sync::atomic::Ordering::Relaxed),
        count
    );
    // Each hub's share within 4 percentage points of 25 % (about four
    // standard deviations for 2,000 draws over four hubs).
    assert_eq!(report.per_hub.len(), HUBS.len(), "{:?}", report.per_hub);
    for (hub, n) in &report.per_hub {
        let share = *n as f64 / count as f64;
        assert!((share - 0.25).abs() <= 0.04, "{hub}: {n} of {count}");
        assert_eq!(system.hubs.device_count(hub) as u64, *n, "{hub}");
    }
    assert!(report.latency_ms(0.99) > 0.0);
    system.stop().await;
    Ok(())
}

/// The service API's enrollment routes, as a stand-in while dps's own
/// service API is built: checks the SAS token exactly as the service does
/// and writes through to the test system's store.
#[derive(Clone)]
struct FakeServiceApi {
    store: Arc<dyn dps_storage::Store>,
    scope: IdScope,
    audience: String,
    key: SymmetricKey,
}

impl FakeServiceApi {
    fn authorize(&self, headers: &HeaderMap) -> Result<(), StatusCode> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let token = SasToken::parse(token).map_err(|_| StatusCode::UNAUTHORIZED)?;
        token
            .verify(
                &Audience(&self.audience),
                &[&self.key],
                &ExpiryPolicy::default(),
            )
            .map(|_| ())
            .map_err(|_| StatusCode::UNAUTHORIZED)
    }
}

async fn put_enrollment(
    State(api): State<FakeServiceApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    api.authorize(&headers)?;
    let enrollment = IndividualEnrollment::from_json(body.to_string().as_bytes())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    if enrollment.registration_id.as_str() != id {
        return Err(StatusCode::BAD_REQUEST);
    }
    api.store
        .put_enrollment(&api.scope, enrollment, Precondition::None)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(body))
}

async fn put_group(
    State(api): State<FakeServiceApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    api.authorize(&headers)?;
    let group = EnrollmentGroup::from_json(body.to_string().as_bytes())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    if group.enrollment_group_id.as_str() != id {
        return Err(StatusCode::BAD_REQUEST);
    }
    api.store
        .put_enrollment_group(&api.scope, group, Precondition::None)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_swarm_with_enrollments_created_through_the_service_routes() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        hubs: &HUBS[..2],
        ..SystemOptions::default()
    })
    .await?;
    let policy_key = generate_key();
    let api = FakeServiceApi {
        store: system.server.store().clone(),
        scope: system.scope().clone(),
        audience: "svc.test".to_owned(),
        key: SymmetricKey::from_base64(&policy_key)?,
    };
    let router = axum::Router::new()
        .route("/enrollments/{id}", put(put_enrollment))
        .route("/enrollmentGroups/{id}", put(put_group))
        .with_state(api);
    let identity = dps_service::tls::ServerIdentity::generate_in_memory(&["127.0.0.1".to_owned()])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(dps_service::listener::serve_tls(
        listener,
        identity.server_config(&[b"http/1.1"])?,
        router,
        stopped,
    ));

    let plan = SwarmPlan::prepare(PlanOptions::new(
        "mixed",
        40,
        "symmetric=2,group=1,x509=1".parse()?,
    ))?;
    let trust = TlsTrust::new(false, &[identity.trust_pem.as_str()])?;
    // A wrong policy key is refused before anything is written.
    let wrong = ServiceClient::from_connection_string(
        &format!(
            "HostName=svc.test;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={}",
            generate_key()
        ),
        Some(&service_addr.to_string()),
        &trust,
    )?;
    let refused = swarm::create_enrollments(Arc::new(wrong), &plan, 4).await;
    assert!(
        matches!(
            refused,
            Err(dps_client::ClientError::Authentication { status: 401, .. })
        ),
        "{refused:?}"
    );
    let service = ServiceClient::from_connection_string(
        &format!("HostName=svc.test;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={policy_key}"),
        Some(&service_addr.to_string()),
        &trust,
    )?;
    let written = swarm::create_enrollments(Arc::new(service), &plan, 4).await?;
    assert_eq!(written, 20 + 2, "20 individual enrollments and two groups");

    let report = swarm::run(
        &swarm_config(&system, 8)?,
        Arc::new(plan),
        Arc::new(SwarmProgress::default()),
    )
    .await;
    eprintln!("{report}");
    assert_eq!(report.failed(), 0, "{:?}", report.sample_errors);
    assert_eq!(report.per_kind[&DeviceKind::Symmetric], 20);
    assert_eq!(report.per_kind[&DeviceKind::Group], 10);
    assert_eq!(report.per_kind[&DeviceKind::X509], 10);
    let x509_device = HUBS[..2]
        .iter()
        .find_map(|hub| system.hubs.device(hub, "mixed-x509-0000003"))
        .expect("the X.509 device on a hub");
    assert!(x509_device
        .authentication
        .and_then(|a| a.x509_thumbprint)
        .is_some());

    let _ = stop.send(true);
    let _ = server.await;
    system.stop().await;
    Ok(())
}
