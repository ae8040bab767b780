//! The start sequence: lock the data directory, bind every listener, then
//! open the store, prepare TLS, hubs and allocation, and serve.

use std::sync::Arc;
use std::time::Duration;

use dps_allocation::latency::Layered;
use dps_allocation::{
    Allocator, AllocatorConfig, LatencySource, LiveLatency, LiveProber, WebhookConfig,
};
use dps_hub::{HubClientOptions, HubDirectory};
use tokio::sync::watch;

use super::listeners::{BoundListeners, Endpoints};
use super::policies::{check_name, CustomPolicies};
use super::running::RunningServer;
use super::{background, ServerBuilder};
use crate::config::ServiceConfig;
use crate::connection_limits::ListenerGates;
use crate::data_lock::DataDirLock;
use crate::pipeline::{HubConnector, Pipeline, TenantCache};
use crate::tls::ServerIdentity;
use crate::{device, service_api, storage_url, ServiceError};

pub(super) async fn start(builder: ServerBuilder) -> Result<RunningServer, ServiceError> {
    let ServerBuilder {
        mut config,
        store,
        named_policies,
        replaced_policies,
        hub_connector,
        latency_source,
        tls,
        listeners,
        #[cfg(feature = "embedded")]
        hub_emulator,
    } = builder;
    listeners.apply_to(&mut config)?;
    config.validate()?;
    // Nothing in the data directory is opened before its lock is held, and
    // nothing is opened at all before every port is ours: a second server
    // fails on the lock or a port without touching the database.
    let data_lock = DataDirLock::acquire(&config.data_dir)?;
    let mut bound = BoundListeners::bind(&config, listeners).await?;
    let addresses = bound.addresses();

    #[cfg(feature = "embedded")]
    let hub_emulator = match hub_emulator {
        true => Some(crate::embedded::start_hub_emulator(&mut config).await?),
        false => None,
    };
    let store = match store {
        Some(store) => store,
        None => storage_url::open(&config.storage_url()).await?,
    };
    // One registry per server (`/metrics`); the store is timed from here on.
    let metrics = crate::metrics::ServerMetrics::new(&config.metrics);
    let store = metrics.instrument_store(store);
    let declared_tenants = crate::bootstrap::ensure_tenants(store.as_ref(), &config).await?;
    let identity = match tls {
        Some(identity) => identity,
        None => {
            // Every listen address and declared host, the embedded tenant's
            // included (the emulator adds it above).
            config.tls.dev_names = crate::tls::development_names(&config);
            ServerIdentity::load_or_generate(&config.tls, &config.data_dir)?
        }
    };

    let hubs = match hub_connector {
        Some(connector) => connector,
        None => hub_directory(&config)?,
    };
    let egress = config.egress.policy()?;
    let geo = &config.allocation.geo_latency;
    let live_latency = match latency_source {
        Some(_) => None,
        None => geo.prober().map(|_| Arc::new(LiveLatency::new())),
    };
    let latency: Arc<dyn LatencySource> = match (latency_source, &live_latency) {
        (Some(source), _) => source,
        (None, Some(live)) => Arc::new(Layered {
            first: geo.table()?,
            then: live.clone(),
        }),
        (None, None) => Arc::new(geo.table()?),
    };
    let policy_names = named_policies
        .keys()
        .map(|name| check_name(name))
        .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
    let allocator = allocator(&config, latency, named_policies, replaced_policies)?;
    let tenants = Arc::new(TenantCache::default());
    // Tenant CA private keys are sealed under this key (issue #17).
    let certificate_key = Arc::new(
        crate::certificate_authority::KeyEncryptionKey::load_or_generate(&config.data_dir)
            .map_err(|e| ServiceError::Config {
                reason: e.to_string(),
            })?,
    );
    let pipeline = Pipeline::new(
        store.clone(),
        hubs,
        Arc::new(allocator),
        tenants.clone(),
        config.device_token_policy(),
        &config.throttling,
    )
    .with_attestation_limits(&config.attestation)
    .with_metrics(metrics.device.clone())
    .with_certificate_key(certificate_key.clone());
    let pipeline = Arc::new(pipeline);
    let device_latency = pipeline.latency();
    let operator_key = crate::operator_key::load(&config)?;

    let (shutdown, receiver) = watch::channel(false);
    // `Location` names come from configuration or the certificate, never
    // from a request's `Host`.
    let location = crate::endpoint_names::location_authority(
        config.device.public_host.as_deref(),
        &identity.chain,
        addresses.device.unwrap_or(config.device.listen),
    );
    tracing::debug!(%location, "device Location authority");
    let mut device_router = device::router(
        pipeline.clone(),
        config.device.retry_after_seconds,
        location,
    );
    let mqtt = &config.device.mqtt;
    let mqtt_endpoint = mqtt.enabled.then(|| {
        device::mqtt::MqttEndpoint::new(
            pipeline.clone(),
            mqtt,
            &config.connections,
            config.device.retry_after_seconds,
            receiver.clone(),
        )
    });
    let amqp = &config.device.amqp;
    let amqp_endpoint = amqp.enabled.then(|| {
        device::amqp::AmqpEndpoint::new(
            pipeline.clone(),
            amqp,
            &config.connections,
            config.device.retry_after_seconds,
            receiver.clone(),
        )
    });
    let mqtt_ws = mqtt_endpoint.clone().filter(|_| mqtt.websocket);
    let amqp_ws = amqp_endpoint.clone().filter(|_| amqp.websocket);
    if mqtt_ws.is_some() || amqp_ws.is_some() {
        device_router = device::mqtt::with_websockets(device_router, mqtt_ws, amqp_ws);
    }
    let operator_audience = crate::endpoint_names::operator_audience(
        &config.service.operator_audience,
        &identity.chain,
        config.service.listen,
    );
    tracing::debug!(?operator_audience, "operator token audience");
    let service_router = service_api::router(
        service_api::ServiceApi::new(
            store.clone(),
            tenants,
            service_api::ServiceAuth {
                operator_key: operator_key.key,
                operator_audience,
                expiry: config.service_token_policy(),
            },
            config.service.host_suffix.clone(),
        )
        .with_throttling(&config.throttling)
        .with_egress(egress)
        .with_policy_names(policy_names)
        .with_certificate_key(certificate_key),
    );
    let service_router = metrics.observe_service_api(service_router, config.log.access_log);

    let connections = ListenerGates::new(&config.connections, addresses.mqtt.is_some())
        .with_amqp(&config.connections, addresses.amqp.is_some());
    let endpoints = Endpoints {
        device: device_router,
        service: service_router,
        mqtt: mqtt_endpoint.filter(|_| addresses.mqtt.is_some()),
        amqp: amqp_endpoint.filter(|_| addresses.amqp.is_some()),
    };
    let mut tasks = super::listeners::serve_tls_listeners(
        &mut bound,
        endpoints,
        &identity,
        &config,
        &connections,
        &receiver,
    )?;
    if let (Some(live), Some(prober)) = (&live_latency, geo.prober()) {
        let interval = prober.interval;
        tasks.push(tokio::spawn(background::probe_hubs(
            LiveProber::new(live.clone(), prober),
            store.clone(),
            config.hubs.resolve.clone(),
            interval,
            receiver.clone(),
        )));
    }
    if let Some(admin) = bound.admin.take() {
        // Started after every other listener is bound: readiness relies on it.
        let readiness = crate::admin::Readiness::new(store.clone(), receiver.clone());
        let registry = metrics.finish(&connections, store.clone());
        tasks.push(tokio::spawn(crate::admin::serve(
            admin.listener,
            crate::admin::router(readiness, registry),
            receiver.clone(),
        )));
    }
    tasks.push(tokio::spawn(background::purge_operations(
        store.clone(),
        receiver,
    )));
    // "off" rather than `None`/`Some(…)`: log lines are read by operators.
    let shown = |addr: Option<std::net::SocketAddr>| {
        addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
    };
    tracing::info!(
        device_addr = %shown(addresses.device),
        service_addr = %shown(addresses.service),
        mqtt_addr = %shown(addresses.mqtt),
        amqp_addr = %shown(addresses.amqp),
        admin_addr = %shown(addresses.admin),
        "dps is serving"
    );
    Ok(RunningServer {
        addresses,
        trust_pem: identity.trust_pem,
        operator_key: operator_key.text,
        operator_key_origin: operator_key.origin,
        store,
        tenants: declared_tenants,
        live_latency,
        device_latency,
        connections,
        shutdown,
        tasks,
        data_lock: Some(data_lock),
        #[cfg(feature = "embedded")]
        hub_emulator,
    })
}

/// The IoT Hub REST client of `[hubs]`: its CAs and name overrides.
fn hub_directory(config: &ServiceConfig) -> Result<Arc<dyn HubConnector>, ServiceError> {
    let mut options = HubClientOptions::default().retry_deadline(config.hub_timeout());
    for path in &config.hubs.trusted_ca_files {
        options = options.trust_ca_pem(read_pem(path)?);
    }
    for (host, addr) in &config.hubs.resolve {
        options = options.resolve(host.clone(), *addr);
    }
    let directory = HubDirectory::new(options).map_err(|e| ServiceError::Config {
        reason: format!("hub client: {e}"),
    })?;
    Ok(Arc::new(directory))
}

/// The built-ins configured, the replaced ones swapped in, and `custom`
/// dispatching to the registered policies before the webhook.
fn allocator(
    config: &ServiceConfig,
    latency: Arc<dyn LatencySource>,
    named: std::collections::BTreeMap<String, Arc<dyn dps_allocation::Policy>>,
    replaced: Vec<Arc<dyn dps_allocation::Policy>>,
) -> Result<Allocator, ServiceError> {
    let webhook = WebhookConfig {
        timeout: Duration::from_millis(config.allocation.webhook_timeout_ms),
        egress: config.egress.policy()?,
        extra_root_certificates_pem: config
            .allocation
            .webhook_trusted_ca_files
            .iter()
            .map(|p| read_pem(p).map(String::into_bytes))
            .collect::<Result<_, _>>()?,
        ..WebhookConfig::default()
    };
    let geo = &config.allocation.geo_latency;
    let mut allocator = Allocator::new(AllocatorConfig {
        webhook,
        latency,
        geo_tie_tolerance: geo.tie_tolerance(),
    })
    .map_err(|e| ServiceError::Config {
        reason: format!("allocation: {e}"),
    })?;
    for policy in replaced {
        allocator = allocator.with_policy(policy);
    }
    let mut registered = std::collections::BTreeMap::new();
    for (name, policy) in named {
        registered.insert(check_name(&name)?, policy);
    }
    let webhook = custom_policy(&allocator);
    Ok(allocator.with_policy(Arc::new(CustomPolicies {
        webhook,
        named: registered,
    })))
}

/// The allocator's current `custom` implementation, as a shareable policy.
fn custom_policy(allocator: &Allocator) -> Arc<dyn dps_allocation::Policy> {
    /// Delegates to the `custom` policy of a cloned allocator.
    struct Current(Allocator);
    #[async_trait::async_trait]
    impl dps_allocation::Policy for Current {
        fn kind(&self) -> dps_model::AllocationPolicy {
            dps_model::AllocationPolicy::Custom
        }
        async fn allocate(
            &self,
            request: &dps_allocation::AllocationRequest<'_>,
        ) -> Result<dps_allocation::Allocation, dps_allocation::AllocationError> {
            self.0
                .policy(dps_model::AllocationPolicy::Custom)
                .allocate(request)
                .await
        }
    }
    Arc::new(Current(allocator.clone()))
}

fn read_pem(path: &std::path::Path) -> Result<String, ServiceError> {
    std::fs::read_to_string(path).map_err(|e| ServiceError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
