//! `[device.amqp]`: the AMQP 1.0 device endpoint (docs/amqp.md), over TLS on
//! its own port (5671, the official SDKs' port) and over WebSocket on the
//! HTTPS device port (subprotocol `AMQPWSB10`).
//!
//! ```toml
//! [device.amqp]
//! enabled = true
//! # listen = "0.0.0.0:5671"   # default: the device endpoint's IP, port 5671
//! websocket = true
//! max_frame_bytes = 100352     # the 96 KiB body limit + 4 KiB for headers
//! sasl_timeout_ms = 10000      # TLS done → AMQP open done
//! idle_timeout_ms = 120000     # our open's idle-time-out
//! max_links = 4
//! max_in_flight = 4
//! max_throttled_replies = 16
//! max_connections_per_registration = 2
//! ```

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// The port the official SDKs dial for AMQP over TLS.
pub const DEFAULT_AMQP_PORT: u16 = 5671;

/// The AMQP device endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Serve AMQP at all (both forms).
    pub enabled: bool,
    /// AMQP over TLS address. Default: the device endpoint's IP address with
    /// port 5671, or port 0 when the device endpoint itself listens on port 0
    /// (tests).
    pub listen: Option<SocketAddr>,
    /// Accept AMQP over WebSocket on the HTTPS device endpoint.
    pub websocket: bool,
    /// Largest AMQP frame accepted (our open's `max-frame-size`): the 96 KiB
    /// body limit plus room for the transfer and message headers. A larger
    /// frame closes the connection.
    pub max_frame_bytes: usize,
    /// Time from the end of the TLS handshake to the end of the AMQP open
    /// (protocol header, SASL, open), in milliseconds.
    pub sasl_timeout_ms: u64,
    /// Our open's `idle-time-out`, in milliseconds: a connection that sends
    /// nothing for this long is closed (clients heartbeat at half of it).
    pub idle_timeout_ms: u64,
    /// Links one connection may attach (the SDKs attach two).
    pub max_links: usize,
    /// Requests of one connection in the pipeline at once; more are rejected
    /// as throttled.
    pub max_in_flight: usize,
    /// Throttled rejections one connection may collect before it is closed.
    pub max_throttled_replies: u32,
    /// Open connections per registration id; a newer one closes the oldest.
    pub max_connections_per_registration: usize,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            enabled: true,
            listen: None,
            websocket: true,
            max_frame_bytes: crate::respond::MAX_BODY_BYTES + 4096,
            sasl_timeout_ms: 10_000,
            idle_timeout_ms: 120_000,
            max_links: 4,
            max_in_flight: 4,
            max_throttled_replies: 16,
            max_connections_per_registration: 2,
        }
    }
}

impl AmqpConfig {
    /// The AMQP-over-TLS address, given the device endpoint's.
    pub fn listen_addr(&self, device_listen: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = if device_listen.port() == 0 {
                0
            } else {
                DEFAULT_AMQP_PORT
            };
            SocketAddr::new(device_listen.ip(), port)
        })
    }

    /// Check the section; `taken` are the other listeners' addresses.
    pub(super) fn validate(
        &self,
        device_listen: SocketAddr,
        taken: &[SocketAddr],
    ) -> Result<(), ServiceError> {
        if !self.enabled {
            return Ok(());
        }
        let fail = |reason: &str| {
            Err(ServiceError::Config {
                reason: format!("device.amqp.{reason}"),
            })
        };
        let addr = self.listen_addr(device_listen);
        if addr.port() != 0 && (addr == device_listen || taken.contains(&addr)) {
            return fail("listen must differ from the other listen addresses");
        }
        // 512 is AMQP's minimum max-frame-size; a body needs far more.
        if self.max_frame_bytes < 4096 {
            return fail("max_frame_bytes must be at least 4096");
        }
        if self.sasl_timeout_ms == 0 || self.idle_timeout_ms < 1000 {
            return fail("sasl_timeout_ms must be at least 1 and idle_timeout_ms at least 1000");
        }
        if self.max_links < 2
            || self.max_in_flight == 0
            || self.max_connections_per_registration == 0
        {
            return fail(
                "max_links must be at least 2, max_in_flight and max_connections_per_registration at least 1",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_follows_the_device_endpoint() {
        let config = AmqpConfig::default();
        let device: SocketAddr = "127.0.0.9:443".parse().unwrap();
        assert_eq!(
            config.listen_addr(device),
            "127.0.0.9:5671".parse().unwrap()
        );
        let ephemeral: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(config.listen_addr(ephemeral).port(), 0);
        assert!(config.validate(device, &[]).is_ok());
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let device: SocketAddr = "127.0.0.9:443".parse().unwrap();
        let clash = AmqpConfig {
            listen: Some(device),
            ..AmqpConfig::default()
        };
        let err = clash.validate(device, &[]).unwrap_err().to_string();
        assert!(err.contains("device.amqp.listen"), "{err}");
        let small = AmqpConfig {
            max_frame_bytes: 512,
            ..AmqpConfig::default()
        };
        assert!(small.validate(device, &[]).is_err());
        let links = AmqpConfig {
            max_links: 1,
            ..AmqpConfig::default()
        };
        assert!(links.validate(device, &[]).is_err());
        let off = AmqpConfig {
            enabled: false,
            max_links: 0,
            ..AmqpConfig::default()
        };
        assert!(off.validate(device, &[]).is_ok());
    }
}
