//! The device provisioning endpoint over MQTT 3.1.1 (spec §2): over TLS on
//! its own port (8883), and over WebSocket on the HTTPS port (any path whose
//! upgrade asks for the `mqtt` subprotocol; the SDKs use `/$iothub/websocket`).
//!
//! Translation only, like the HTTPS endpoint: CONNECT authenticates through
//! [`Pipeline::authenticate_device`] (a failure leaves the connection
//! unverified, its requests refused on the reply topic by the pipeline as
//! over HTTPS; see `session`), each request PUBLISH becomes a pipeline
//! call (`requests`), and every answer comes from `crate::device::answers`
//! and is published on
//! `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}]`.
//!
//! * [`dps_model::mqtt`]: the username, request topics and reply topic (pure,
//!   shared with `dps-client`).
//! * `session`: one connection's state machine and its limits.
//! * `registry`: the cap on connections per registration id.
//! * `transport`: TLS stream or WebSocket under a session.
//! * `websocket`: the upgrade hook on the HTTPS router.
//!
//! The codec is `rumqttc`'s `mqttbytes::v4` (packets only; none of its client).
//! Not supported: MQTT 3.1 and 5, QoS 2 publishes, TPM attestation (as in
//! Azure: a challenge is answered as over HTTPS, but its token would need a
//! new CONNECT).

pub(crate) mod registry;
pub(crate) mod requests;
mod session;
mod transport;
mod websocket;

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::registry::ConnectionRegistry;
use self::transport::Transport;
pub use self::websocket::{with_websocket, with_websockets};
use crate::config::{ConnectionLimits, MqttConfig};
use crate::connection_limits::ConnectionGate;
use crate::listener::accept_tls;
use crate::pipeline::Pipeline;

/// The limits every MQTT connection lives under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MqttLimits {
    /// Largest packet accepted (remaining length); larger closes the connection.
    pub(crate) max_packet_bytes: usize,
    /// Time from connection to CONNECT.
    pub(crate) connect_timeout: Duration,
    /// The longest keep-alive honoured, in seconds (asking 0 gets this).
    pub(crate) max_keep_alive_seconds: u16,
    /// Requests of one connection in the pipeline at once.
    pub(crate) max_in_flight: usize,
    /// Requests over `max_in_flight` answered `429` before the connection is closed.
    pub(crate) max_throttled_replies: u32,
}

impl MqttLimits {
    /// The keep-alive a session runs under when the client asked `asked`
    /// seconds: MQTT 3.1.1's 0 (no keep-alive) and anything above the
    /// maximum become the maximum, so no silent connection lives forever.
    pub(crate) fn keep_alive(&self, asked: u16) -> Duration {
        let max = self.max_keep_alive_seconds;
        let granted = if asked == 0 || asked > max {
            max
        } else {
            asked
        };
        Duration::from_secs(u64::from(granted))
    }
}

/// Everything MQTT sessions share: the pipeline, the limits, the open
/// connections, and the shutdown signal.
pub struct MqttEndpoint {
    pipeline: Arc<Pipeline>,
    limits: MqttLimits,
    retry_after_seconds: u64,
    registry: Arc<ConnectionRegistry>,
    /// The caps and the TLS handshake deadline of MQTT over TLS, as for
    /// every listener.
    connections: ConnectionLimits,
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
    /// The MQTT endpoint over `pipeline` with `config`'s and `connections`'
    /// limits; sessions end when `shutdown` turns true.
    pub fn new(
        pipeline: Arc<Pipeline>,
        config: &MqttConfig,
        connections: &ConnectionLimits,
        retry_after_seconds: u64,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(MqttEndpoint {
            pipeline,
            limits: MqttLimits {
                max_packet_bytes: config.max_packet_bytes,
                connect_timeout: Duration::from_millis(config.connect_timeout_ms),
                max_keep_alive_seconds: connections.mqtt_max_keep_alive_seconds,
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

/// Serve MQTT over TLS on `listener` until the endpoint's shutdown signal,
/// counting connections in `gate`. `tls` should offer no ALPN protocol (MQTT
/// clients may send their own).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    endpoint: Arc<MqttEndpoint>,
    gate: Arc<ConnectionGate>,
) {
    let limits = endpoint.connections.clone();
    let shutdown = endpoint.shutdown.clone();
    let serve = move |tls, connection, slot| {
        let endpoint = endpoint.clone();
        async move {
            session::run(Transport::Stream(Box::new(tls)), connection, endpoint).await;
            // The connection's place under the caps is given back only now.
            drop(slot);
        }
    };
    accept_tls(listener, tls, gate, &limits, shutdown, serve).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_zero_and_above_the_maximum_get_the_maximum() {
        let limits = MqttLimits {
            max_packet_bytes: 1024,
            connect_timeout: Duration::from_secs(10),
            max_keep_alive_seconds: 300,
            max_in_flight: 1,
            max_throttled_replies: 1,
        };
        assert_eq!(limits.keep_alive(0), Duration::from_secs(300));
        assert_eq!(limits.keep_alive(60), Duration::from_secs(60));
        assert_eq!(limits.keep_alive(300), Duration::from_secs(300));
        assert_eq!(limits.keep_alive(u16::MAX), Duration::from_secs(300));
    }
}
