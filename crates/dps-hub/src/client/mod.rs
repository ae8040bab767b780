//! [`HubClient`]: [`IotHub`] over the IoT Hub registry REST API.

mod bulk;
mod options;
mod reply;
mod token;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use dps_model::DeviceId;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use reqwest::Method;
use serde::de::DeserializeOwned;

pub use options::{HubClientOptions, API_VERSION};
pub(crate) use reply::{error_from_reply, error_from_status};

use crate::hub::{IfMatch, IotHub};
use crate::wire::{
    BulkRegistryOperationResult, Device, ExportImportDevice, RegistryStatistics, Twin,
};
use crate::{ConnectionString, HubError};
use token::TokenCache;

/// What `encodeURIComponent` leaves alone; device ids may hold `% ? $ ' ( ) , : = @`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

const JSON: &str = "application/json; charset=utf-8";

/// A client for one IoT hub, authenticated from its service connection string.
///
/// Cheap to share (`Arc`); the underlying HTTP client keeps connections alive
/// and may be shared between the clients of several hubs (see
/// [`crate::HubDirectory`]). Throttling (429), server failures (5xx) and
/// transport failures are retried with exponential backoff, honouring
/// `Retry-After`, until [`HubClientOptions::retry_deadline`].
pub struct HubClient {
    http: reqwest::Client,
    connection: ConnectionString,
    base_url: String,
    tokens: TokenCache,
    request_timeout: Duration,
    retry_deadline: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("host", &self.connection.host_name())
            .field("policy", &self.connection.key_name())
            .finish_non_exhaustive()
    }
}

/// A successful reply: status and body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl HubClient {
    /// A client with its own HTTP client built from `options`.
    pub fn new(connection: ConnectionString, options: &HubClientOptions) -> Result<Self, HubError> {
        Ok(Self::with_http_client(
            connection,
            options.build_http_client()?,
            options,
        ))
    }

    /// Parse the connection string, then [`HubClient::new`].
    pub fn from_connection_string(
        connection_string: &str,
        options: &HubClientOptions,
    ) -> Result<Self, HubError> {
        Self::new(ConnectionString::parse(connection_string)?, options)
    }

    /// A client over an existing HTTP client (built with
    /// [`HubClientOptions::build_http_client`] or otherwise); `options` supply
    /// the timeouts, retries and token lifetime.
    pub fn with_http_client(
        connection: ConnectionString,
        http: reqwest::Client,
        options: &HubClientOptions,
    ) -> Self {
        HubClient {
            http,
            base_url: format!("https://{}", connection.host_name()),
            tokens: TokenCache::new(options.token_lifetime),
            connection,
            request_timeout: options.request_timeout,
            retry_deadline: options.retry_deadline,
            initial_backoff: options.initial_backoff,
            max_backoff: options.max_backoff,
        }
    }

    /// The connection string this client authenticates with.
    pub fn connection_string(&self) -> &ConnectionString {
        &self.connection
    }

    /// `GET /devices?top=N`: up to `top` device identities.
    pub async fn list_devices(&self, top: u32) -> Result<Vec<Device>, HubError> {
        let reply = self
            .send(
                Method::GET,
                format!("/devices?top={top}&"),
                None,
                &IfMatch::None,
                None,
            )
            .await?;
        self.parse(reply)
    }

    /// `GET /statistics/devices`.
    pub async fn statistics(&self) -> Result<RegistryStatistics, HubError> {
        let reply = self
            .send(
                Method::GET,
                "/statistics/devices?".to_owned(),
                None,
                &IfMatch::None,
                None,
            )
            .await?;
        self.parse(reply)
    }

    fn path(collection: &str, id: &str) -> String {
        format!("/{collection}/{}?", utf8_percent_encode(id, PATH_SEGMENT))
    }

    fn parse<T: DeserializeOwned>(&self, reply: Reply) -> Result<T, HubError> {
        serde_json::from_slice(&reply.body).map_err(|err| HubError::InvalidResponse {
            host: self.host_name().to_owned(),
            status: reply.status,
            reason: format!("body is not the expected JSON: {err}"),
        })
    }

    fn to_json(&self, value: &impl serde::Serialize) -> Result<Vec<u8>, HubError> {
        serde_json::to_vec(value).map_err(|err| HubError::InvalidOptions {
            reason: format!("cannot serialize the request body: {err}"),
        })
    }

    /// One request with retries. `path_and_query` ends in `?` or `&`; the
    /// api-version is appended.
    async fn send(
        &self,
        method: Method,
        path_and_query: String,
        body: Option<Vec<u8>>,
        if_match: &IfMatch,
        device_id: Option<&str>,
    ) -> Result<Reply, HubError> {
        self.send_accepting(method, path_and_query, body, if_match, device_id, &[])
            .await
    }

    /// [`HubClient::send`], also handing back replies with a status in
    /// `accept` (the bulk call's `400` carries per-device results).
    async fn send_accepting(
        &self,
        method: Method,
        path_and_query: String,
        body: Option<Vec<u8>>,
        if_match: &IfMatch,
        device_id: Option<&str>,
        accept: &[u16],
    ) -> Result<Reply, HubError> {
        let url = format!("{}{path_and_query}api-version={API_VERSION}", self.base_url);
        let started = Instant::now();
        let deadline = started + self.retry_deadline;
        let mut attempt: u32 = 0;
        loop {
            // Later attempts must not run past the deadline; the first one gets
            // its full time even when the deadline is shorter.
            let timeout = if attempt == 0 {
                self.request_timeout
            } else {
                self.request_timeout
                    .min(deadline.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(50))
            };
            let result = self
                .send_once(
                    &method,
                    &url,
                    body.as_deref(),
                    if_match,
                    device_id,
                    timeout,
                    accept,
                )
                .await;
            let err = match result {
                Ok(reply) => return Ok(reply),
                Err(err) if err.is_retryable() => err,
                Err(err) => return Err(err),
            };
            let delay = match &err {
                HubError::Throttled {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => self.backoff(attempt),
            };
            if Instant::now() + delay >= deadline {
                tracing::debug!(host = self.host_name(), attempts = attempt + 1, error = %err, "hub retries exhausted");
                return Err(err);
            }
            tracing::debug!(host = self.host_name(), attempt, ?delay, error = %err, "retrying hub request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        // Jitter in [50%, 100%] so many registrations don't retry in lockstep.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        exp.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
    }

    // One attempt of `send_accepting`, which owns every parameter; bundling
    // them into a struct for this private step would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        body: Option<&[u8]>,
        if_match: &IfMatch,
        device_id: Option<&str>,
        timeout: Duration,
        accept: &[u16],
    ) -> Result<Reply, HubError> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(timeout)
            .header(AUTHORIZATION, self.tokens.header(&self.connection))
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(value) = if_match.header_value() {
            request = request.header(IF_MATCH, value);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static(JSON))
                .body(body.to_vec());
        }
        let response = request.send().await.map_err(|err| self.transport(err))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|err| self.transport(err))?
            .to_vec();
        if (200..300).contains(&status) || accept.contains(&status) {
            return Ok(Reply { status, body });
        }
        Err(error_from_reply(
            self.host_name(),
            status,
            &headers,
            &body,
            device_id.unwrap_or_default(),
        ))
    }

    fn transport(&self, err: reqwest::Error) -> HubError {
        let mut reason = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        HubError::Transport {
            host: self.host_name().to_owned(),
            timed_out: err.is_timeout(),
            reason,
        }
    }
}

#[async_trait]
impl IotHub for HubClient {
    fn host_name(&self) -> &str {
        self.connection.host_name()
    }

    async fn put_device(&self, device: &Device, if_match: IfMatch) -> Result<Device, HubError> {
        let body = self.to_json(device)?;
        let reply = self
            .send(
                Method::PUT,
                Self::path("devices", &device.device_id),
                Some(body),
                &if_match,
                Some(&device.device_id),
            )
            .await?;
        self.parse(reply)
    }

    async fn bulk_registry(
        &self,
        devices: &[ExportImportDevice],
    ) -> Result<BulkRegistryOperationResult, HubError> {
        self.post_bulk(devices).await
    }

    async fn get_device(&self, device_id: &DeviceId) -> Result<Device, HubError> {
        let id = device_id.as_str();
        let reply = self
            .send(
                Method::GET,
                Self::path("devices", id),
                None,
                &IfMatch::None,
                Some(id),
            )
            .await?;
        self.parse(reply)
    }

    async fn delete_device(&self, device_id: &DeviceId, if_match: IfMatch) -> Result<(), HubError> {
        let id = device_id.as_str();
        self.send(
            Method::DELETE,
            Self::path("devices", id),
            None,
            &if_match,
            Some(id),
        )
        .await?;
        Ok(())
    }

    async fn get_twin(&self, device_id: &DeviceId) -> Result<Twin, HubError> {
        let id = device_id.as_str();
        let reply = self
            .send(
                Method::GET,
                Self::path("twins", id),
                None,
                &IfMatch::None,
                Some(id),
            )
            .await?;
        self.parse(reply)
    }

    async fn replace_twin(
        &self,
        device_id: &DeviceId,
        twin: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError> {
        let id = device_id.as_str();
        let body = self.to_json(twin)?;
        let reply = self
            .send(
                Method::PUT,
                Self::path("twins", id),
                Some(body),
                &if_match,
                Some(id),
            )
            .await?;
        self.parse(reply)
    }

    async fn patch_twin(
        &self,
        device_id: &DeviceId,
        patch: &Twin,
        if_match: IfMatch,
    ) -> Result<Twin, HubError> {
        let id = device_id.as_str();
        let body = self.to_json(patch)?;
        let reply = self
            .send(
                Method::PATCH,
                Self::path("twins", id),
                Some(body),
                &if_match,
                Some(id),
            )
            .await?;
        self.parse(reply)
    }
}
