//! Connection limits of every listener (`[connections]`): how long a client
//! may take at each step of a connection, how many connections may be open,
//! and the MQTT keep-alive the server enforces.
//!
//! ```toml
//! [connections]
//! tls_handshake_timeout_ms = 10000
//! header_read_timeout_ms = 10000
//! body_read_timeout_ms = 30000
//! idle_timeout_ms = 60000
//! max_connections = 10000
//! max_connections_per_address = 256
//! mqtt_max_keep_alive_seconds = 300
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// Timeouts and connection caps, applied to each listener separately (the
/// device HTTPS endpoint with its MQTT-over-WebSocket sessions, the service
/// endpoint, and MQTT over TLS).
///
/// Defaults and why:
///
/// * **TLS handshake 10 s.** A handshake is two round trips; 10 s covers a
///   device on a congested cellular link several times over.
/// * **Header read 10 s.** From the end of the handshake (or the first byte
///   of a request on a reused connection) until the request's headers are
///   complete. SDK requests are a few hundred bytes sent at once; only a
///   dribbler needs longer.
/// * **Body read 30 s.** From the headers until the whole body arrived.
///   Bodies are at most 96 KiB; 30 s is 3.2 KiB/s, slower than any link a
///   device provisions over, while a dribbler cannot hold a request open.
/// * **Keep-alive idle 60 s.** A connection with no request in flight is
///   closed after this. Devices poll every 1–3 s (`Retry-After`), so a
///   provisioning conversation never idles this long; SDK connection pools
///   (Node's agent, .NET's `HttpClient`) reconnect transparently.
/// * **10,000 connections per listener.** Bounds memory (a TLS connection
///   holds ~50–100 KiB of buffers, so ~1 GiB at the cap) and file
///   descriptors: raise `ulimit -n` above three times this value.
/// * **256 connections per source address.** Fleets sit behind NAT: a
///   factory line, a building, or a carrier-grade NAT shows many devices as
///   one address. A provisioning conversation lasts seconds and devices
///   provision rarely (first boot, reprovisioning), so 256 simultaneous
///   conversations from one address is a whole fleet rebooting at once
///   behind one NAT; devices over the cap see a refused connection and retry
///   with the SDKs' back-off. One attacker address still holds only 2.5% of
///   the listener. IPv6 peers are counted per /64 (one subscriber's
///   allocation), or a single host could take 2^64 addresses.
/// * **MQTT maximum keep-alive 300 s.** MQTT 3.1.1 lets a client ask for no
///   keep-alive (0), which would let a silent connection live forever; a
///   client asking 0 or more than the maximum gets the maximum, and like any
///   keep-alive the connection closes after 1.5 times it without a packet.
///   The SDKs ask 60 s (Python) and 180 s (Node), below it. The CONNECT
///   deadline is `device.mqtt.connect_timeout_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Time from TCP accept to the end of the TLS handshake, in milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Time to receive a request's headers, in milliseconds: from the end of
    /// the handshake for the first request, from its first byte for later
    /// ones.
    pub header_read_timeout_ms: u64,
    /// Time from a request's headers to the end of its body, in milliseconds.
    pub body_read_timeout_ms: u64,
    /// Time an HTTP connection may stay open with no request in flight, in
    /// milliseconds.
    pub idle_timeout_ms: u64,
    /// Open connections per listener, TLS handshakes included.
    pub max_connections: usize,
    /// Open connections per listener from one source address (IPv6: /64).
    pub max_connections_per_address: usize,
    /// The longest MQTT keep-alive the server honours, in seconds; a client
    /// asking 0 (none) or more gets this.
    pub mqtt_max_keep_alive_seconds: u16,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            max_connections_per_address: 256,
            mqtt_max_keep_alive_seconds: 300,
        }
    }
}

impl ConnectionLimits {
    /// Refuse zeros: every limit here must be able to let something through.
    pub fn validate(&self) -> Result<(), ServiceError> {
        for (name, value) in [
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
            (
                "mqtt_max_keep_alive_seconds",
                u64::from(self.mqtt_max_keep_alive_seconds),
            ),
        ] {
            if value == 0 {
                return Err(ServiceError::Config {
                    reason: format!("connections.{name} must be at least 1"),
                });
            }
        }
        Ok(())
    }

    /// The TLS handshake deadline.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }

    /// The header read deadline.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The body read deadline.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The keep-alive idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused_with_their_name() {
        let limits = ConnectionLimits {
            max_connections_per_address: 0,
            ..ConnectionLimits::default()
        };
        let err = limits.validate().unwrap_err();
        assert!(
            err.to_string()
                .contains("connections.max_connections_per_address"),
            "{err}"
        );
        assert!(ConnectionLimits::default().validate().is_ok());
    }

    #[test]
    fn the_connections_section_parses_and_is_checked_at_load() {
        let config = crate::ServiceConfig::from_toml(
            "[connections]\nmax_connections = 5\nidle_timeout_ms = 1500\n",
        )
        .unwrap();
        assert_eq!(config.connections.max_connections, 5);
        assert_eq!(
            config.connections.idle_timeout(),
            Duration::from_millis(1500)
        );
        assert_eq!(config.connections.max_connections_per_address, 256);
        let err = crate::ServiceConfig::from_toml("[connections]\nheader_read_timeout_ms = 0\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("connections.header_read_timeout_ms"),
            "{err}"
        );
    }
}
