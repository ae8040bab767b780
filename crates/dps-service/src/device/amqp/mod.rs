//! The device provisioning endpoint over AMQP 1.0 (docs/amqp.md): over TLS
//! on its own port (5671), and over WebSocket on the HTTPS port (any path
//! whose upgrade asks for the `AMQPWSB10` subprotocol; the SDKs use
//! `/$iothub/websocket`).
//!
//! Translation only, like HTTPS and MQTT: SASL collects the device's
//! credential (the SAS token of PLAIN or TPM; X.509 devices skip SASL and
//! are known by their TLS chain), the links name the device
//! (`{idScope}/registrations/{registrationId}`), each request message
//! becomes a pipeline call through MQTT's request code and
//! `crate::device::body`, and each [`crate::respond::WireAnswer`] of
//! `crate::device::answers` becomes a reply message (2xx) or a rejected
//! delivery carrying the Azure error body.
//!
//! * `sasl`: protocol header, SASL (PLAIN, TPM challenge, EXTERNAL, ANONYMOUS).
//! * `stream`: the replay of bytes read ahead and the frame-size guard.
//! * `connection`: open, session, links, requests, limits.
//! * `requests`: messages to instructions, answers to messages and errors.
//! * `websocket`: the WebSocket-to-stream bridge.
//!
//! fe2o3-amqp does the framing, the open and the links; SASL is ours
//! because its acceptor cannot serve devices with and without SASL on one
//! port, nor run the TPM challenge (docs/amqp.md §8).

mod connection;
mod requests;
mod sasl;
mod stream;
pub(crate) mod websocket;

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AmqpConfig, ConnectionLimits};
use crate::connection_limits::ConnectionGate;
use crate::device::mqtt::registry::ConnectionRegistry;
use crate::listener::accept_tls;
use crate::pipeline::{Pipeline, TransportKind};

/// Any byte stream an AMQP connection can run over.
pub(crate) trait AmqpIo:
    AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static
{
}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static> AmqpIo for T {}

/// The limits every AMQP connection lives under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AmqpLimits {
    /// Largest frame accepted (our open's max-frame-size).
    pub(crate) max_frame_bytes: usize,
    /// TLS done → AMQP open done.
    pub(crate) sasl_timeout: Duration,
    /// Our open's idle-time-out.
    pub(crate) idle_timeout: Duration,
    /// Links per connection.
    pub(crate) max_links: usize,
    /// Requests of one connection in the pipeline at once.
    pub(crate) max_in_flight: usize,
    /// Throttled rejections before the connection is closed.
    pub(crate) max_throttled_replies: u32,
}

/// Everything AMQP connections share: the pipeline, the limits, the open
/// connections per device, and the shutdown signal.
pub struct AmqpEndpoint {
    pipeline: Arc<Pipeline>,
    limits: AmqpLimits,
    retry_after_seconds: u64,
    registry: Arc<ConnectionRegistry>,
    /// The caps and the TLS handshake deadline, as for every listener.
    connections: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for AmqpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpEndpoint")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AmqpEndpoint {
    /// The largest frame a connection accepts (the WebSocket bridge's
    /// message limit follows it).
    pub(crate) fn max_frame_bytes(&self) -> usize {
        self.limits.max_frame_bytes
    }

    /// The AMQP endpoint over `pipeline` with `config`'s and `connections`'
    /// limits; connections end when `shutdown` turns true.
    pub fn new(
        pipeline: Arc<Pipeline>,
        config: &AmqpConfig,
        connections: &ConnectionLimits,
        retry_after_seconds: u64,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(AmqpEndpoint {
            pipeline,
            limits: AmqpLimits {
                max_frame_bytes: config.max_frame_bytes,
                sasl_timeout: Duration::from_millis(config.sasl_timeout_ms),
                idle_timeout: Duration::from_millis(config.idle_timeout_ms),
                max_links: config.max_links,
                max_in_flight: config.max_in_flight,
                max_throttled_replies: config.max_throttled_replies,
            },
            retry_after_seconds,
            registry: Arc::new(ConnectionRegistry::new(
                config.max_connections_per_registration,
            )),
            connections: connections.clone(),
            shutdown,
        })
    }
}

/// Serve AMQP over TLS on `listener` until the endpoint's shutdown signal,
/// counting connections in `gate`. `tls` should offer no ALPN protocol.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    endpoint: Arc<AmqpEndpoint>,
    gate: Arc<ConnectionGate>,
) {
    let limits = endpoint.connections.clone();
    let shutdown = endpoint.shutdown.clone();
    let serve = move |tls, connection, slot| {
        let endpoint = endpoint.clone();
        async move {
            connection::run(tls, connection, TransportKind::Amqp, endpoint).await;
            // The connection's place under the caps is given back only now.
            drop(slot);
        }
    };
    accept_tls(listener, tls, gate, &limits, shutdown, serve).await;
}
