//! The one typed configuration of the server: TOML file, then flags, with
//! documented defaults, validated at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tls::TlsSettings;
use crate::ServiceError;

mod admin;
mod allocation;
mod amqp;
mod attestation;
mod credentials;
mod egress;
mod limits;
mod log;
mod metrics;
mod overrides;
mod throttling;

pub use admin::{AdminConfig, DEFAULT_ADMIN_PORT};
pub use allocation::{
    AllocationConfig, GeoLatencyConfig, LatencyProbeConfig, LatencyRange, LatencyRoundTrip,
    LatencyTableSettings,
};
pub use amqp::{AmqpConfig, DEFAULT_AMQP_PORT};
pub use attestation::AttestationLimits;
pub use credentials::{
    operator_key, DEFAULT_DEVICE_TOKEN_LIFETIME_SECS, DEFAULT_SERVICE_TOKEN_LIFETIME_SECS,
    MIN_OPERATOR_KEY_BYTES,
};
pub use egress::EgressConfig;
pub use limits::ConnectionLimits;
pub use log::{LogConfig, LogFormat};
pub use metrics::{MetricsConfig, DEFAULT_MAX_TENANT_LABELS};
pub use overrides::Overrides;
pub use throttling::ThrottlingConfig;

/// Everything `dps-server` needs. Every field has a default, so an empty file
/// (or none) runs the service with embedded defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where the SQLite database and generated certificates live.
    pub data_dir: PathBuf,
    /// Storage backend URL: `sqlite://path` (default `sqlite://{data_dir}/dps.db`),
    /// `memory://` (tests only), or `postgres://…`.
    pub storage_url: Option<String>,
    /// The device provisioning endpoint.
    pub device: DeviceEndpointConfig,
    /// The service operations endpoint.
    pub service: ServiceEndpointConfig,
    /// Server certificate.
    pub tls: TlsSettings,
    /// How the server reaches linked hubs.
    pub hubs: HubConnectionConfig,
    /// Allocation settings.
    pub allocation: AllocationConfig,
    /// The operator credential for tenant management (`/tenants`); generated
    /// and printed at start when absent.
    pub operator_key: Option<String>,
    /// Tenants created at start when missing (their listed hubs are linked).
    pub tenants: Vec<TenantBootstrap>,
    /// X.509 chain verification: its bounds and thread pool (`[attestation]`).
    pub attestation: AttestationLimits,
    /// Request limits per tenant and per source address (429 with `Retry-After` beyond).
    pub throttling: ThrottlingConfig,
    /// Timeouts and connection caps of every listener (`[connections]`).
    pub connections: ConnectionLimits,
    /// Where calls to tenant-chosen URLs (the allocation webhook) may go
    /// (`[egress]`; default: public addresses over https only).
    pub egress: EgressConfig,
    /// The admin listener: health and readiness (`[admin]`).
    pub admin: AdminConfig,
    /// How log lines are written (`[log]`).
    pub log: LogConfig,
    /// What `/metrics` labels (`[metrics]`).
    pub metrics: MetricsConfig,
}

/// A tenant declared in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBootstrap {
    /// Tenant name.
    pub name: String,
    /// Host name of its service endpoint (default `{name}.{service.host_suffix}`).
    #[serde(default)]
    pub service_host_name: Option<String>,
    /// Fixed ID scope (default: generated once).
    #[serde(default)]
    pub id_scope: Option<String>,
    /// Hubs to link (by host name and connection string).
    #[serde(default)]
    pub linked_hubs: Vec<LinkedHubBootstrap>,
}

/// A linked hub declared in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedHubBootstrap {
    /// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.
    pub connection_string: String,
    /// Weight for evenly weighted distribution.
    #[serde(default = "one")]
    pub allocation_weight: u32,
    /// Region for lowest-latency allocation.
    #[serde(default)]
    pub location: Option<String>,
}

fn one() -> u32 {
    1
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            data_dir: PathBuf::from("data"),
            storage_url: None,
            device: DeviceEndpointConfig::default(),
            service: ServiceEndpointConfig::default(),
            tls: TlsSettings::default(),
            hubs: HubConnectionConfig::default(),
            allocation: AllocationConfig::default(),
            operator_key: None,
            tenants: Vec::new(),
            attestation: AttestationLimits::default(),
            throttling: ThrottlingConfig::default(),
            connections: ConnectionLimits::default(),
            egress: EgressConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// The device endpoint. The default is an unprivileged loopback port; the
/// official SDKs always dial port 443, so deployments listen there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceEndpointConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Host (`name[:port]`) written into `Location` headers. Default: the
    /// first DNS or IP name of the server certificate, with the listener's
    /// port unless 443 — never the request's `Host`.
    pub public_host: Option<String>,
    /// How far ahead a device token's `se` may lie, in seconds (symmetric
    /// key and TPM); beyond it the token is refused.
    pub max_token_lifetime_seconds: u64,
    /// `Retry-After` seconds on `202 assigning` (HTTPS header, MQTT `retry-after`).
    pub retry_after_seconds: u64,
    /// The MQTT device endpoint (`[device.mqtt]`).
    pub mqtt: MqttConfig,
    /// The AMQP device endpoint (`[device.amqp]`).
    pub amqp: AmqpConfig,
}

impl Default for DeviceEndpointConfig {
    fn default() -> Self {
        DeviceEndpointConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_host: None,
            max_token_lifetime_seconds: DEFAULT_DEVICE_TOKEN_LIFETIME_SECS,
            retry_after_seconds: 1,
            mqtt: MqttConfig::default(),
            amqp: AmqpConfig::default(),
        }
    }
}

/// The MQTT device endpoint: MQTT 3.1.1 over TLS on its own port, and MQTT
/// over WebSocket on the HTTPS device port (official SDKs dial 8883 and 443).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Serve MQTT at all (both forms).
    pub enabled: bool,
    /// MQTT over TLS address. Default: the device endpoint's IP address with
    /// port 8883 (so `0.0.0.0:8883`), or port 0 when the device endpoint
    /// itself listens on port 0 (tests).
    pub listen: Option<SocketAddr>,
    /// Accept MQTT over WebSocket on the HTTPS device endpoint.
    pub websocket: bool,
    /// Largest MQTT packet accepted, in bytes: the 96 KiB body limit plus room
    /// for the topic. A larger packet closes the connection.
    pub max_packet_bytes: usize,
    /// Time from TCP connection (after TLS) to CONNECT, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Requests of one connection in the pipeline at once; more are answered 429.
    pub max_in_flight: usize,
    /// 429 answers one connection may collect before it is closed (a flood).
    pub max_throttled_replies: u32,
    /// Open connections per registration id; a newer one closes the oldest.
    pub max_connections_per_registration: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            listen: None,
            websocket: true,
            max_packet_bytes: crate::respond::MAX_BODY_BYTES + 2048,
            connect_timeout_ms: 10_000,
            max_in_flight: 4,
            max_throttled_replies: 16,
            max_connections_per_registration: 2,
        }
    }
}

impl MqttConfig {
    /// The MQTT-over-TLS address, given the device endpoint's.
    pub fn listen_addr(&self, device_listen: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = if device_listen.port() == 0 { 0 } else { 8883 };
            SocketAddr::new(device_listen.ip(), port)
        })
    }
}

/// The service operations endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceEndpointConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Suffix of generated tenant host names: `{tenant}.{suffix}`.
    pub host_suffix: String,
    /// How far ahead a service-API token's `se` may lie, in seconds (tenant
    /// policies and the operator).
    pub max_token_lifetime_seconds: u64,
    /// Host names an operator token's `sr` may name (any `:port` ignored).
    /// Empty: the server certificate's DNS and IP names and the service
    /// listen address.
    pub operator_audience: Vec<String>,
}

impl Default for ServiceEndpointConfig {
    fn default() -> Self {
        ServiceEndpointConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9443)),
            host_suffix: "localhost".to_owned(),
            max_token_lifetime_seconds: DEFAULT_SERVICE_TOKEN_LIFETIME_SECS,
            operator_audience: Vec::new(),
        }
    }
}

/// How linked hubs are reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConnectionConfig {
    /// Extra PEM files of CAs trusted for hub TLS (e.g. the hub emulator's).
    pub trusted_ca_files: Vec<PathBuf>,
    /// Host name → address overrides (like curl's `--resolve`), for hubs whose
    /// names do not resolve to where they run (development, tests).
    pub resolve: BTreeMap<String, SocketAddr>,
    /// How long one hub call may take in all, retries of transient
    /// failures included, in milliseconds.
    pub request_timeout_ms: u64,
}

impl ServiceConfig {
    /// Read a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ServiceError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServiceError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ServiceError> {
        let config: ServiceConfig = toml::from_str(text).map_err(|e| ServiceError::Config {
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ServiceError> {
        // Port 0 asks for an ephemeral port: two of them never collide.
        if self.device.listen.port() != 0 && self.device.listen == self.service.listen {
            return Err(ServiceError::Config {
                reason: "device.listen and service.listen must differ".to_owned(),
            });
        }
        if !(1..=300).contains(&self.device.retry_after_seconds) {
            return Err(ServiceError::Config {
                reason: "device.retry_after_seconds must be between 1 and 300".to_owned(),
            });
        }
        let mqtt = &self.device.mqtt;
        if mqtt.enabled {
            let addr = mqtt.listen_addr(self.device.listen);
            if addr.port() != 0 && (addr == self.device.listen || addr == self.service.listen) {
                return Err(ServiceError::Config {
                    reason: "device.mqtt.listen must differ from the HTTPS listen addresses"
                        .to_owned(),
                });
            }
            if mqtt.max_packet_bytes < 1024 {
                return Err(ServiceError::Config {
                    reason: "device.mqtt.max_packet_bytes must be at least 1024".to_owned(),
                });
            }
            if mqtt.max_in_flight == 0 || mqtt.max_connections_per_registration == 0 {
                return Err(ServiceError::Config {
                    reason: "device.mqtt.max_in_flight and max_connections_per_registration must be at least 1"
                        .to_owned(),
                });
            }
            if mqtt.connect_timeout_ms == 0 {
                return Err(ServiceError::Config {
                    reason: "device.mqtt.connect_timeout_ms must be at least 1".to_owned(),
                });
            }
        }
        let mut taken = vec![self.service.listen];
        if mqtt.enabled {
            taken.push(mqtt.listen_addr(self.device.listen));
        }
        self.device.amqp.validate(self.device.listen, &taken)?;
        self.egress.validate()?;
        self.connections.validate()?;
        self.throttling.validate()?;
        self.validate_credentials()?;
        self.attestation.validate()?;
        self.allocation.geo_latency.validate()
    }

    /// The storage URL, defaulting to SQLite in the data directory.
    pub fn storage_url(&self) -> String {
        self.storage_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("dps.db").display()))
    }

    /// The hub request timeout.
    pub fn hub_timeout(&self) -> Duration {
        Duration::from_millis(if self.hubs.request_timeout_ms == 0 {
            10_000
        } else {
            self.hubs.request_timeout_ms
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let config = ServiceConfig::from_toml("").unwrap();
        assert_eq!(config, ServiceConfig::default());
        assert_eq!(config.device.retry_after_seconds, 1);
        assert!(config.storage_url().starts_with("sqlite://"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = ServiceConfig::from_toml("bogus = 1").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = ServiceConfig::from_toml("[device]\nretry_after_seconds = 0").unwrap_err();
        assert!(err.to_string().contains("retry_after_seconds"), "{err}");
    }

    #[test]
    fn mqtt_section_defaults_and_overrides() {
        let config = ServiceConfig::default();
        assert_eq!(
            config.device.mqtt.listen_addr(config.device.listen),
            "127.0.0.1:8883".parse().unwrap()
        );
        let config = ServiceConfig::from_toml(
            "[device]\nlisten = \"127.0.0.9:443\"\n[device.mqtt]\nmax_in_flight = 8\n",
        )
        .unwrap();
        assert_eq!(
            config.device.mqtt.listen_addr(config.device.listen),
            "127.0.0.9:8883".parse().unwrap()
        );
        assert_eq!(config.device.mqtt.max_in_flight, 8);
        let ephemeral: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(config.device.mqtt.listen_addr(ephemeral).port(), 0);
        let err = ServiceConfig::from_toml("[device.mqtt]\nmax_in_flight = 0\n").unwrap_err();
        assert!(err.to_string().contains("max_in_flight"), "{err}");
        let err =
            ServiceConfig::from_toml("[device.mqtt]\nlisten = \"127.0.0.1:8443\"\n").unwrap_err();
        assert!(err.to_string().contains("mqtt.listen"), "{err}");
    }

    #[test]
    fn geo_latency_keys_round_trip_and_are_checked() {
        let defaults = ServiceConfig::default().allocation.geo_latency;
        assert_eq!(defaults.tie_tolerance(), Duration::from_millis(5));
        assert_eq!(defaults.prober().unwrap().interval, Duration::from_secs(30));
        let config = ServiceConfig::from_toml(
            r#"
            [allocation.geo_latency]
            tie_tolerance_ms = 10
            [allocation.geo_latency.table]
            default_region = "europe"
            ranges = [{ cidr = "10.1.0.0/16", region = "us" }]
            round_trips = [
              { region = "us", location = "westus", ms = 20 },
              { region = "Europe", location = "westeurope", ms = 15 },
            ]
            [allocation.geo_latency.probe]
            enabled = false
            interval_ms = 1000
            "#,
        )
        .unwrap();
        let geo = &config.allocation.geo_latency;
        assert_eq!(geo.tie_tolerance(), Duration::from_millis(10));
        assert_eq!(geo.probe.connect_timeout_ms, 2_000);
        assert!(geo.prober().is_none());
        let table = geo.table().unwrap();
        assert_eq!(
            table.region_of(Some("10.1.2.3".parse().unwrap())),
            Some("us")
        );
        assert_eq!(
            table.region_of(Some("192.0.2.1".parse().unwrap())),
            Some("europe")
        );
        let text = toml::to_string(&config).unwrap();
        assert_eq!(ServiceConfig::from_toml(&text).unwrap(), config);

        let table = "[allocation.geo_latency.table]\n";
        for (toml, error) in [
            (
                "ranges = [{ cidr = \"10.0.0.0/33\", region = \"us\" }]",
                "table.ranges[0].cidr: invalid CIDR range \"10.0.0.0/33\"",
            ),
            (
                "ranges = [{ cidr = \"10.0.0.0/8\", region = \"us\" }]\n\
                 round_trips = [{ region = \"asia\", location = \"eastasia\", ms = 5 }]",
                "table.round_trips[0].region: \"asia\" is not the region",
            ),
            (
                "ranges = [{ cidr = \"10.0.0.0/8\", region = \" \" }]",
                "table.ranges[0].region: must not be empty",
            ),
            ("regions = []", "regions"),
        ] {
            let err = ServiceConfig::from_toml(&format!("{table}{toml}")).unwrap_err();
            assert!(err.to_string().contains(error), "{err}");
        }
        let err = ServiceConfig::from_toml("[allocation.geo_latency.probe]\ninterval_ms = 10")
            .unwrap_err();
        assert!(err.to_string().contains("probe.interval_ms"), "{err}");
    }

    #[test]
    fn resolve_overrides_parse() {
        let config =
            ServiceConfig::from_toml("[hubs.resolve]\n\"hub-a.example\" = \"127.0.0.1:9443\"\n")
                .unwrap();
        assert_eq!(
            config.hubs.resolve["hub-a.example"],
            "127.0.0.1:9443".parse().unwrap()
        );
    }
}
