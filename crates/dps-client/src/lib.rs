//! `dps-client`: provision a device against any Device Provisioning Service
//! that speaks the Azure device protocol (HTTPS, MQTT or AMQP) — dps, or the
//! Azure cloud service.
//!
//! ```no_run
//! # async fn run() -> Result<(), dps_client::ClientError> {
//! use std::sync::Arc;
//! use dps_client::{ClientError, Credential, ProvisioningClient, Tpm2Tools};
//!
//! // Pick the device's credential: an individual key, a group key (the device
//! // key is derived from it), an X.509 certificate chain, or a TPM.
//! let credential = match std::env::var("DEVICE_KIND").as_deref() {
//!     Ok("group") => Credential::group_key("<base64 group key>", "my-device")?,
//!     Ok("x509") => Credential::X509 {
//!         chain_pem: std::fs::read_to_string("device-chain.pem").unwrap_or_default(),
//!         key_pem: std::fs::read_to_string("device.key").unwrap_or_default(),
//!     },
//!     Ok("tpm") => Credential::Tpm(Arc::new(Tpm2Tools::new("device:/dev/tpmrm0")?)),
//!     _ => Credential::symmetric_key("<base64 device key>")?,
//! };
//! let client = ProvisioningClient::builder("dps.example.com", "0ne00000A0A", "my-device")
//!     .credential(credential)
//!     .trust_ca_pem(std::fs::read_to_string("dps-ca.pem").unwrap_or_default())
//!     .payload(serde_json::json!({"model": "sensor-v2"}))
//!     .build()?;
//! match client.register().await {
//!     Ok(registration) => {
//!         println!("assigned to {} as {}", registration.assigned_hub, registration.device_id);
//!         if let Some(connection_string) = registration.hub_connection_string {
//!             println!("connect with {connection_string}");
//!         }
//!     }
//!     // Each failure says whose fault it is.
//!     Err(ClientError::Authentication { error_code, .. }) => eprintln!("refused ({error_code:?}): check the key"),
//!     Err(ClientError::Disabled) => eprintln!("the enrollment is disabled"),
//!     Err(error) if error.is_transient() => eprintln!("try again later: {error}"),
//!     Err(error) => eprintln!("{error}"),
//! }
//! # Ok(()) }
//! ```
//!
//! * Credentials: symmetric key (individual, or derived from a group key),
//!   X.509 (chain + key presented as the TLS client certificate), TPM (through
//!   the [`TpmDevice`] trait; [`Tpm2Tools`] implements it over tpm2-tools).
//! * The register → poll loop honours `Retry-After` within an overall timeout;
//!   TPM devices answer the service's 401 challenge (activate, import, sign)
//!   and import the hub key delivered with the assignment.
//! * [`ClientError`] tells authentication, network, service, failed
//!   registration, disabled enrollment and timeout apart.
//! * Trust roots: the web PKI roots (webpki-roots), plus any CA given with
//!   [`ProvisioningClientBuilder::trust_ca_pem`]; or a [`TlsTrust`] parsed once
//!   and shared by many clients.
//! * [`swarm`] provisions thousands of devices for load tests; [`service`]
//!   creates their enrollments through the service API.
//! * [`admin`] is the whole service API for administrators (the library
//!   behind `dps-admin`).
//!
//! Every [`ProvisioningClient`] owns its connection: one client per device
//! means one TLS connection per device (HTTP/1.1, as the device SDKs speak;
//! no session resumption), as a real device has.
//!
//! [`Transport`] picks HTTPS (default), MQTT over TLS, MQTT over WebSocket,
//! AMQP 1.0 over TLS or AMQP over WebSocket with
//! [`ProvisioningClientBuilder::transport`]; the endpoint's port, when
//! absent, is the transport's usual one (443, 8883, 443, 5671, 443). Every
//! credential works over AMQP, TPM included (its challenge travels in SASL).
//!
//! # Why tpm2-tools for the TPM
//!
//! The TPM operations run the tpm2-tools programs rather than linking the
//! TSS through `tss-esapi`: that crate needs the C TSS libraries and their
//! headers at build time, so every build of this crate — and of everything
//! depending on it, TPM or not — would need them installed. tpm2-tools is a
//! run-time dependency of TPM devices only, packaged everywhere, and works
//! with any TCTI (`device:`, `tabrmd`, `swtpm:`, `mssim:`); each command runs
//! with a time limit. A provisioning runs about a dozen TPM commands, so the
//! process-per-command cost (milliseconds) does not matter.
//!
//! # Certificate issuance
//!
//! [`ProvisioningClientBuilder::issue_certificate`] makes the device
//! generate a key pair (ECDSA P-256 by default, or RSA-2048) and a PKCS#10
//! request at every [`ProvisioningClient::register`], send it as the
//! register body's `csr` over any transport, and return the chain the
//! service issued with the private key ([`Registration::issued_certificate`]).
//! The device then authenticates to its hub with that certificate. The
//! `csr` field exists from api-version `2025-07-01-preview`; a client left
//! at the default [`API_VERSION`] sends [`ISSUANCE_API_VERSION`] instead.
//!
//! # What this crate does not do
//!
//! Connecting to the IoT hub after provisioning.

#![deny(missing_docs)]

pub mod admin;
mod amqp;
mod credential;
mod dial;
mod error;
mod http;
mod issuance;
mod mqtt;
mod result;
pub mod service;
pub mod swarm;
mod tls;
mod tpm;
pub mod tpm2_tools;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use credential::Credential;
pub use error::ClientError;
pub use issuance::{CertificateRequest, IssuedCertificate, KeyType, ISSUANCE_API_VERSION};
pub use mqtt::Transport;
pub use result::Registration;
pub use tls::TlsTrust;
pub use tpm::TpmDevice;
pub use tpm2_tools::Tpm2Tools;

/// The device api-version the client speaks.
pub const API_VERSION: &str = "2021-06-01";

/// A configured device, ready to register.
#[derive(Debug)]
pub struct ProvisioningClient {
    endpoint: String,
    id_scope: String,
    registration_id: String,
    credential: Credential,
    payload: Option<Value>,
    api_version: String,
    timeout: Duration,
    request_timeout: Duration,
    token_lifetime: Duration,
    poll_interval_override: Option<Duration>,
    last_retry_after: Mutex<Duration>,
    http: reqwest::Client,
    transport: Transport,
    /// The TLS of the stream transports (MQTT, AMQP); `None` for HTTPS.
    stream_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    issuance: Option<Issuance>,
}

/// How a client asks for a certificate.
#[derive(Clone, Debug)]
enum Issuance {
    /// A fresh key pair and request at every registration (rollover).
    Generate(KeyType),
    /// The same request (and key) at every registration.
    Prepared(CertificateRequest),
}

impl ProvisioningClient {
    /// Start configuring a device: `endpoint` is the host (optionally
    /// `host:port`) of the device endpoint.
    pub fn builder(
        endpoint: impl Into<String>,
        id_scope: impl Into<String>,
        registration_id: impl Into<String>,
    ) -> ProvisioningClientBuilder {
        ProvisioningClientBuilder {
            endpoint: endpoint.into(),
            id_scope: id_scope.into(),
            registration_id: registration_id.into(),
            credential: None,
            payload: None,
            trusted_ca_pems: Vec::new(),
            system_roots: true,
            trust: None,
            timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            token_lifetime: Duration::from_secs(3600),
            poll_interval: None,
            api_version: API_VERSION.to_owned(),
            transport: Transport::Https,
            issuance: None,
        }
    }

    /// Register and wait until the service reports a terminal state. With
    /// [`ProvisioningClientBuilder::issue_certificate`], the registration
    /// carries a certificate request and the result the issued certificate.
    pub async fn register(&self) -> Result<Registration, ClientError> {
        let request = self.certificate_request().await?;
        let body = self.register_body(request.as_ref());
        let deadline = Instant::now() + self.timeout;
        let registration = if let Some(tls) = &self.stream_tls {
            let websocket = matches!(self.transport, Transport::MqttWs | Transport::AmqpWs);
            if matches!(self.transport, Transport::Amqp | Transport::AmqpWs) {
                amqp::Exchange {
                    client: self,
                    tls: tls.clone(),
                    websocket,
                    deadline,
                    body: &body,
                }
                .run()
                .await?
            } else {
                mqtt::Exchange {
                    client: self,
                    tls: tls.clone(),
                    websocket,
                    deadline,
                    body: &body,
                }
                .run()
                .await?
            }
        } else {
            http::Exchange {
                client: self,
                http: &self.http,
                deadline,
                body: &body,
            }
            .run()
            .await?
        };
        match &request {
            Some(request) => registration.with_issued_certificate(request),
            None => Ok(registration),
        }
    }

    /// The register request's body, shared by every transport: the
    /// registration id, the webhook payload, and the certificate request
    /// (`csr`, base64 DER) when one is made.
    pub(crate) fn register_body(&self, request: Option<&CertificateRequest>) -> Value {
        let mut body = serde_json::json!({ "registrationId": self.registration_id });
        if let Some(payload) = &self.payload {
            body["payload"] = payload.clone();
        }
        if let Some(request) = request {
            body["csr"] = Value::String(request.csr_base64());
        }
        body
    }

    /// This registration's certificate request, if the device asks for one
    /// (RSA keys are generated off the runtime's threads).
    async fn certificate_request(&self) -> Result<Option<CertificateRequest>, ClientError> {
        match &self.issuance {
            None => Ok(None),
            Some(Issuance::Prepared(request)) => Ok(Some(request.clone())),
            Some(Issuance::Generate(key_type)) => {
                let (key_type, id) = (*key_type, self.registration_id.clone());
                tokio::task::spawn_blocking(move || CertificateRequest::generate(key_type, &id))
                    .await
                    .map_err(|e| ClientError::Config {
                        reason: format!("the key generation task failed: {e}"),
                    })?
                    .map(Some)
            }
        }
    }

    /// Sleep `duration` between requests of a registration that must end by
    /// `deadline`; the timeout error, without sleeping, if it would not.
    pub(crate) async fn pause(
        &self,
        deadline: Instant,
        duration: Duration,
    ) -> Result<(), ClientError> {
        if duration.is_zero() {
            return Ok(());
        }
        if Instant::now() + duration > deadline {
            return Err(ClientError::Timeout {
                seconds: self.timeout.as_secs(),
            });
        }
        tokio::time::sleep(duration).await;
        Ok(())
    }

    /// Run one step of a stream transport's exchange (connect, a request
    /// and its answer) within the per-request limit and the overall
    /// `deadline`: running out of the whole time is the timeout error,
    /// running out of the request's alone is a network error.
    pub(crate) async fn bounded<T>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let timeout = || ClientError::Timeout {
            seconds: self.timeout.as_secs(),
        };
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(timeout)?;
        let limit = remaining.min(self.request_timeout);
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) if limit < self.request_timeout => Err(timeout()),
            Err(_) => Err(ClientError::Network {
                endpoint: self.endpoint.clone(),
                reason: format!("no answer within {:?}", self.request_timeout),
            }),
        }
    }

    /// Wait as the service asked (`retry-after`; 1 s when it said nothing)
    /// within sane bounds: a `retry-after` of 0 must not become a busy
    /// loop, nor a huge one a hang.
    pub(crate) async fn pause_as_asked(
        &self,
        deadline: Instant,
        retry_after: Option<Duration>,
    ) -> Result<(), ClientError> {
        const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
        let duration = retry_after
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(100), MAX_RETRY_AFTER);
        self.pause(deadline, duration).await
    }
}

/// Builder of a [`ProvisioningClient`].
#[derive(Debug)]
pub struct ProvisioningClientBuilder {
    endpoint: String,
    id_scope: String,
    registration_id: String,
    credential: Option<Credential>,
    payload: Option<Value>,
    trusted_ca_pems: Vec<String>,
    system_roots: bool,
    trust: Option<TlsTrust>,
    timeout: Duration,
    request_timeout: Duration,
    token_lifetime: Duration,
    poll_interval: Option<Duration>,
    api_version: String,
    transport: Transport,
    issuance: Option<Issuance>,
}

impl ProvisioningClientBuilder {
    /// How the device proves who it is (required).
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Data for a custom allocation webhook.
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Trust this CA (PEM) in addition to (or instead of) the system roots.
    pub fn trust_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.trusted_ca_pems.push(pem.into());
        self
    }

    /// Whether the system's web PKI roots are trusted (default true).
    pub fn system_roots(mut self, enabled: bool) -> Self {
        self.system_roots = enabled;
        self
    }

    /// Use trust roots parsed once and shared by many clients (a swarm);
    /// replaces [`Self::trust_ca_pem`] and [`Self::system_roots`].
    pub fn trust(mut self, trust: TlsTrust) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Limit for the whole register → assigned exchange (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limit for each HTTP request (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Poll at this interval instead of the service's `Retry-After`.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// The device api-version to send (default [`API_VERSION`]).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// How to talk to the service (default [`Transport::Https`]).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Ask for an operational certificate at every registration: a fresh
    /// key pair of `key_type` and a request (CN = the registration id) are
    /// made each time, so registering again rolls the certificate over.
    pub fn issue_certificate(mut self, key_type: KeyType) -> Self {
        self.issuance = Some(Issuance::Generate(key_type));
        self
    }

    /// Ask for a certificate with a request made beforehand (its CN must be
    /// the registration id); every registration sends the same request.
    pub fn certificate_request(mut self, request: CertificateRequest) -> Self {
        self.issuance = Some(Issuance::Prepared(request));
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<ProvisioningClient, ClientError> {
        let config = |reason: String| ClientError::Config { reason };
        let credential = self
            .credential
            .ok_or_else(|| config("a credential is required".to_owned()))?;
        let api_version = match &self.issuance {
            Some(_)
                if !dps_model::certificate_issuance::api_version_supports_issuance(
                    &self.api_version,
                ) =>
            {
                if self.api_version != API_VERSION {
                    return Err(config(format!(
                        "api-version {} has no certificate issuance (csr); use {} or later",
                        self.api_version,
                        dps_model::certificate_issuance::FIRST_ISSUANCE_API_VERSION
                    )));
                }
                ISSUANCE_API_VERSION.to_owned()
            }
            _ => self.api_version,
        };
        let trust = match self.trust {
            Some(trust) => trust,
            None => TlsTrust::new(self.system_roots, &self.trusted_ca_pems)?,
        };
        let stream_tls = match self.transport {
            Transport::Https => None,
            Transport::Mqtt | Transport::MqttWs => Some(mqtt::tls_config(&trust, &credential)?),
            Transport::Amqp | Transport::AmqpWs => Some(dial::stream_tls(&trust, &credential)?),
        };
        let identity = match &credential {
            Credential::X509 { chain_pem, key_pem } => Some((chain_pem.as_str(), key_pem.as_str())),
            _ => None,
        };
        let http = trust.http_client(identity)?;
        Ok(ProvisioningClient {
            endpoint: self.endpoint,
            id_scope: self.id_scope,
            registration_id: self.registration_id,
            credential,
            payload: self.payload,
            api_version,
            timeout: self.timeout,
            request_timeout: self.request_timeout,
            token_lifetime: self.token_lifetime,
            poll_interval_override: self.poll_interval,
            last_retry_after: Mutex::new(Duration::from_secs(1)),
            http,
            transport: self.transport,
            stream_tls,
            issuance: self.issuance,
        })
    }
}
