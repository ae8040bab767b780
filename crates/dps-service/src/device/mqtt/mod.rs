//! The device provisioning endpoint over MQTT 3.1.1 (spec §2): over TLS on
//! its own port (8883), and over WebSocket on the HTTPS port (any path whose
//! upgrade asks for the `mqtt` subprotocol; the SDKs use `/$iothub/websocket`).
//!
//! Translation only, like the HTTPS endpoint: CONNECT authenticates through
//! [`Pipeline::authenticate_device`], each request PUBLISH becomes a pipeline
//! call ([`requests`]), and every answer is rendered by
//! [`crate::respond::WireAnswer`] and published on
//! `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}]`.
//!
//! * [`topics`]: the username, request topics and reply topic (pure).
//! * [`session`]: one connection's state machine and its limits.
//! * [`registry`]: the cap on connections per registration id.
//! * [`transport`]: TLS stream or WebSocket under a session.
//! * [`websocket`]: the upgrade hook on the HTTPS router.
//!
//! The codec is `rumqttc`'s `mqttbytes::v4` (packets only; none of its client).
//! Not supported: MQTT 3.1 and 5, QoS 2 publishes, TPM attestation (as in Azure).

mod registry;
mod requests;
mod session;
mod topics;
mod transport;
mod websocket;

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use self::registry::ConnectionRegistry;
use self::transport::Transport;
pub use self::websocket::with_websocket;
use crate::config::MqttConfig;
use crate::listener::{stopped, ConnectionInfo};
use crate::pipeline::Pipeline;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits every MQTT connection lives under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MqttLimits {
    /// Largest packet accepted (remaining length); larger closes the connection.
    pub(crate) max_packet_bytes: usize,
    /// Time from connection to CONNECT.
    pub(crate) connect_timeout: Duration,
    /// Requests of one connection in the pipeline at once.
    pub(crate) max_in_flight: usize,
    /// Requests over `max_in_flight` answered `429` before the connection is closed.
    pub(crate) max_throttled_replies: u32,
}

/// Everything MQTT sessions share: the pipeline, the limits, the open
/// connections, and the shutdown signal.
pub struct MqttEndpoint {
    pipeline: Arc<Pipeline>,
    limits: MqttLimits,
    retry_after_seconds: u64,
    registry: Arc<ConnectionRegistry>,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for MqttEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttEndpoint")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl MqttEndpoint {
    /// The MQTT endpoint over `pipeline` with `config`'s limits; sessions end
    /// when `shutdown` turns true.
    pub fn new(
        pipeline: Arc<Pipeline>,
        config: &MqttConfig,
        retry_after_seconds: u64,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(MqttEndpoint {
            pipeline,
            limits: MqttLimits {
                max_packet_bytes: config.max_packet_bytes,
                connect_timeout: Duration::from_millis(config.connect_timeout_ms),
                max_in_flight: config.max_in_flight,
                max_throttled_replies: config.max_throttled_replies,
            },
            retry_after_seconds,
            registry: Arc::new(ConnectionRegistry::new(
                config.max_connections_per_registration,
            )),
            shutdown,
        })
    }
}

/// Serve MQTT over TLS on `listener` until the endpoint's shutdown signal.
/// `tls` should offer no ALPN protocol (MQTT clients may send their own).
pub async fn serve_tls(listener: TcpListener, tls: Arc<ServerConfig>, endpoint: Arc<MqttEndpoint>) {
    let acceptor = TlsAcceptor::from(tls);
    let mut shutdown = endpoint.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(%err, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, %err, "MQTT TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "MQTT TLS handshake timed out");
                    return;
                }
            };
            let client_chain = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let connection = ConnectionInfo {
                peer,
                client_chain: Arc::new(client_chain),
            };
            session::run(Transport::Stream(Box::new(tls)), connection, endpoint).await;
        });
    }
}
