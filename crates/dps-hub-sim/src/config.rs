//! What to emulate: listen address, hubs, TLS, persistence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dps_attestation::keys::generate_key;

use crate::throttle::Throttling;

/// The policy name of every emulated hub's connection string.
pub const DEFAULT_POLICY: &str = "iothubowner";

/// Configuration of [`crate::HubSim::start`].
#[derive(Clone, Debug)]
pub struct HubSimConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Hubs served on that one listener. Empty: serve the hubs found in `data_file`.
    pub hubs: Vec<HubSpec>,
    /// Persist devices and twins here (JSON, written atomically after changes);
    /// loaded at start when it exists.
    pub data_file: Option<PathBuf>,
    /// Server certificate.
    pub tls: TlsSource,
}

impl HubSimConfig {
    /// Hubs with generated keys on `listen`, generated TLS, no persistence.
    pub fn new(listen: SocketAddr, hosts: &[&str]) -> Self {
        HubSimConfig {
            listen,
            hubs: hosts.iter().map(|h| HubSpec::new(*h)).collect(),
            data_file: None,
            tls: TlsSource::default(),
        }
    }
}

/// One emulated hub.
#[derive(Clone)]
pub struct HubSpec {
    /// Host name clients use (`HostName=` of the connection string).
    pub host_name: String,
    /// Policy name (`SharedAccessKeyName`), normally `iothubowner`.
    pub key_name: String,
    /// Policy key in base64. `None`: reuse the key stored in the data file for
    /// this hub, or generate one.
    pub key: Option<String>,
    /// IoT Hub's throttles for a tier and unit count; `None` (the default):
    /// no throttling, so tests are never slowed by it.
    pub throttling: Option<Throttling>,
}

impl HubSpec {
    /// A hub with the `iothubowner` policy and a key from the data file or generated.
    pub fn new(host_name: impl Into<String>) -> Self {
        HubSpec {
            host_name: host_name.into(),
            key_name: DEFAULT_POLICY.to_owned(),
            key: None,
            throttling: None,
        }
    }

    /// The same hub, throttled like IoT Hub at this tier and unit count.
    pub fn throttled(mut self, throttling: Throttling) -> Self {
        self.throttling = Some(throttling);
        self
    }

    /// A hub with this base64 `iothubowner` key.
    pub fn with_key(host_name: impl Into<String>, key: impl Into<String>) -> Self {
        HubSpec {
            key: Some(key.into()),
            ..HubSpec::new(host_name)
        }
    }

    /// A hub with a freshly generated key.
    pub fn generated(host_name: impl Into<String>) -> Self {
        Self::with_key(host_name, generate_key())
    }
}

/// `NAME` (key from the data file or generated) or `NAME=KEY` (base64 key;
/// host names hold no `=`, so the key keeps its padding).
impl std::str::FromStr for HubSpec {
    type Err = crate::HubSimError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, key) = match text.split_once('=') {
            Some((name, key)) => (name.trim(), Some(key.trim())),
            None => (text.trim(), None),
        };
        if name.is_empty() || key.is_some_and(str::is_empty) {
            return Err(crate::HubSimError::InvalidConfig {
                reason: format!("expected NAME or NAME=KEY, got {:?}", name),
            });
        }
        Ok(match key {
            Some(key) => HubSpec::with_key(name, key),
            None => HubSpec::new(name),
        })
    }
}

impl std::fmt::Debug for HubSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpec")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("throttling", &self.throttling)
            .finish()
    }
}

/// Where the server certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// A fresh self-signed CA signing a server certificate whose SANs cover
    /// every hub host name, `localhost`, `127.0.0.1`, the listen IP and these
    /// extra names.
    Generate {
        /// More DNS names or IPs for the certificate.
        extra_names: Vec<String>,
    },
    /// A certificate chain and private key from PEM files.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// PKCS#8, PKCS#1 or SEC1 private key.
        key: PathBuf,
    },
}

impl Default for TlsSource {
    fn default() -> Self {
        TlsSource::Generate {
            extra_names: Vec::new(),
        }
    }
}

/// A failure injected into one hub (test hook), applied before authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer every request with this status and an IoT Hub error body
    /// (`ServiceUnavailable` for 503, `ServerError` for other 5xx, `ThrottlingException` for 429).
    Status(u16),
    /// Answer 429 `ThrottlingException` with this `Retry-After` (whole seconds).
    Throttle {
        /// Seconds sent in `Retry-After`.
        retry_after_secs: u64,
    },
    /// Drop connections: the TLS handshake is cut when the client names the hub
    /// in SNI, otherwise the request is cut without a reply.
    Unreachable,
    /// Hold each request this long before serving it normally.
    Delay(Duration),
}
