//! [`ServerBuilder`]: every part of a server, defaulting from the
//! configuration, each replaceable before [`ServerBuilder::start`].

use std::collections::BTreeMap;
use std::sync::Arc;

use dps_allocation::{LatencySource, Policy};
use dps_storage::Store;

use super::RunningServer;
use crate::config::ServiceConfig;
use crate::pipeline::HubConnector;
use crate::tls::ServerIdentity;
use crate::ServiceError;

/// Entry point of the composable server: `Server::builder(config)`.
#[derive(Debug)]
pub struct Server(());

impl Server {
    /// A builder whose every part comes from `config` until replaced.
    pub fn builder(config: ServiceConfig) -> ServerBuilder {
        ServerBuilder {
            listeners: Listeners::from_config(&config),
            config,
            store: None,
            named_policies: BTreeMap::new(),
            replaced_policies: Vec::new(),
            hub_connector: None,
            latency_source: None,
            tls: None,
            #[cfg(feature = "embedded")]
            hub_emulator: false,
        }
    }
}

/// Which listeners a server binds. The default follows the configuration:
/// device HTTPS and the service API always, MQTT and MQTT over WebSocket when
/// `device.mqtt` enables them, AMQP and AMQP over WebSocket when
/// `device.amqp` does, admin when `admin.enabled`.
///
/// MQTT and AMQP over WebSocket are served on the device HTTPS port, so they
/// need `device_https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// The device endpoint over HTTPS (`device.listen`).
    pub device_https: bool,
    /// MQTT over TLS (`device.mqtt.listen`).
    pub mqtt: bool,
    /// MQTT over WebSocket, on the device HTTPS listener.
    pub mqtt_websocket: bool,
    /// AMQP over TLS (`device.amqp.listen`).
    pub amqp: bool,
    /// AMQP over WebSocket, on the device HTTPS listener.
    pub amqp_websocket: bool,
    /// The service operations API (`service.listen`).
    pub service: bool,
    /// Health and readiness, plain HTTP (`admin.listen`).
    pub admin: bool,
}

impl Listeners {
    /// What `config` asks for.
    pub fn from_config(config: &ServiceConfig) -> Self {
        let mqtt = &config.device.mqtt;
        Listeners {
            device_https: true,
            mqtt: mqtt.enabled,
            mqtt_websocket: mqtt.enabled && mqtt.websocket,
            amqp: config.device.amqp.enabled,
            amqp_websocket: config.device.amqp.enabled && config.device.amqp.websocket,
            service: true,
            admin: config.admin.enabled,
        }
    }

    /// No listener at all (start from here and switch some on).
    pub fn none() -> Self {
        Listeners {
            device_https: false,
            mqtt: false,
            mqtt_websocket: false,
            amqp: false,
            amqp_websocket: false,
            service: false,
            admin: false,
        }
    }

    /// Every listener.
    pub fn all() -> Self {
        Listeners {
            device_https: true,
            mqtt: true,
            mqtt_websocket: true,
            amqp: true,
            amqp_websocket: true,
            service: true,
            admin: true,
        }
    }

    /// Make `config` say the same (the MQTT and admin switches), so that
    /// validation and the development certificate's names agree with what
    /// is bound.
    pub(super) fn apply_to(self, config: &mut ServiceConfig) -> Result<(), ServiceError> {
        if (self.mqtt_websocket || self.amqp_websocket) && !self.device_https {
            return Err(ServiceError::Config {
                reason: "MQTT and AMQP over WebSocket are served on the device HTTPS listener, which is off"
                    .to_owned(),
            });
        }
        config.device.amqp.enabled = self.amqp || self.amqp_websocket;
        config.device.amqp.websocket = self.amqp_websocket;
        config.device.mqtt.enabled = self.mqtt || self.mqtt_websocket;
        config.device.mqtt.websocket = self.mqtt_websocket;
        config.admin.enabled = self.admin;
        Ok(())
    }
}

/// The parts of a server before it starts. Made by [`Server::builder`];
/// [`ServerBuilder::start`] binds the listeners and serves.
///
/// ```no_run
/// # async fn run() -> Result<(), dps_service::ServiceError> {
/// use dps_service::server::{Listeners, Server};
/// use dps_service::ServiceConfig;
///
/// let mut config = ServiceConfig::default();
/// config.device.listen = "127.0.0.1:0".parse().unwrap();
/// config.service.listen = "127.0.0.2:0".parse().unwrap();
/// let server = Server::builder(config)
///     .store(dps_storage::MemoryStore::new())
///     .listeners(Listeners { device_https: true, service: true, ..Listeners::none() })
///     .start()
///     .await?;
/// println!("devices: https://{}", server.device_addr().expect("device HTTPS is on"));
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct ServerBuilder {
    pub(super) config: ServiceConfig,
    pub(super) store: Option<Arc<dyn Store>>,
    pub(super) named_policies: BTreeMap<String, Arc<dyn Policy>>,
    pub(super) replaced_policies: Vec<Arc<dyn Policy>>,
    pub(super) hub_connector: Option<Arc<dyn HubConnector>>,
    pub(super) latency_source: Option<Arc<dyn LatencySource>>,
    pub(super) tls: Option<ServerIdentity>,
    pub(super) listeners: Listeners,
    #[cfg(feature = "embedded")]
    pub(super) hub_emulator: bool,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("data_dir", &self.config.data_dir)
            .field("custom_store", &self.store.is_some())
            .field("named_policies", &self.named_policies.keys())
            .field("replaced_policies", &self.replaced_policies.len())
            .field("custom_hub_connector", &self.hub_connector.is_some())
            .field("custom_latency_source", &self.latency_source.is_some())
            .field("custom_tls", &self.tls.is_some())
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Use this store instead of opening `storage_url`. It is used as it
    /// is: already open, migrated, and shared with whoever else holds it.
    pub fn store(self, store: impl Store + 'static) -> Self {
        self.shared_store(Arc::new(store))
    }

    /// Like [`ServerBuilder::store`], for a store the caller keeps a handle to.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Register an allocation policy beside the built-ins, selected by
    /// enrollments whose `customAllocationDefinition.webhookUrl` is
    /// [`policy_url(name)`](super::policy_url) (`dps-policy://NAME`, with
    /// `allocationPolicy: "custom"`). The policy is offered the enrollment's
    /// candidate hubs and must answer one of them; its initial twin and
    /// payload are used as a webhook's would be. Its [`Policy::kind`] is
    /// not consulted. Registering a name twice keeps the last one; an
    /// invalid name fails [`ServerBuilder::start`].
    pub fn policy(mut self, name: &str, policy: impl Policy + 'static) -> Self {
        // Kept verbatim; checked (and lowercased) at start, where errors go.
        self.named_policies
            .insert(name.to_owned(), Arc::new(policy) as Arc<dyn Policy>);
        self
    }

    /// Replace the built-in policy of [`Policy::kind`] server-wide (for
    /// every enrollment and every tenant default naming it). Replacing
    /// `custom` replaces the webhook: policies registered with
    /// [`ServerBuilder::policy`] still take precedence for their URLs.
    pub fn replace_policy(mut self, policy: impl Policy + 'static) -> Self {
        self.replaced_policies.push(Arc::new(policy));
        self
    }

    /// Reach linked hubs through this connector instead of the IoT Hub
    /// REST client configured by `[hubs]`.
    pub fn hub_connector(mut self, connector: impl HubConnector + 'static) -> Self {
        self.hub_connector = Some(Arc::new(connector));
        self
    }

    /// Round trips for the lowest-latency policy instead of the configured
    /// table and live prober (the prober does not run).
    pub fn latency_source(mut self, source: impl LatencySource + 'static) -> Self {
        self.latency_source = Some(Arc::new(source));
        self
    }

    /// Present this certificate instead of the configured files or the
    /// development certificate in the data directory.
    pub fn tls(mut self, identity: ServerIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Bind exactly these listeners.
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// Run the in-process IoT hub emulator (its devices kept in the data
    /// directory), trust it, and link it to a `default` tenant when the
    /// configuration declares no tenant ([`crate::embedded`]).
    #[cfg(feature = "embedded")]
    pub fn hub_emulator(mut self) -> Self {
        self.hub_emulator = true;
        self
    }

    /// Take the data directory's lock, bind every listener, then open the
    /// store and start serving. Returns once all listeners accept.
    ///
    /// Nothing in the data directory is touched before its lock is held,
    /// and the store is opened only after every listener is bound: a second
    /// server on the same directory or ports fails before it opens the
    /// database.
    pub async fn start(self) -> Result<RunningServer, ServiceError> {
        super::start::start(self).await
    }
}
