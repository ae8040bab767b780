//! `custom`: a webhook chooses the hub (spec §5).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dps_model::enrollment::EnrollmentRef;
use dps_model::{AllocationPolicy, InitialTwin};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::egress::SystemLookup;
use crate::egress::{EgressPolicy, EgressRefusal, EgressResolver, EgressTarget, HostLookup};
use crate::request::{Allocation, AllocationRequest, Policy};
use crate::AllocationError;

/// How the webhook is called.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Limit for the whole call, name lookup and connect to last body byte
    /// (default 5 s).
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the public web roots (for
    /// private webhooks and tests).
    pub extra_root_certificates_pem: Vec<Vec<u8>>,
    /// Largest accepted response body (default 64 KiB: an allocation answer
    /// is a hub name, a twin and a payload; the device API takes 96 KiB).
    pub max_response_bytes: usize,
    /// Which addresses and schemes may be called (default: public
    /// addresses over https only).
    pub egress: EgressPolicy,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(5),
            extra_root_certificates_pem: Vec::new(),
            max_response_bytes: 64 * 1024,
            egress: EgressPolicy::default(),
        }
    }
}

/// POSTs the allocation request to the enrollment's
/// `customAllocationDefinition.webhookUrl` and takes the hub, the optional
/// initial twin and the optional payload from the answer.
///
/// The URL is the tenant's choice, so every call goes through the
/// [`EgressPolicy`]: the URL is checked statically (scheme, literal
/// address), names are resolved through an [`EgressResolver`] that drops
/// refused addresses, no proxy is used (it would resolve for us) and no
/// redirect is followed. Two HTTP clients (rustls, connection pools) serve
/// every call: one https-only, one for plain http, whose resolver also
/// requires the policy's http networks.
///
/// Each failure becomes its own [`AllocationError`] variant whose message
/// names the class of failure and the webhook's host — never its URL (the
/// query string carries the function key) and never what it answered (a
/// DEBUG log gets the first 200 characters).
#[derive(Clone, Debug)]
pub struct WebhookPolicy {
    https: reqwest::Client,
    http: reqwest::Client,
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
    /// A policy with its own HTTP clients, resolving names with the system
    /// resolver.
    pub fn new(config: WebhookConfig) -> Result<WebhookPolicy, AllocationError> {
        WebhookPolicy::with_lookup(config, Arc::new(SystemLookup))
    }

    /// A policy resolving names with `lookup` (still filtered by the
    /// egress policy).
    pub fn with_lookup(
        config: WebhookConfig,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<WebhookPolicy, AllocationError> {
        let egress = Arc::new(config.egress.clone());
        let https = client(
            &config,
            EgressResolver::new(egress.clone(), lookup.clone(), false),
        )?
        .https_only(true);
        let http = client(&config, EgressResolver::new(egress, lookup, true))?;
        let build = |builder: reqwest::ClientBuilder| {
            builder.build().map_err(|err| AllocationError::HttpClient {
                cause: error_chain(&err),
            })
        };
        Ok(WebhookPolicy {
            https: build(https)?,
            http: build(http)?,
            config,
        })
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
        target: &EgressTarget,
        body: &Value,
    ) -> Result<(u16, Vec<u8>), AllocationError> {
        let host = target.host();
        let failed = |err: reqwest::Error| {
            let err = err.without_url();
            if let Some(reason) = egress_refusal(&err) {
                return AllocationError::WebhookEgressRefused {
                    host: host.to_owned(),
                    reason,
                };
            }
            tracing::debug!(
                webhook = %host,
                timed_out = err.is_timeout(),
                cause = %error_chain(&err),
                "custom allocation webhook unreachable"
            );
            AllocationError::WebhookUnreachable {
                host: host.to_owned(),
                timeout: self.config.timeout,
            }
        };
        let client = if target.plain_http() {
            &self.http
        } else {
            &self.https
        };
        let limit = self.config.max_response_bytes;
        let too_large = || AllocationError::WebhookResponseTooLarge {
            host: host.to_owned(),
            limit,
        };
        let mut response = client
            .post(target.url().clone())
            .timeout(self.config.timeout)
            .json(body)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    }
}

/// The client builder both clients share: no proxy (a proxy would resolve
/// the name itself, past the policy), no redirects (the target would escape
/// the check), names through the policy's resolver.
fn client(
    config: &WebhookConfig,
    resolver: EgressResolver,
) -> Result<reqwest::ClientBuilder, AllocationError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(resolver))
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
    Ok(builder)
}

/// The egress refusal behind a failed request, if that is what it was
/// (the resolver's error arrives wrapped by hyper and reqwest).
fn egress_refusal(err: &(dyn std::error::Error + 'static)) -> Option<EgressRefusal> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(refusal) = e.downcast_ref::<EgressRefusal>() {
            return Some(refusal.clone());
        }
        current = e.source();
    }
    None
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
        let target = EgressTarget::parse(&definition.webhook_url).map_err(|reason| {
            AllocationError::WebhookUrlInvalid {
                reason: match reason {
                    EgressRefusal::InvalidUrl { reason } => reason,
                    other => other.to_string(),
                },
            }
        })?;
        let host = target.host().to_owned();
        if let Err(reason) = self.config.egress.check_target(&target) {
            tracing::warn!(webhook = %host, %reason, "egress policy refused a custom allocation webhook");
            return Err(AllocationError::WebhookEgressRefused { host, reason });
        }
        let body = WebhookPolicy::request_body(request);
        let (status, bytes) = self.call(&target, &body).await?;
        tracing::debug!(webhook = %host, status, "custom allocation webhook answered");

        if !(200..=299).contains(&status) {
            // The answer may come from anything the URL reaches: operators
            // see its start at DEBUG, tenants and devices only the status.
            tracing::debug!(webhook = %host, status, body = %excerpt(&bytes), "custom allocation webhook failed");
            return Err(match status {
                300..=399 => AllocationError::WebhookRedirected { host, status },
                401 | 403 => AllocationError::WebhookUnauthorized { host, status },
                _ => AllocationError::WebhookStatus { host, status },
            });
        }
        let answer = parse_answer(&host, &bytes)?;
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

/// The 2xx answer as JSON. Failures say what is wrong in fixed words and
/// at most the field path: serde's own messages quote the offending values.
fn parse_answer(host: &str, bytes: &[u8]) -> Result<WebhookResponse, AllocationError> {
    let malformed = |cause: String, detail: &dyn std::fmt::Display| {
        tracing::debug!(webhook = %host, %detail, body = %excerpt(bytes), "custom allocation webhook answer unusable");
        AllocationError::WebhookMalformedResponse {
            host: host.to_owned(),
            cause,
        }
    };
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => {
            return Err(malformed("the body is empty".to_owned(), &"empty"))
        }
        Err(err) => return Err(malformed("the body is not valid JSON".to_owned(), &err)),
    };
    // serde would also read a JSON array positionally into the struct.
    if !value.is_object() {
        return Err(malformed(
            "the body is not a JSON object".to_owned(),
            &"not an object",
        ));
    }
    dps_model::from_json(bytes).map_err(|err| {
        let cause = match &err {
            dps_model::ModelError::Json { path, .. } if path != "." => {
                let path: String = path.chars().take(100).collect();
                format!("unexpected value at `{path}`")
            }
            _ => "the body is not an allocation result".to_owned(),
        };
        malformed(cause, &err)
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
        let host = |url: &str| EgressTarget::parse(url).map(|t| t.host().to_owned());
        assert_eq!(
            host("https://fn.example.net/api/alloc?code=SECRET").unwrap(),
            "fn.example.net"
        );
        assert_eq!(
            host("http://127.0.0.1:8080/x?code=SECRET").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(host("https://[::1]:8443/x").unwrap(), "[::1]:8443");
        for bad in ["ftp://h/x?code=SECRET", "not a url ?code=SECRET"] {
            let err = host(bad).unwrap_err();
            assert!(!err.to_string().contains("SECRET"), "{err}");
            assert!(matches!(err, EgressRefusal::InvalidUrl { .. }), "{err:?}");
        }
    }

    #[test]
    fn answers_are_judged_without_quoting_them() {
        let cause = |body: &str| match parse_answer("h", body.as_bytes()) {
            Err(AllocationError::WebhookMalformedResponse { cause, .. }) => cause,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(cause("<html>SECRET</html>"), "the body is not valid JSON");
        assert_eq!(cause(" \n"), "the body is empty");
        assert_eq!(cause(r#"["SECRET"]"#), "the body is not a JSON object");
        assert_eq!(
            cause(r#"{"iotHubHostName":{"SECRET":1}}"#),
            "unexpected value at `iotHubHostName`"
        );
        let answer = parse_answer("h", br#"{"iotHubHostName":"hub","extra":"x"}"#).unwrap();
        assert_eq!(answer.iot_hub_host_name.as_deref(), Some("hub"));
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
