//! The system under test: the real `dps-server` binary as a child process
//! (so that SIGKILL is a real crash), a hub emulator in the test process
//! (it is not what is being crashed), and a tenant with symmetric-key
//! enrollments seeded into the store before the first start.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, unix_now, SymmetricKey};
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{EnrollmentGroup, IdScope, IndividualEnrollment, LinkedHub, Precondition, Tenant};
use dps_service::ServiceConfig;
use dps_storage::Store;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const HUBS: [&str; 2] = ["hub-1.crash.test", "hub-2.crash.test"];
const OWNER_POLICY: &str = "provisioningserviceowner";
const SERVICE_API_VERSION: &str = "2021-10-01";

/// A device with an individual symmetric-key enrollment.
#[derive(Clone, Debug)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) key: String,
    /// Sends a CSR: its enrollment names [`ISSUING_POLICY`] (every fourth device).
    pub(crate) issuing: bool,
    /// Registers twice in a row, the second time a re-registration under
    /// load (every fourth device that sends no CSR).
    #[allow(dead_code)] // the crash test's, not the adversarial test's
    pub(crate) reregisters: bool,
}

/// The credential policy issuing devices' enrollments name (created through
/// the service API once the server runs: its CA key is sealed by the server).
pub(crate) const ISSUING_POLICY: &str = "crash-policy";

/// The backend the server runs on, already seeded.
pub(crate) struct Backend {
    /// What the server is told (`sqlite://…` or `postgres://…`).
    pub(crate) storage_url: String,
    /// The test's own connection, for seeding (closed before the server starts).
    pub(crate) store: Arc<dyn Store>,
}

/// What a test adds to the common system.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    /// Serve MQTT (on its own port next to the device listener).
    pub(crate) mqtt: bool,
    /// An X.509 enrollment group with this CA (PEM) as its signing certificate.
    pub(crate) x509_group_ca_pem: Option<String>,
    /// Lift the per-tenant service API limit: the crash workload writes
    /// enrollments as fast as the server takes them, beyond the default
    /// 200/s (burst 1,000), and a 429 there is not what it tests.
    pub(crate) unthrottled_service_api: bool,
}

/// The emulator, the tenant, the devices and the (re)startable server.
pub(crate) struct CrashSystem {
    /// Kept running: the server creates device identities on it.
    _hubs: RunningHubSim,
    pub(crate) tenant: Tenant,
    devices: Vec<Device>,
    /// Devices taken so far, across cycles (each registers at most once).
    pub(crate) next_device: Arc<AtomicUsize>,
    pub(crate) device_addr: SocketAddr,
    pub(crate) service_addr: SocketAddr,
    /// The MQTT listener, when [`Extras::mqtt`] asked for one.
    #[allow(dead_code)] // the adversarial test's, which shares this file
    pub(crate) mqtt_addr: Option<SocketAddr>,
    /// The admin listener: `/readyz` says when the server serves.
    admin_addr: SocketAddr,
    pub(crate) started: DateTime<Utc>,
    dir: tempfile::TempDir,
    config_file: PathBuf,
    data_dir: PathBuf,
    ca_pem: Option<String>,
    child: Option<Child>,
    http: Option<reqwest::Client>,
}

impl CrashSystem {
    /// Start the emulator, seed the tenant and `device_count` enrollments,
    /// and write the server's configuration (listeners on `device_ip` and the
    /// next address, ports chosen once and kept across restarts).
    pub(crate) async fn prepare(
        backend: Backend,
        device_ip: Ipv4Addr,
        dir: tempfile::TempDir,
        device_count: usize,
    ) -> Result<CrashSystem> {
        let extras = Extras {
            unthrottled_service_api: true,
            ..Extras::default()
        };
        Self::prepare_with(backend, device_ip, dir, device_count, extras).await
    }

    /// [`CrashSystem::prepare`], with what `extras` adds.
    pub(crate) async fn prepare_with(
        backend: Backend,
        device_ip: Ipv4Addr,
        dir: tempfile::TempDir,
        device_count: usize,
        extras: Extras,
    ) -> Result<CrashSystem> {
        let started = Utc::now();
        let hubs = HubSim::start(HubSimConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &HUBS,
        ))
        .await
        .context("starting the hub emulator")?;
        let hub_ca = dir.path().join("hub-ca.pem");
        std::fs::write(&hub_ca, hubs.ca_pem().context("the emulator's CA")?)?;

        let [a, b, c, d] = device_ip.octets();
        let service_ip = Ipv4Addr::new(a, b, c, d + 1);
        let device_addr = free_port(device_ip)?;
        let service_addr = free_port(service_ip)?;
        let admin_addr = free_port(device_ip)?;
        let mqtt_addr = if extras.mqtt {
            Some(free_port(device_ip)?)
        } else {
            None
        };

        let tenant = seed_tenant(&backend, &hubs, &service_ip.to_string()).await?;
        let devices: Vec<Device> = (0..device_count)
            .map(|n| Device {
                id: format!("crash-device-{n:05}"),
                key: generate_key(),
                issuing: n % 4 == 0,
                reregisters: n % 4 == 1,
            })
            .collect();
        let enrollments = devices
            .iter()
            .map(|device| {
                let mut body = json!({"registrationId": device.id, "attestation": {
                    "type": "symmetricKey", "symmetricKey": {"primaryKey": device.key}}});
                if device.issuing {
                    body["credentialPolicyName"] = json!(ISSUING_POLICY);
                }
                IndividualEnrollment::from_json(body.to_string().as_bytes())
            })
            .collect::<Result<Vec<_>, _>>()?;
        backend
            .store
            .import_enrollments(&tenant.id_scope, enrollments)
            .await?;
        if let Some(ca_pem) = &extras.x509_group_ca_pem {
            let body = json!({"enrollmentGroupId": "x509-group", "attestation": {"type": "x509",
                "x509": {"signingCertificates": {"primary": {"certificate": ca_pem}}}}});
            let group = EnrollmentGroup::from_json(body.to_string().as_bytes())?;
            backend
                .store
                .put_enrollment_group(&tenant.id_scope, group, Precondition::None)
                .await?;
        }
        drop(backend.store);

        let data_dir = dir.path().join("data");
        let mut config = ServiceConfig {
            data_dir: data_dir.clone(),
            storage_url: Some(backend.storage_url),
            operator_key: Some(generate_key()),
            ..ServiceConfig::default()
        };
        config.device.listen = device_addr;
        config.device.mqtt.enabled = extras.mqtt;
        config.device.mqtt.listen = mqtt_addr;
        config.service.listen = service_addr;
        if extras.unthrottled_service_api {
            let unlimited = dps_service::config::ThrottlingConfig::unlimited();
            config.throttling.service_requests_per_second = unlimited.service_requests_per_second;
            config.throttling.service_burst = unlimited.service_burst;
        }
        // The default admin port is fixed: tests run side by side.
        config.admin.listen = Some(admin_addr);
        config.tls.dev_names = vec![device_ip.to_string(), service_ip.to_string()];
        config.hubs.trusted_ca_files = vec![hub_ca];
        for hub in HUBS {
            config.hubs.resolve.insert(hub.to_owned(), hubs.addr());
        }
        let config_file = dir.path().join("dps.toml");
        std::fs::write(&config_file, toml::to_string(&config)?)?;
        Ok(CrashSystem {
            _hubs: hubs,
            tenant,
            devices,
            next_device: Arc::new(AtomicUsize::new(0)),
            device_addr,
            service_addr,
            mqtt_addr,
            admin_addr,
            started,
            dir,
            config_file,
            data_dir,
            ca_pem: None,
            child: None,
            http: None,
        })
    }

    pub(crate) fn scope(&self) -> &IdScope {
        &self.tenant.id_scope
    }

    pub(crate) fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The development CA of the server (generated at its first start).
    pub(crate) fn ca_pem(&self) -> &str {
        self.ca_pem.as_deref().expect("the server has started once")
    }

    /// The tenant's service connection string.
    pub(crate) fn connection_string(&self) -> String {
        self.tenant
            .connection_string(OWNER_POLICY)
            .expect("the owner policy exists")
    }

    /// Spawn `dps-server` and wait until it is ready: `/readyz` answers 200
    /// once every listener serves (the ports are bound, and accept TCP
    /// connections into their backlog, before the store is even opened).
    pub(crate) async fn start_server(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_dps-server"))
            .arg("--config")
            .arg(&self.config_file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawning dps-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let readiness = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("dps-server exited with {status}: {}", self.log_tail());
            }
            let ready = readiness
                .get(format!("http://{}/readyz", self.admin_addr))
                .send()
                .await
                .is_ok_and(|answer| answer.status() == 200);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("dps-server did not listen within 60 s: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.ca_pem.is_none() {
            let pem = std::fs::read_to_string(self.data_dir.join("tls").join("ca.pem"))
                .context("the server's development CA")?;
            let http = reqwest::Client::builder()
                .use_rustls_tls()
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?)
                .timeout(Duration::from_secs(20))
                .build()?;
            self.ca_pem = Some(pem);
            self.http = Some(http);
        }
        Ok(())
    }

    /// SIGKILL the server and reap it.
    pub(crate) async fn kill_server(&mut self) -> Result<()> {
        let mut child = self.child.take().context("no server running")?;
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// `GET` a service API path; the status and the JSON body.
    pub(crate) async fn service_get(&self, path: &str) -> Result<(u16, Value)> {
        self.service_send(reqwest::Method::GET, path, None).await
    }

    /// A service API call with the owner policy's token.
    pub(crate) async fn service_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let http = self.http.as_ref().context("the server has not started")?;
        let policy = self
            .tenant
            .access_policy(OWNER_POLICY)
            .context("owner policy")?;
        let token = create_token(
            &self.tenant.service_host_name,
            &SymmetricKey::from_base64(&policy.primary_key)?,
            unix_now() + 3600,
            Some(OWNER_POLICY),
        );
        let mut request = http
            .request(
                method,
                format!(
                    "https://{}/{path}?api-version={SERVICE_API_VERSION}",
                    self.service_addr
                ),
            )
            .header("authorization", token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Fails when the server process has exited.
    #[allow(dead_code)] // the adversarial test's, which shares this file
    pub(crate) fn assert_running(&mut self) -> Result<()> {
        let child = self.child.as_mut().context("no server started")?;
        if let Some(status) = child.try_wait()? {
            bail!("dps-server exited with {status}: {}", self.log_tail());
        }
        Ok(())
    }

    /// Everything the server logged so far.
    #[allow(dead_code)] // the adversarial test's, which shares this file
    pub(crate) fn log(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("server.log"))?)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A port free on `ip` now, kept for every restart (each crash test has
/// its own loopback address, so no other test takes it in between).
fn free_port(ip: Ipv4Addr) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("binding {ip} for a free port"))?;
    Ok(listener.local_addr()?)
}

async fn seed_tenant(
    backend: &Backend,
    hubs: &RunningHubSim,
    service_host: &str,
) -> Result<Tenant> {
    let mut tenant = Tenant::new(
        format!("crash-{}", service_host.replace('.', "-")),
        service_host,
    )?;
    tenant.linked_hubs = HUBS
        .iter()
        .map(|h| LinkedHub::new(*h, hubs.connection_string(h).expect("hub exists")))
        .collect();
    Ok(backend.store.create_tenant(tenant).await?)
}
