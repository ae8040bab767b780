//! A whole dps system for one test: the hub emulator with named hubs, and a
//! dps server on its own loopback block `127.0.N.x` (device endpoint on
//! `127.0.N.1:443`, service endpoint on `127.0.N.2:443`) — the official SDKs
//! always dial port 443, so parallel tests get their own addresses instead of
//! ports. One tenant is created with every hub linked.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_hub::{HubClient, HubClientOptions, IotHub};
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{IdScope, LinkedHub, Tenant};
use dps_service::server::RunningServer;
use dps_service::ServiceConfig;

static NEXT_BLOCK: AtomicU8 = AtomicU8::new(0);

/// The next loopback block to try. Blocks start at a process-dependent
/// offset, so test binaries running at the same time (parallel CI jobs, a
/// developer's second run) rarely collide; a block whose addresses are taken
/// is skipped.
fn next_block() -> u8 {
    let offset = (std::process::id() % 230) as u8;
    let n = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
    10 + offset.wrapping_add(n) % 240
}

/// A running system.
pub struct TestSystem {
    /// The dps server.
    pub server: RunningServer,
    /// The hub emulator.
    pub hubs: RunningHubSim,
    /// The device endpoint's host (an IP in the certificate).
    pub device_host: String,
    /// The service endpoint's host.
    pub service_host: String,
    /// The tenant every hub is linked to.
    pub tenant: Tenant,
    /// PEM file of the CA that signed the server certificate.
    pub ca_file: PathBuf,
    /// Scratch directory of this system.
    pub dir: tempfile::TempDir,
    /// The server's configuration (to restart it on the same data).
    pub config: ServiceConfig,
}

/// Options for [`TestSystem::start`].
pub struct SystemOptions<'a> {
    /// Host names of the hubs to emulate and link.
    pub hubs: &'a [&'a str],
    /// Extra configuration edits.
    pub configure: &'a dyn Fn(&mut ServiceConfig),
}

impl Default for SystemOptions<'_> {
    fn default() -> Self {
        SystemOptions {
            hubs: &["hub-a.test"],
            configure: &|_| {},
        }
    }
}

impl TestSystem {
    /// Start the emulator and the server, and create the tenant.
    pub async fn start(options: SystemOptions<'_>) -> Result<TestSystem> {
        Self::start_throttled(options, None).await
    }

    /// [`TestSystem::start`] with every emulated hub throttled like an IoT
    /// hub (`None`: no throttling).
    pub async fn start_throttled(
        options: SystemOptions<'_>,
        hub_throttling: Option<dps_hub_sim::Throttling>,
    ) -> Result<TestSystem> {
        crate::ports::require_port_443()?;
        let dir = tempfile::tempdir()?;
        let specs = options.hubs.iter().map(|h| match &hub_throttling {
            Some(t) => dps_hub_sim::HubSpec::new(*h).throttled(t.clone()),
            None => dps_hub_sim::HubSpec::new(*h),
        });
        let hubs = HubSim::start(HubSimConfig {
            hubs: specs.collect(),
            ..HubSimConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), &[])
        })
        .await
        .context("starting the hub emulator")?;
        let hub_ca = dir.path().join("hub-ca.pem");
        std::fs::write(&hub_ca, hubs.ca_pem().context("the emulator's CA")?)?;

        let mut attempts = 0;
        let (block, device_ip, service_ip, server, config) = loop {
            let block = next_block();
            let device_ip = Ipv4Addr::new(127, 0, block, 1);
            let service_ip = Ipv4Addr::new(127, 0, block, 2);
            let mut config = ServiceConfig {
                data_dir: dir.path().join(format!("data-{block}")),
                ..ServiceConfig::default()
            };
            config.device.listen = SocketAddr::from((device_ip, 443));
            // MQTT over TLS where the SDKs dial it; MQTT over WebSocket shares 443.
            config.device.mqtt.listen = Some(SocketAddr::from((device_ip, 8883)));
            config.service.listen = SocketAddr::from((service_ip, 443));
            // The default admin port is fixed: tests run side by side.
            config.admin.listen = Some(SocketAddr::from((device_ip, 0)));
            config.tls.dev_names = vec![
                device_ip.to_string(),
                service_ip.to_string(),
                "localhost".to_owned(),
            ];
            config.hubs.trusted_ca_files = vec![hub_ca.clone()];
            for hub in options.hubs {
                config.hubs.resolve.insert((*hub).to_owned(), hubs.addr());
            }
            config.operator_key = Some(generate_key());
            (options.configure)(&mut config);
            match dps_service::server::start(config.clone()).await {
                Ok(server) => break (block, device_ip, service_ip, server, config),
                Err(dps_service::ServiceError::Bind { .. }) if attempts < 40 => attempts += 1,
                Err(err) => return Err(err).context("starting dps"),
            }
        };
        let ca_file = dir.path().join("dps-ca.pem");
        std::fs::write(&ca_file, server.trust_pem())?;

        let mut tenant = Tenant::new(format!("test-{block}"), service_ip.to_string())?;
        tenant.linked_hubs = options
            .hubs
            .iter()
            .map(|h| LinkedHub::new(*h, hubs.connection_string(h).expect("hub exists")))
            .collect();
        let tenant = server.store().create_tenant(tenant).await?;
        Ok(TestSystem {
            server,
            hubs,
            device_host: device_ip.to_string(),
            service_host: service_ip.to_string(),
            tenant,
            ca_file,
            dir,
            config,
        })
    }

    /// Stop the server and start it again on the same configuration and
    /// data directory (the hub emulator keeps running).
    pub async fn restart(self) -> Result<TestSystem> {
        let TestSystem {
            server,
            hubs,
            device_host,
            service_host,
            tenant,
            ca_file,
            dir,
            config,
        } = self;
        server.shutdown().await;
        let server = dps_service::server::start(config.clone())
            .await
            .context("restarting dps")?;
        Ok(TestSystem {
            server,
            hubs,
            device_host,
            service_host,
            tenant,
            ca_file,
            dir,
            config,
        })
    }

    /// The tenant's ID scope.
    pub fn scope(&self) -> &IdScope {
        &self.tenant.id_scope
    }

    /// Environment for a Node scenario: trust the server's CA.
    pub fn node_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "NODE_EXTRA_CA_CERTS".to_owned(),
                self.ca_file.display().to_string(),
            ),
            ("DPS_HOST".to_owned(), self.device_host.clone()),
            ("ID_SCOPE".to_owned(), self.scope().to_string()),
        ]
    }

    /// Add `certificate_pem` to the tenant as a verified CA named `name`
    /// (before the first device request: the tenant view is cached).
    pub async fn add_verified_ca(&self, name: &str, certificate_pem: String) -> Result<()> {
        let store = self.server.store();
        let mut tenant = store
            .tenant(self.scope())
            .await?
            .context("the test tenant")?;
        let now = chrono::Utc::now();
        tenant.ca_certificates.push(dps_model::CaCertificate {
            name: name.to_owned(),
            certificate: certificate_pem,
            info: None,
            is_verified: true,
            verification_code: None,
            etag: dps_model::ETag::generate(),
            created: now,
            updated: now,
        });
        store
            .replace_tenant(tenant, dps_model::Precondition::None)
            .await?;
        Ok(())
    }

    /// Set one twin tag on a hub, as a back-end application would.
    pub async fn set_twin_tag(
        &self,
        hub: &str,
        device_id: &str,
        tag: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        let options = HubClientOptions::default()
            .trust_ca_pem(self.hubs.ca_pem().context("the emulator's CA")?.to_owned())
            .resolve(hub.to_owned(), self.hubs.addr());
        let client = HubClient::from_connection_string(
            &self.hubs.connection_string(hub).context("unknown hub")?,
            &options,
        )?;
        let patch = dps_hub::Twin {
            tags: Some(serde_json::Map::from_iter([(tag.to_owned(), value)])),
            ..dps_hub::Twin::default()
        };
        client
            .patch_twin(
                &dps_model::DeviceId::new(device_id)?,
                &patch,
                dps_hub::IfMatch::Any,
            )
            .await?;
        Ok(())
    }

    /// Stop everything.
    pub async fn stop(self) {
        self.server.shutdown().await;
        self.hubs.shutdown().await;
    }
}
