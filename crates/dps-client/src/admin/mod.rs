//! Administering a provisioning service through its service operations API:
//! enrollments and groups, registration records, linked hubs, access
//! policies, CA certificates, certificate issuance (tenant CAs, credential
//! policies, issued certificates), settings, the operations report, and — with
//! the operator key — tenants. The library behind `dps-admin`.
//!
//! ```no_run
//! # async fn run() -> Result<(), dps_client::ClientError> {
//! use dps_client::admin::{AdminClient, Collection, ConnectionString, Credentials, ListOptions};
//! use dps_client::TlsTrust;
//!
//! let connection = ConnectionString::parse("HostName=factory.dps.example.com;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…")?;
//! // The token's audience is the HostName; requests may go elsewhere.
//! let client = AdminClient::new("10.0.0.5:443", Credentials::Policy(connection),
//!     &TlsTrust::new(true, &[std::fs::read_to_string("ca.pem").unwrap_or_default()])?)?;
//! let listing = client.list(Collection::Enrollments, &ListOptions::default()).await?;
//! for enrollment in &listing.items {
//!     println!("{}", enrollment["registrationId"]);
//! }
//! # Ok(()) }
//! ```
//!
//! Records travel as [`serde_json::Value`], exactly as the service wrote
//! them: an administrator's tool must neither drop fields it does not know
//! nor refuse records a newer server writes. Failures are [`ClientError`]s;
//! [`describe`] words one for a person, with what to do next (a stale etag
//! says so and how to retry).
//!
//! Only documented Azure routes are used for enrollments, groups and
//! registration records, so those commands work against the cloud service
//! too; settings, linked hubs, policies, certificates, the report and
//! tenants are dps's own routes (`docs/service-api.md`).

mod authorities;
pub mod bulk;
mod credentials;
mod explain;
pub mod profile;
mod records;
mod settings;
mod spec;
pub mod table;

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

pub use authorities::CertificateAuthoritySource;
pub use credentials::{
    compute_device_key, device_token, parse_key, ConnectionString, Credentials, OPERATOR_POLICY,
};
pub use explain::{describe, status_of};
pub use profile::{Connection, ConnectionOptions};
pub use records::{BulkMode, Collection, ListOptions, Listing, MAX_PAGE_SIZE};
pub use settings::KeyType;
pub use spec::{AttestationType, RecordSpec, ReprovisionPolicy};

use crate::http::encode;
use crate::{ClientError, TlsTrust};

/// The api-version sent.
pub const SERVICE_API_VERSION: &str = "2021-10-01";

/// Lifetime of the token signed for each request.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Attempts of a request the service throttled (429) or could not take
/// (503); those answers mean nothing was done, so repeating is safe.
const ATTEMPTS: u32 = 8;

/// Longest `Retry-After` honoured between attempts.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// A client of one service endpoint, signing every request.
#[derive(Debug, Clone)]
pub struct AdminClient {
    endpoint: String,
    credentials: Credentials,
    http: reqwest::Client,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status (2xx).
    pub status: u16,
    /// The `ETag` header, unquoted.
    pub etag: Option<String>,
    /// The `x-ms-continuation` header (another page follows).
    pub continuation: Option<String>,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

/// One request.
#[derive(Debug)]
struct Call<'a> {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<&'a Value>,
    if_match: Option<&'a str>,
    page_size: Option<u32>,
    continuation: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            if_match: None,
            page_size: None,
            continuation: None,
        }
    }

    fn body(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }

    fn if_match(mut self, etag: Option<&'a str>) -> Self {
        self.if_match = etag;
        self
    }
}

impl AdminClient {
    /// Requests go to `endpoint` (`host[:port]`, or an `https://` URL);
    /// `trust` says which server certificates are accepted.
    pub fn new(
        endpoint: impl Into<String>,
        credentials: Credentials,
        trust: &TlsTrust,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.into();
        let endpoint = endpoint
            .trim()
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        if endpoint.is_empty() || endpoint.contains('/') {
            return Err(credentials::config(format!(
                "endpoint {endpoint:?}: expected HOST[:PORT]"
            )));
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(trust.client_config(None)?)
            .http1_only()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| credentials::config(format!("HTTP client: {e}")))?;
        Ok(AdminClient {
            endpoint,
            credentials,
            http,
        })
    }

    /// Where requests go, `host[:port]`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What signs the requests.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// `GET {path}` (segments already encoded).
    async fn get(&self, path: String) -> Result<Answer, ClientError> {
        self.call(Call::new(Method::GET, path)).await
    }

    /// `PUT {path}` with a JSON body.
    async fn put(
        &self,
        path: String,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Answer, ClientError> {
        self.call(Call::new(Method::PUT, path).body(body).if_match(if_match))
            .await
    }

    /// `DELETE {path}`.
    async fn delete(&self, path: String, if_match: Option<&str>) -> Result<(), ClientError> {
        self.call(Call::new(Method::DELETE, path).if_match(if_match))
            .await
            .map(drop)
    }

    async fn call(&self, call: Call<'_>) -> Result<Answer, ClientError> {
        let url = format!("https://{}/{}", self.endpoint, call.path);
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(call.method.clone(), &url)
                .query(&[("api-version", SERVICE_API_VERSION)])
                .query(&call.query)
                .header(
                    "authorization",
                    self.credentials.token(&self.endpoint, TOKEN_LIFETIME),
                )
                .header("accept", "application/json");
            if let Some(body) = call.body {
                request = request.json(body);
            } else if call.method == Method::POST {
                request = request.header("content-length", "0");
            }
            if let Some(etag) = call.if_match {
                request = request.header("if-match", quote(etag));
            }
            if let Some(size) = call.page_size {
                request = request.header("x-ms-max-item-count", size.to_string());
            }
            if let Some(token) = call.continuation {
                request = request.header("x-ms-continuation", token);
            }
            let response = request.send().await.map_err(|e| ClientError::Network {
                endpoint: self.endpoint.clone(),
                reason: error_chain(&e),
            })?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let etag = header("etag").map(|tag| unquote(&tag).to_owned());
            let continuation = header("x-ms-continuation").filter(|t| !t.is_empty());
            let retry_after = header("retry-after").and_then(|s| s.trim().parse::<u64>().ok());
            let text = response.text().await.map_err(|e| ClientError::Network {
                endpoint: self.endpoint.clone(),
                reason: error_chain(&e),
            })?;
            if (200..300).contains(&status) {
                let body = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).map_err(|e| {
                        ClientError::protocol(format!(
                            "{} {}: not JSON: {e}",
                            call.method, call.path
                        ))
                    })?
                };
                return Ok(Answer {
                    status,
                    etag,
                    continuation,
                    body,
                });
            }
            if matches!(status, 429 | 503) && attempt < ATTEMPTS {
                let wait = Duration::from_secs(retry_after.unwrap_or(1)).min(MAX_RETRY_AFTER);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Err(ClientError::from_answer(status, &text));
        }
    }
}

/// An etag as `If-Match` wants it: quoted (the service also takes it bare
/// or with `W/`).
fn quote(etag: &str) -> String {
    format!("\"{}\"", unquote(etag))
}

fn unquote(etag: &str) -> &str {
    etag.trim().trim_start_matches("W/").trim_matches('"')
}

/// `{collection}/{id}` with the id percent-encoded.
fn path(collection: &str, id: &str) -> String {
    format!("{collection}/{}", encode(id))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_sent_quoted_whatever_form_they_came_in() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("\"abc\""), "\"abc\"");
        assert_eq!(quote("W/\"abc\""), "\"abc\"");
    }

    #[test]
    fn service_errors_keep_the_azure_code_and_message() {
        let error = ClientError::from_answer(
            412,
            r#"{"errorCode":412001,"message":"Precondition failed.","trackingId":"t"}"#,
        );
        assert!(matches!(
            error,
            ClientError::Service { status: 412, error_code: Some(412001), ref message } if message == "Precondition failed."
        ));
        assert!(matches!(
            ClientError::from_answer(401, "{}"),
            ClientError::Authentication {
                status: 401,
                error_code: None,
                ..
            }
        ));
        assert!(matches!(
            ClientError::from_answer(502, "bad gateway"),
            ClientError::Service { status: 502, error_code: None, ref message } if message == "bad gateway"
        ));
    }

    #[test]
    fn endpoints_are_host_and_port() {
        let trust = TlsTrust::new(false, &[] as &[&str]).unwrap();
        let operator = || Credentials::operator("k");
        let client = AdminClient::new("https://127.0.0.1:9443/", operator(), &trust).unwrap();
        assert_eq!(client.endpoint(), "127.0.0.1:9443");
        assert!(AdminClient::new("host/path", operator(), &trust).is_err());
        assert!(AdminClient::new(" ", operator(), &trust).is_err());
    }
}
