//! What certificate issuance at registration costs (issue #17): the same
//! symmetric-key swarm as `e2e_register` (dps in-process on SQLite, four
//! hubs on the emulator, a new TLS connection per device, register + poll
//! at once), without a CSR, then with an ECDSA P-256 and an RSA-2048 CSR per
//! device, and registrations/s of each beside the plain run.
//!
//! The devices' keys and CSRs are made with the plan, before the clock
//! starts (RSA-2048 key generation alone is tens of milliseconds per
//! device): the rows measure the service — CSR verification, signing with
//! the tenant CA (ECDSA P-256), recording the certificate with the
//! registration, the hub identity with a thumbprint — and the larger
//! register body and answer.
//!
//! Run: `cargo bench -p dps-benches --bench issuance`
//! * `DPS_BENCH_DEVICES` devices per phase (default 2000)
//! * `DPS_BENCH_CONCURRENCY` devices in flight (default 48)
//! * `DPS_BENCH_STORAGE` overrides the storage URL (e.g. `memory://`)

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use dps_benches::env_or;
use dps_benches::system::{self, Hubs, OWNER_POLICY};
use dps_benches::table::{print_header, Meter, Row};
use dps_client::service::ServiceClient;
use dps_client::swarm::{
    self, DeviceKind, Mix, PlanOptions, SwarmConfig, SwarmPlan, SwarmProgress,
};
use dps_client::{KeyType, TlsTrust};
use dps_model::{IdScope, IndividualEnrollment};
use dps_service::server::RunningServer;
use serde_json::json;

const HUBS: [&str; 4] = [
    "hub-0.bench.test",
    "hub-1.bench.test",
    "hub-2.bench.test",
    "hub-3.bench.test",
];

/// The credential policy the issuing phases' enrollments name.
const POLICY: &str = "bench-devices";

struct System {
    server: RunningServer,
    _hubs: Hubs,
    scope: IdScope,
    _dir: tempfile::TempDir,
}

/// dps with a tenant holding a generated CA and a policy accepting both
/// key types, created through the service API as an administrator would.
async fn start_system() -> Result<System> {
    let dir = tempfile::tempdir()?;
    let hubs = Hubs::start(dir.path(), &HUBS).await?;
    let mut config = system::server_config(&dir.path().join("data"), Some(&hubs));
    if let Ok(url) = std::env::var("DPS_BENCH_STORAGE") {
        config.storage_url = Some(url);
    }
    let server = dps_service::server::start(config).await?;
    let tenant = system::tenant("bench-issuance", "127.0.0.2", Some(&hubs));
    let connection = tenant
        .connection_string(OWNER_POLICY)
        .context("owner policy")?;
    let tenant = server.store().create_tenant(tenant).await?;
    let trust = TlsTrust::new(false, &[server.trust_pem()])?;
    let service_addr = server.service_addr().context("service listener")?;
    let service = ServiceClient::from_connection_string(
        &connection,
        Some(&service_addr.to_string()),
        &trust,
    )?;
    service
        .create_certificate_authority("bench-ca", "Bench issuing CA")
        .await?;
    service
        .put_credential_policy(
            POLICY,
            &json!({"certificateAuthorityName": "bench-ca", "validityPeriodInDays": 30,
                "acceptedKeyTypes": ["ecdsaP256", "rsa2048"]}),
        )
        .await?;
    Ok(System {
        server,
        _hubs: hubs,
        scope: tenant.id_scope,
        _dir: dir,
    })
}

/// `count` symmetric-key devices, each with a CSR of `key_type` if given.
fn plan(prefix: &str, count: u64, key_type: Option<KeyType>) -> Result<SwarmPlan> {
    let mut options = PlanOptions::new(prefix, count, Mix::only(DeviceKind::Symmetric));
    if key_type.is_some() {
        options.issue_certificates = key_type;
        options.credential_policy = Some(POLICY.to_owned());
    }
    Ok(SwarmPlan::prepare(options)?)
}

async fn phase(system: &System, name: &str, plan: SwarmPlan, concurrency: usize) -> Result<Row> {
    let enrollments = plan
        .individual_enrollments()
        .iter()
        .map(|e| IndividualEnrollment::from_json(e.to_string().as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    for chunk in enrollments.chunks(10_000) {
        system
            .server
            .store()
            .import_enrollments(&system.scope, chunk.to_vec())
            .await?;
    }
    let mut config = SwarmConfig::new(
        system
            .server
            .device_addr()
            .context("device HTTPS listener")?
            .to_string(),
        system.scope.to_string(),
        TlsTrust::new(false, &[system.server.trust_pem()])?,
    );
    config.concurrency = concurrency;
    config.poll_interval = Some(Duration::ZERO);
    config.timeout = Duration::from_secs(60);
    let meter = Meter::start();
    let report = swarm::run(&config, Arc::new(plan), Arc::new(SwarmProgress::default())).await;
    let row = Row::from_swarm(name, &report, concurrency, &meter);
    row.print();
    Ok(row)
}

fn main() -> Result<()> {
    let devices: u64 = env_or("DPS_BENCH_DEVICES", 2000);
    let concurrency: usize = env_or("DPS_BENCH_CONCURRENCY", 48);
    dps_benches::runtime()?.block_on(async move {
        let system = start_system().await?;
        println!(
            "dps on {} (HTTPS), SQLite, 4 hubs on the in-process emulator; {} cores; {devices} devices per phase; tenant CA ECDSA P-256",
            system.server.device_addr().context("device HTTPS listener")?,
            dps_benches::cores()
        );
        eprintln!("preparing the devices' keys and CSRs (not timed)…");
        let plans = [
            ("warm-up, P-256 CSR", plan("warm", 300, Some(KeyType::EcdsaP256))?),
            ("symmetric key, no CSR", plan("plain", devices, None)?),
            ("symmetric key, ECDSA P-256 CSR", plan("p256", devices, Some(KeyType::EcdsaP256))?),
            ("symmetric key, RSA-2048 CSR", plan("rsa", devices, Some(KeyType::Rsa2048))?),
        ];
        print_header("devices");
        let mut rows = Vec::new();
        for (name, plan) in plans {
            rows.push(phase(&system, name, plan, concurrency).await?);
        }
        let plain = rows[1].rate.max(1e-9);
        println!();
        for row in &rows[2..] {
            println!(
                "{:<48} {:>6.0}/s = {:.2} x without a CSR ({:.0}/s)",
                row.name, row.rate, row.rate / plain, plain
            );
        }
        system.server.shutdown().await;
        Ok(())
    })
}
