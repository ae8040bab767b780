//! The admin listener (`[admin]`): operator endpoints such as `/healthz` and
//! `/readyz`, plain HTTP, off the device and service ports.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The default admin address: loopback only. The answers carry no secrets,
/// but they tell anyone who can reach them about the store; listening beyond
/// loopback (e.g. `0.0.0.0:9090` in a container whose port is not published)
/// is the operator's choice.
pub const DEFAULT_ADMIN_PORT: u16 = 9090;

/// `[admin]`: where health and readiness are answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin listener (default true).
    pub enabled: bool,
    /// Listen address. Default `127.0.0.1:9090`, or port 0 when the device
    /// endpoint itself listens on port 0 (tests start many servers side by
    /// side; a fixed port would collide).
    pub listen: Option<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: None,
        }
    }
}

impl AdminConfig {
    /// The address to bind, given the device endpoint's.
    pub fn listen_addr(&self, device_listen: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = if device_listen.port() == 0 {
                0
            } else {
                DEFAULT_ADMIN_PORT
            };
            SocketAddr::from(([127, 0, 0, 1], port))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_loopback_9090_and_follows_an_ephemeral_device_port() {
        let admin = AdminConfig::default();
        assert!(admin.enabled);
        let device: SocketAddr = "0.0.0.0:443".parse().unwrap();
        assert_eq!(admin.listen_addr(device).to_string(), "127.0.0.1:9090");
        let ephemeral: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(admin.listen_addr(ephemeral).port(), 0);
        let set = AdminConfig {
            listen: Some("0.0.0.0:9191".parse().unwrap()),
            ..AdminConfig::default()
        };
        assert_eq!(set.listen_addr(device).to_string(), "0.0.0.0:9191");
    }
}
