//! Binding the listeners (before anything else is opened) and serving them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::running::Addresses;
use super::Listeners;
use crate::config::ServiceConfig;
use crate::connection_limits::ListenerGates;
use crate::device::amqp::AmqpEndpoint;
use crate::device::mqtt::MqttEndpoint;
use crate::listener::serve_tls_limited;
use crate::tls::ServerIdentity;
use crate::ServiceError;

/// A bound listener and the address it really got (port 0 resolved).
pub(super) struct Bound {
    pub(super) listener: TcpListener,
    pub(super) addr: SocketAddr,
}

/// Every listener the server serves, bound.
pub(super) struct BoundListeners {
    pub(super) device: Option<Bound>,
    pub(super) service: Option<Bound>,
    pub(super) mqtt: Option<Bound>,
    pub(super) amqp: Option<Bound>,
    pub(super) admin: Option<Bound>,
}

impl BoundListeners {
    /// Bind what `listeners` asks for, at `config`'s addresses; the first
    /// failure names its address.
    pub(super) async fn bind(
        config: &ServiceConfig,
        listeners: Listeners,
    ) -> Result<Self, ServiceError> {
        let device_listen = config.device.listen;
        Ok(BoundListeners {
            device: bind_if(listeners.device_https, device_listen).await?,
            service: bind_if(listeners.service, config.service.listen).await?,
            mqtt: bind_if(
                listeners.mqtt,
                config.device.mqtt.listen_addr(device_listen),
            )
            .await?,
            amqp: bind_if(
                listeners.amqp,
                config.device.amqp.listen_addr(device_listen),
            )
            .await?,
            admin: bind_if(listeners.admin, config.admin.listen_addr(device_listen)).await?,
        })
    }

    /// The addresses really bound.
    pub(super) fn addresses(&self) -> Addresses {
        Addresses {
            device: self.device.as_ref().map(|b| b.addr),
            service: self.service.as_ref().map(|b| b.addr),
            mqtt: self.mqtt.as_ref().map(|b| b.addr),
            amqp: self.amqp.as_ref().map(|b| b.addr),
            admin: self.admin.as_ref().map(|b| b.addr),
        }
    }
}

async fn bind_if(wanted: bool, addr: SocketAddr) -> Result<Option<Bound>, ServiceError> {
    if !wanted {
        return Ok(None);
    }
    let bind_error = |e: std::io::Error| ServiceError::Bind {
        addr,
        reason: e.to_string(),
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok(Some(Bound { listener, addr }))
}

/// What the TLS listeners serve.
pub(super) struct Endpoints {
    /// The device HTTPS router (MQTT over WebSocket already layered on).
    pub(super) device: Router,
    pub(super) service: Router,
    pub(super) mqtt: Option<Arc<MqttEndpoint>>,
    pub(super) amqp: Option<Arc<AmqpEndpoint>>,
}

/// Spawn one task per bound TLS listener (the admin listener is served
/// separately, after these: readiness relies on it).
pub(super) fn serve_tls_listeners(
    bound: &mut BoundListeners,
    endpoints: Endpoints,
    identity: &ServerIdentity,
    config: &ServiceConfig,
    gates: &ListenerGates,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    let tls = identity.server_config(&[b"h2", b"http/1.1"])?;
    let mut tasks = Vec::new();
    for (listener, router, gate) in [
        (bound.device.take(), endpoints.device, &gates.device),
        (bound.service.take(), endpoints.service, &gates.service),
    ] {
        if let Some(Bound { listener, .. }) = listener {
            tasks.push(tokio::spawn(serve_tls_limited(
                listener,
                tls.clone(),
                router,
                shutdown.clone(),
                config.connections.clone(),
                gate.clone(),
            )));
        }
    }
    if let (Some(Bound { listener, .. }), Some(endpoint), Some(gate)) =
        (bound.mqtt.take(), endpoints.mqtt, gates.mqtt.clone())
    {
        // MQTT clients may offer ALPN protocols of their own: offer none.
        let mqtt_tls = identity.server_config(&[])?;
        tasks.push(tokio::spawn(crate::device::mqtt::serve_tls(
            listener, mqtt_tls, endpoint, gate,
        )));
    }
    if let (Some(Bound { listener, .. }), Some(endpoint), Some(gate)) =
        (bound.amqp.take(), endpoints.amqp, gates.amqp.clone())
    {
        // AMQP clients may offer ALPN protocols of their own: offer none.
        let amqp_tls = identity.server_config(&[])?;
        tasks.push(tokio::spawn(crate::device::amqp::serve_tls(
            listener, amqp_tls, endpoint, gate,
        )));
    }
    Ok(tasks)
}
