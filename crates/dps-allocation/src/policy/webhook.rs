//! `custom`: a webhook chooses the hub (spec §5).

use std::time::Duration;

use async_trait::async_trait;
use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, InitialTwin};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::request::{Allocation, AllocationRequest, Policy};
use crate::AllocationError;

/// How the webhook is called.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Limit for the whole call, connect to last body byte (default 5 s).
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the public web roots (for
    /// private webhooks and tests).
    pub extra_root_certificates_pem: Vec<Vec<u8>>,
    /// Largest accepted response body (default 256 KiB).
    pub max_response_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(5),
            extra_root_certificates_pem: Vec::new(),
            max_response_bytes: 256 * 1024,
        }
    }
}

/// POSTs the allocation request to the enrollment's
/// `customAllocationDefinition.webhookUrl` and takes the hub, the optional
/// initial twin and the optional payload from the answer.
///
/// One HTTP client (rustls, connection pool) serves every call. Each failure
/// becomes its own [`AllocationError`] variant whose message names the cause
/// — timeout (with the limit), refused connection, status code with the
/// start of the body, unparsable JSON (with the field), a hub that is
/// missing or was not offered — and the webhook's host, never its URL (the
/// query string carries the function key).
#[derive(Clone, Debug)]
pub struct WebhookPolicy {
    client: reqwest::Client,
    config: WebhookConfig,
}

/// The webhook's answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookResponse {
    #[serde(default)]
    iot_hub_host_name: Option<String>,
    #[serde(default)]
    initial_twin: Option<InitialTwin>,
    #[serde(default)]
    payload: Option<Value>,
}

impl WebhookPolicy {
    /// A policy with its own HTTP client.
    pub fn new(config: WebhookConfig) -> Result<WebhookPolicy, AllocationError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .pool_idle_timeout(Duration::from_secs(90));
        for (i, pem) in config.extra_root_certificates_pem.iter().enumerate() {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|err| {
                AllocationError::HttpClient {
                    cause: format!("extra root certificate #{i}: {}", error_chain(&err)),
                }
            })?;
            if certificates.is_empty() {
                return Err(AllocationError::HttpClient {
                    cause: format!("extra root certificate #{i}: no PEM certificate found"),
                });
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|err| AllocationError::HttpClient {
            cause: error_chain(&err),
        })?;
        Ok(WebhookPolicy { client, config })
    }

    /// The JSON body sent to the webhook for `request` (spec §5): the
    /// enrollment under `individualEnrollment` or `enrollmentGroup` with its
    /// attestation reduced to its `type` (no keys, no certificates),
    /// `deviceRuntimeContext`, and `linkedHubs` (the candidate hubs).
    pub fn request_body(request: &AllocationRequest<'_>) -> Value {
        let mut body = Map::new();
        let (member, enrollment) = match request.enrollment {
            EnrollmentRef::Individual(e) => ("individualEnrollment", serde_json::to_value(e)),
            EnrollmentRef::Group(g) => ("enrollmentGroup", serde_json::to_value(g)),
        };
        let mut enrollment = enrollment.unwrap_or(Value::Null);
        if let Some(record) = enrollment.as_object_mut() {
            let kind = request.enrollment.as_enrollment().attestation().kind;
            let mut attestation = Map::new();
            attestation.insert(
                "type".to_owned(),
                serde_json::to_value(kind).unwrap_or(Value::Null),
            );
            record.insert("attestation".to_owned(), Value::Object(attestation));
            record.remove("registrationState");
        }
        body.insert(member.to_owned(), enrollment);

        let device = &request.device;
        let mut context = Map::new();
        context.insert(
            "registrationId".to_owned(),
            Value::String(request.registration_id.as_str().to_owned()),
        );
        if let Some(hub) = device.current_hub {
            context.insert(
                "currentIotHubHostName".to_owned(),
                Value::String(hub.to_owned()),
            );
        }
        if let Some(id) = device.current_device_id {
            context.insert("currentDeviceId".to_owned(), Value::String(id.to_owned()));
        }
        let (name, attestation) = device.attestation.to_json();
        context.insert(name.to_owned(), attestation);
        if let Some(payload) = device.payload {
            context.insert("payload".to_owned(), payload.clone());
        }
        body.insert("deviceRuntimeContext".to_owned(), Value::Object(context));

        let linked = request
            .candidates
            .hubs
            .iter()
            .map(|i| Value::String(request.hubs.get(i).host_name().to_owned()))
            .collect();
        body.insert("linkedHubs".to_owned(), Value::Array(linked));
        Value::Object(body)
    }

    async fn call(
        &self,
        url: &str,
        host: &str,
        body: &Value,
    ) -> Result<(u16, Vec<u8>), AllocationError> {
        let send_error = |err: reqwest::Error| {
            if err.is_timeout() {
                AllocationError::WebhookTimeout {
                    host: host.to_owned(),
                    timeout: self.config.timeout,
                }
            } else {
                // reqwest's own top line ("error sending request") says
                // nothing the variant does not; its sources name the cause.
                let err = err.without_url();
                let cause = match std::error::Error::source(&err) {
                    Some(source) => error_chain(source),
                    None => err.to_string(),
                };
                AllocationError::WebhookUnreachable {
                    host: host.to_owned(),
                    cause,
                }
            }
        };
        let mut response = self
            .client
            .post(url)
            .timeout(self.config.timeout)
            .json(body)
            .send()
            .await
            .map_err(send_error)?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > self.config.max_response_bytes {
                        return Err(AllocationError::WebhookResponseTooLarge {
                            host: host.to_owned(),
                            limit: self.config.max_response_bytes,
                        });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) if err.is_timeout() => return Err(send_error(err)),
                Err(err) => {
                    return Err(AllocationError::WebhookMalformedResponse {
                        host: host.to_owned(),
                        cause: format!(
                            "the response body could not be read: {}",
                            error_chain(&err.without_url())
                        ),
                    })
                }
            }
        }
        Ok((status, bytes))
    }
}

#[async_trait]
impl Policy for WebhookPolicy {
    fn kind(&self) -> AllocationPolicy {
        AllocationPolicy::Custom
    }

    async fn allocate(
        &self,
        request: &AllocationRequest<'_>,
    ) -> Result<Allocation, AllocationError> {
        let definition = request
            .enrollment
            .as_enrollment()
            .custom_allocation_definition()
            .ok_or(AllocationError::CustomDefinitionMissing)?;
        let host = webhook_host(&definition.webhook_url)?;
        let body = WebhookPolicy::request_body(request);
        let (status, bytes) = self.call(&definition.webhook_url, &host, &body).await?;
        tracing::debug!(webhook = %host, status, "custom allocation webhook answered");

        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(AllocationError::WebhookUnauthorized {
                    host,
                    status,
                    body_excerpt: excerpt(&bytes),
                })
            }
            _ => {
                return Err(AllocationError::WebhookStatus {
                    host,
                    status,
                    body_excerpt: excerpt(&bytes),
                })
            }
        }

        // serde would also read a JSON array positionally into the struct.
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(_) => {
                return Err(AllocationError::WebhookMalformedResponse {
                    host,
                    cause: format!("expected a JSON object, got: {}", excerpt(&bytes)),
                })
            }
            None => {
                return Err(AllocationError::WebhookMalformedResponse {
                    host,
                    cause: "the body is empty".to_owned(),
                })
            }
        }
        let answer: WebhookResponse = dps_model::from_json(&bytes).map_err(|err| {
            AllocationError::WebhookMalformedResponse {
                host: host.clone(),
                cause: match err {
                    dps_model::ModelError::Json { path, message } if path == "." => message,
                    dps_model::ModelError::Json { path, message } => {
                        format!("at `{path}`: {message}")
                    }
                    other => other.to_string(),
                },
            }
        })?;
        let hub = match answer.iot_hub_host_name {
            Some(hub) if !hub.trim().is_empty() => hub,
            _ => return Err(AllocationError::WebhookHubMissing { host }),
        };
        let chosen = request
            .candidates
            .hubs
            .iter()
            .map(|i| request.hubs.get(i).host_name())
            .find(|name| name.eq_ignore_ascii_case(&hub));
        let Some(chosen) = chosen else {
            return Err(AllocationError::WebhookHubNotLinked {
                host,
                hub,
                linked: request.hubs.names(request.candidates.hubs),
            });
        };
        Ok(Allocation {
            hub_host_name: chosen.to_owned(),
            initial_twin: answer.initial_twin,
            payload: answer.payload.filter(|p| !p.is_null()),
        })
    }
}

/// `host[:port]` of the webhook URL, for messages (never the query string).
fn webhook_host(url: &str) -> Result<String, AllocationError> {
    let parsed = reqwest::Url::parse(url).map_err(|err| AllocationError::WebhookUrlInvalid {
        reason: err.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AllocationError::WebhookUrlInvalid {
            reason: format!("scheme {:?} is not http or https", parsed.scheme()),
        });
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| AllocationError::WebhookUrlInvalid {
            reason: "it has no host".to_owned(),
        })?;
    Ok(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// At most 200 characters of a body, on one line.
fn excerpt(bytes: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    if text.trim().chars().count() > MAX_CHARS {
        out.truncate(
            out.char_indices()
                .nth(MAX_CHARS - 1)
                .map_or(out.len(), |(i, _)| i),
        );
        out.push('…');
    }
    out
}

/// An error and its sources, `outer: inner: innermost`, without repeats
/// (hyper and reqwest often repeat their inner message).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_never_includes_the_key() {
        assert_eq!(
            webhook_host("https://fn.example.net/api/alloc?code=SECRET").unwrap(),
            "fn.example.net"
        );
        assert_eq!(
            webhook_host("http://127.0.0.1:8080/x?code=SECRET").unwrap(),
            "127.0.0.1:8080"
        );
        let err = webhook_host("ftp://h/x?code=SECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(matches!(err, AllocationError::WebhookUrlInvalid { .. }));
        let err = webhook_host("not a url ?code=SECRET").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn excerpt_is_bounded_and_single_line() {
        assert_eq!(excerpt(b"  no such device\r\n"), "no such device");
        let long = "é".repeat(500);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), 200);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(b"a\nb"), "a b");
    }
}
