//! How a [`crate::HubClient`] reaches hubs: trust, name resolution, timeouts, retries.

use std::net::SocketAddr;
use std::time::Duration;

use crate::HubError;

/// The IoT Hub REST api-version this client speaks.
pub const API_VERSION: &str = "2021-04-12";

/// Options shared by the clients of all linked hubs.
#[derive(Clone, Debug)]
pub struct HubClientOptions {
    /// Extra trusted root certificates (PEM text, one or more certificates
    /// each), e.g. the hub emulator's CA. The public web roots stay trusted.
    pub trusted_ca_pem: Vec<String>,
    /// Host names dialled at a fixed address instead of via DNS, e.g.
    /// `("hub-a.example", 127.0.0.1:8443)`. TLS still checks the certificate
    /// against the host name; the port given here is used unless the host name
    /// itself carries one.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Limit on one HTTP exchange (connect + request + reply).
    pub request_timeout: Duration,
    /// Limit on establishing a TCP connection.
    pub connect_timeout: Duration,
    /// Throttling, server and transport failures are retried until this much
    /// time has passed since the first attempt; then the last error is returned.
    pub retry_deadline: Duration,
    /// First retry delay; doubled per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest delay between two attempts (a hub's `Retry-After` may ask for more,
    /// and is honoured when the deadline allows).
    pub max_backoff: Duration,
    /// Lifetime of the SAS tokens signed with the hub policy key. A token is
    /// renewed once three quarters of it have passed.
    pub token_lifetime: Duration,
    /// Idle keep-alive connections are closed after this long.
    pub pool_idle_timeout: Duration,
}

impl Default for HubClientOptions {
    fn default() -> Self {
        HubClientOptions {
            trusted_ca_pem: Vec::new(),
            resolve: Vec::new(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            token_lifetime: Duration::from_secs(3600),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

impl HubClientOptions {
    /// Trust one more CA (PEM).
    pub fn trust_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.trusted_ca_pem.push(pem.into());
        self
    }

    /// Dial `host` at `addr`.
    pub fn resolve(mut self, host: impl Into<String>, addr: SocketAddr) -> Self {
        self.resolve.push((host.into(), addr));
        self
    }

    /// Set the retry deadline.
    pub fn retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry_deadline = deadline;
        self
    }

    /// Build the HTTP client these options describe (HTTPS only, rustls,
    /// HTTP/2 when the hub offers it, keep-alive pooling).
    pub fn build_http_client(&self) -> Result<reqwest::Client, HubError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("dps-hub/", env!("CARGO_PKG_VERSION")));
        for pem in &self.trusted_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|err| {
                HubError::InvalidOptions {
                    reason: format!("trusted CA is not PEM: {err}"),
                }
            })?;
            if certs.is_empty() {
                return Err(HubError::InvalidOptions {
                    reason: "trusted CA PEM holds no certificate".to_owned(),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        for (host, addr) in &self.resolve {
            builder = builder.resolve(host, *addr);
        }
        builder.build().map_err(|err| HubError::InvalidOptions {
            reason: format!("cannot build the HTTP client: {err}"),
        })
    }
}
