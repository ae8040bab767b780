//! Building the whole service from its configuration and running both
//! endpoints: `start` returns once the listeners are bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dps_allocation::latency::{Layered, ProbeTarget};
use dps_allocation::{
    Allocator, AllocatorConfig, LatencySource, LiveLatency, LiveProber, WebhookConfig,
};
use dps_attestation::sas::ExpiryPolicy;
use dps_hub::{HubClientOptions, HubDirectory};
use dps_storage::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ServiceConfig;
use crate::listener::serve_tls;
use crate::pipeline::{Pipeline, TenantCache};
use crate::tls::ServerIdentity;
use crate::{device, service_api, storage_url, ServiceError};

/// How long device operations are kept for polls (at least the promised 24 h).
const OPERATION_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// A running server.
pub struct RunningServer {
    /// Where the device endpoint listens.
    pub device_addr: SocketAddr,
    /// Where the service operations endpoint listens.
    pub service_addr: SocketAddr,
    /// Where MQTT over TLS listens (`None` when MQTT is disabled).
    pub mqtt_addr: Option<SocketAddr>,
    /// PEM of the certificate clients should trust.
    pub trust_pem: String,
    /// The operator credential for tenant management.
    pub operator_key: String,
    /// The store (tests inspect it).
    pub store: Arc<dyn Store>,
    /// The tenants declared in the configuration, as stored.
    pub tenants: Vec<dps_model::Tenant>,
    /// The live hub round trips the lowest-latency policy reads (`None`
    /// when `allocation.geo_latency.probe.enabled` is off).
    pub live_latency: Option<Arc<LiveLatency>>,
    /// Server-side time of device instructions (register, poll), every
    /// transport, TLS handshakes excluded.
    pub device_latency: Arc<crate::pipeline::PipelineLatency>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stop accepting, let open requests finish (up to 5 s), and return.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
        }
    }
}

/// Open the store, prepare TLS, hubs and allocation, bind both listeners and
/// start serving.
pub async fn start(config: ServiceConfig) -> Result<RunningServer, ServiceError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| ServiceError::Io {
        path: config.data_dir.clone(),
        reason: e.to_string(),
    })?;
    let store = storage_url::open(&config.storage_url()).await?;
    let declared_tenants = crate::bootstrap::ensure_tenants(store.as_ref(), &config).await?;
    let identity = ServerIdentity::load_or_generate(&config.tls, &config.data_dir)?;
    let tls = identity.server_config(&[b"h2", b"http/1.1"])?;

    let mut hub_options = HubClientOptions::default().retry_deadline(config.hub_timeout());
    for path in &config.hubs.trusted_ca_files {
        hub_options = hub_options.trust_ca_pem(read_pem(path)?);
    }
    for (host, addr) in &config.hubs.resolve {
        hub_options = hub_options.resolve(host.clone(), *addr);
    }
    let hubs = Arc::new(
        HubDirectory::new(hub_options).map_err(|e| ServiceError::Config {
            reason: format!("hub client: {e}"),
        })?,
    );
    let webhook = WebhookConfig {
        timeout: Duration::from_millis(config.allocation.webhook_timeout_ms),
        extra_root_certificates_pem: config
            .allocation
            .webhook_trusted_ca_files
            .iter()
            .map(|p| read_pem(p).map(String::into_bytes))
            .collect::<Result<_, _>>()?,
        ..WebhookConfig::default()
    };
    let geo = &config.allocation.geo_latency;
    let live_latency = geo.prober().map(|_| Arc::new(LiveLatency::new()));
    let latency: Arc<dyn LatencySource> = match &live_latency {
        Some(live) => Arc::new(Layered {
            first: geo.table()?,
            then: live.clone(),
        }),
        None => Arc::new(geo.table()?),
    };
    let allocator = Arc::new(
        Allocator::new(AllocatorConfig {
            webhook,
            latency,
            geo_tie_tolerance: geo.tie_tolerance(),
        })
        .map_err(|e| ServiceError::Config {
            reason: format!("allocation: {e}"),
        })?,
    );
    let tenants = Arc::new(TenantCache::default());
    let pipeline = Arc::new(Pipeline::new(
        store.clone(),
        hubs,
        allocator,
        tenants.clone(),
        ExpiryPolicy::default(),
        &config.throttling,
    ));
    let device_latency = pipeline.latency();
    let operator_key = match &config.operator_key {
        Some(key) => key.clone(),
        None => stored_operator_key(&config.data_dir)?,
    };

    let (shutdown, receiver) = watch::channel(false);
    let mut device_router = device::router(
        pipeline.clone(),
        config.device.retry_after_seconds,
        config.device.public_host.clone(),
    );
    let mqtt = &config.device.mqtt;
    let mqtt_endpoint = mqtt.enabled.then(|| {
        device::mqtt::MqttEndpoint::new(
            pipeline,
            mqtt,
            config.device.retry_after_seconds,
            receiver.clone(),
        )
    });
    if let (Some(endpoint), true) = (&mqtt_endpoint, mqtt.websocket) {
        device_router = device::mqtt::with_websocket(device_router, endpoint.clone());
    }
    let service_router = service_api::router(service_api::ServiceApi::new(
        store.clone(),
        tenants,
        operator_key.clone(),
        config.service.host_suffix.clone(),
    ));

    let device_listener = bind(config.device.listen).await?;
    let service_listener = bind(config.service.listen).await?;
    let device_addr = local_addr(&device_listener, config.device.listen)?;
    let service_addr = local_addr(&service_listener, config.service.listen)?;
    let mqtt_listener = match &mqtt_endpoint {
        Some(_) => Some(bind(mqtt.listen_addr(config.device.listen)).await?),
        None => None,
    };
    let mqtt_addr = match &mqtt_listener {
        Some(listener) => Some(local_addr(
            listener,
            mqtt.listen_addr(config.device.listen),
        )?),
        None => None,
    };
    let mut tasks = vec![
        tokio::spawn(serve_tls(
            device_listener,
            tls.clone(),
            device_router,
            receiver.clone(),
        )),
        tokio::spawn(serve_tls(
            service_listener,
            tls,
            service_router,
            receiver.clone(),
        )),
    ];
    if let (Some(listener), Some(endpoint)) = (mqtt_listener, mqtt_endpoint) {
        // MQTT clients may offer ALPN protocols of their own: offer none.
        let mqtt_tls = identity.server_config(&[])?;
        tasks.push(tokio::spawn(device::mqtt::serve_tls(
            listener, mqtt_tls, endpoint,
        )));
    }
    if let (Some(live), Some(prober)) = (&live_latency, geo.prober()) {
        let interval = prober.interval;
        tasks.push(tokio::spawn(probe_hubs(
            LiveProber::new(live.clone(), prober),
            store.clone(),
            config.hubs.resolve.clone(),
            interval,
            receiver.clone(),
        )));
    }
    tasks.push(tokio::spawn(purge_operations(store.clone(), receiver)));
    tracing::info!(%device_addr, %service_addr, ?mqtt_addr, "dps is serving");
    Ok(RunningServer {
        device_addr,
        service_addr,
        mqtt_addr,
        trust_pem: identity.trust_pem,
        operator_key,
        store,
        tenants: declared_tenants,
        live_latency,
        device_latency,
        shutdown,
        tasks,
    })
}

async fn purge_operations(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = crate::listener::stopped(&mut shutdown) => return,
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(OPERATION_RETENTION).unwrap_or(chrono::Duration::days(2));
        if let Err(err) = store.purge_registration_operations(cutoff).await {
            tracing::warn!(%err, "purging old device operations failed");
        }
    }
}

/// Probe the linked hubs until shutdown: every round re-reads the tenants
/// from storage (so hubs linked or unlinked through any replica are picked up
/// within one interval), then measures every hub once.
async fn probe_hubs(
    prober: LiveProber,
    store: Arc<dyn Store>,
    resolve: BTreeMap<String, SocketAddr>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let round = async {
            match store.list_tenants().await {
                Ok(tenants) => prober.set_targets(probe_targets(&tenants, &resolve)),
                Err(err) => tracing::warn!(%err, "listing tenants for latency probes failed"),
            }
            prober.probe_once().await;
        };
        tokio::select! {
            _ = round => {}
            _ = crate::listener::stopped(&mut shutdown) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::listener::stopped(&mut shutdown) => return,
        }
    }
}

/// What the live prober measures: every linked hub with
/// `applyAllocationPolicy` (the only hubs `geoLatency` chooses from) of every
/// tenant, once each, at its `hubs.resolve` address when one is configured
/// (names compare case-insensitively), else at `{host}:443`.
pub fn probe_targets(
    tenants: &[dps_model::Tenant],
    resolve: &BTreeMap<String, SocketAddr>,
) -> Vec<ProbeTarget> {
    let mut targets: Vec<ProbeTarget> = Vec::new();
    let hubs = tenants
        .iter()
        .flat_map(|t| &t.linked_hubs)
        .filter(|hub| hub.apply_allocation_policy);
    for hub in hubs {
        let host = hub.host_name.to_ascii_lowercase();
        if targets.iter().any(|t| t.hub_host_name == host) {
            continue;
        }
        let resolved = resolve
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&host))
            .map(|(_, addr)| addr.to_string());
        targets.push(match resolved {
            Some(address) => ProbeTarget {
                hub_host_name: host,
                address,
            },
            None => ProbeTarget::https(&host),
        });
    }
    targets.sort_by(|a, b| a.hub_host_name.cmp(&b.hub_host_name));
    targets
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServiceError::Bind {
            addr,
            reason: e.to_string(),
        })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServiceError> {
    listener.local_addr().map_err(|e| ServiceError::Bind {
        addr,
        reason: e.to_string(),
    })
}

fn read_pem(path: &std::path::Path) -> Result<String, ServiceError> {
    std::fs::read_to_string(path).map_err(|e| ServiceError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The operator key kept in the data directory (generated on first start), so
/// it survives restarts when the configuration does not set one.
fn stored_operator_key(data_dir: &std::path::Path) -> Result<String, ServiceError> {
    let path = data_dir.join("operator.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        if !key.trim().is_empty() {
            return Ok(key.trim().to_owned());
        }
    }
    let key = dps_attestation::keys::generate_key();
    crate::tls::write_private(&path, &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_allocation::latency::ProberConfig;
    use dps_model::{LinkedHub, Tenant};

    fn tenant(name: &str, hubs: &[(&str, bool)]) -> Tenant {
        let mut tenant = Tenant::new(name, format!("{name}.localhost")).unwrap();
        tenant.linked_hubs = hubs
            .iter()
            .map(|&(host, eligible)| LinkedHub {
                apply_allocation_policy: eligible,
                ..LinkedHub::new(host, "")
            })
            .collect();
        tenant
    }

    #[test]
    fn targets_are_eligible_hubs_once_at_their_resolved_address() {
        let tenants = [
            tenant("one", &[("Hub-B.test", true), ("hub-a.test", true)]),
            tenant(
                "two",
                &[
                    ("hub-b.test", true),
                    ("hub-c.test", false),
                    ("hub-d.test", true),
                ],
            ),
        ];
        let resolve =
            BTreeMap::from([("HUB-A.test".to_owned(), "127.0.0.1:9000".parse().unwrap())]);
        let targets = probe_targets(&tenants, &resolve);
        let pairs: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.hub_host_name.as_str(), t.address.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("hub-a.test", "127.0.0.1:9000"),
                ("hub-b.test", "hub-b.test:443"),
                ("hub-d.test", "hub-d.test:443"),
            ]
        );
    }

    #[tokio::test]
    async fn prober_measures_hubs_through_the_resolve_map() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            gone.local_addr().unwrap()
        };
        let tenants = [tenant("one", &[("hub-a.test", true), ("hub-b.test", true)])];
        let resolve = BTreeMap::from([
            ("hub-a.test".to_owned(), open),
            ("hub-b.test".to_owned(), closed),
        ]);
        let live = Arc::new(LiveLatency::new());
        let prober = LiveProber::new(live.clone(), ProberConfig::default());
        prober.set_targets(probe_targets(&tenants, &resolve));
        prober.probe_once().await;
        assert!(live.get("hub-a.test").is_some());
        assert!(live.get("hub-b.test").is_none());
    }
}
