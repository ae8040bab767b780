//! The device protocol over HTTPS (spec §1): register, then poll the
//! operation until it is terminal, honouring `Retry-After`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::sas::unix_now;
use dps_model::{RegistrationOperationStatus, RegistrationStatus};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

use crate::credential::Credential;
use crate::{ClientError, ProvisioningClient, Registration};

/// Longest wait the client honours between polls.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub(crate) struct Exchange<'a> {
    pub(crate) client: &'a ProvisioningClient,
    pub(crate) http: &'a Client,
    pub(crate) deadline: Instant,
    /// The register body ([`ProvisioningClient::register_body`]).
    pub(crate) body: &'a Value,
}

enum Signer<'a> {
    None,
    Key(&'a dps_attestation::sas::SymmetricKey),
    Tpm,
}

impl Exchange<'_> {
    pub(crate) async fn run(&self) -> Result<Registration, ClientError> {
        let c = self.client;
        let base = format!(
            "https://{}/{}/registrations/{}",
            c.endpoint,
            encode(&c.id_scope),
            encode(&c.registration_id)
        );
        let mut body = self.body.clone();
        let mut signer = match &c.credential {
            Credential::SymmetricKey(key) => Signer::Key(key),
            Credential::X509 { .. } => Signer::None,
            Credential::Tpm(tpm) => {
                let tpm = tpm.clone();
                let (ek, srk) =
                    blocking(move || Ok((tpm.endorsement_key()?, tpm.storage_root_key()?))).await?;
                body["tpm"] = json!({"endorsementKey": BASE64.encode(ek), "storageRootKey": BASE64.encode(srk)});
                Signer::None
            }
        };
        let register_url = format!("{base}/register?api-version={}", c.api_version);
        let status = loop {
            let token = self.token(&signer).await?;
            let response = self
                .send(self.http.put(&register_url).json(&body), token.as_deref())
                .await?;
            match response.status() {
                StatusCode::OK | StatusCode::ACCEPTED => {
                    break parse::<RegistrationOperationStatus>(response).await?;
                }
                StatusCode::UNAUTHORIZED
                    if matches!(c.credential, Credential::Tpm(_))
                        && matches!(signer, Signer::None) =>
                {
                    // A 401 with an activation blob is the challenge; any
                    // other 401 (unknown enrollment, wrong EK) is a refusal.
                    let text = response.text().await.unwrap_or_default();
                    let challenge: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let Some(blob) = challenge["authenticationKey"].as_str() else {
                        return Err(ClientError::from_answer(401, &text));
                    };
                    self.import(blob).await?;
                    signer = Signer::Tpm;
                }
                status if is_transient(status) => self.wait(retry_after(&response)).await?,
                _ => return Err(error_of(response).await),
            }
        };

        let mut status = status;
        while status.status == RegistrationStatus::Assigning
            || status.status == RegistrationStatus::Unassigned
        {
            self.wait(
                c.poll_interval_override
                    .unwrap_or(self.last_retry_after(&status)),
            )
            .await?;
            let url = format!(
                "{base}/operations/{}?api-version={}",
                encode(&status.operation_id),
                c.api_version
            );
            let token = self.token(&signer).await?;
            let response = self.send(self.http.get(&url), token.as_deref()).await?;
            match response.status() {
                StatusCode::OK | StatusCode::ACCEPTED => {
                    let next = parse::<RegistrationOperationStatus>(response).await?;
                    status = next;
                }
                s if is_transient(s) => self.wait(retry_after(&response)).await?,
                _ => return Err(error_of(response).await),
            }
        }
        self.finish(status).await
    }

    fn last_retry_after(&self, _status: &RegistrationOperationStatus) -> Duration {
        self.client
            .last_retry_after
            .lock()
            .map(|d| *d)
            .unwrap_or(Duration::from_secs(1))
    }

    async fn finish(
        &self,
        status: RegistrationOperationStatus,
    ) -> Result<Registration, ClientError> {
        if status.status == RegistrationStatus::Assigned {
            let tpm = status
                .registration_state
                .as_ref()
                .and_then(|s| s.tpm.as_ref());
            if let (Credential::Tpm(_), Some(tpm)) = (&self.client.credential, tpm) {
                self.import(&tpm.authentication_key).await?;
            }
        }
        Registration::from_status(status, &self.client.credential)
    }

    async fn import(&self, blob_b64: &str) -> Result<(), ClientError> {
        let Credential::Tpm(tpm) = &self.client.credential else {
            return Err(ClientError::protocol(
                "a TPM challenge for a device without a TPM",
            ));
        };
        let blob = BASE64
            .decode(blob_b64)
            .map_err(|_| ClientError::protocol("authenticationKey is not base64"))?;
        let tpm = tpm.clone();
        blocking(move || tpm.import_activation_blob(&blob)).await
    }

    async fn token(&self, signer: &Signer<'_>) -> Result<Option<String>, ClientError> {
        let c = self.client;
        let sr = encode(&format!(
            "{}/registrations/{}",
            c.id_scope, c.registration_id
        ));
        let se = unix_now() + c.token_lifetime.as_secs();
        let to_sign = format!("{sr}\n{se}");
        let signature = match signer {
            Signer::None => return Ok(None),
            Signer::Key(key) => key.sign(to_sign.as_bytes()),
            Signer::Tpm => {
                let Credential::Tpm(tpm) = &c.credential else {
                    return Ok(None);
                };
                let tpm = tpm.clone();
                BASE64.encode(blocking(move || tpm.hmac_sha256(to_sign.as_bytes())).await?)
            }
        };
        Ok(Some(format!(
            "SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration",
            encode(&signature)
        )))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> Result<Response, ClientError> {
        let remaining =
            self.deadline
                .checked_duration_since(Instant::now())
                .ok_or(ClientError::Timeout {
                    seconds: self.client.timeout.as_secs(),
                })?;
        // When the overall deadline is nearer than the per-request limit, a
        // timed-out request means the whole exchange ran out of time.
        let deadline_bound = remaining <= self.client.request_timeout;
        let mut request = request
            .header("accept", "application/json")
            .timeout(remaining.min(self.client.request_timeout));
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() && deadline_bound {
                ClientError::Timeout {
                    seconds: self.client.timeout.as_secs(),
                }
            } else {
                ClientError::Network {
                    endpoint: self.client.endpoint.clone(),
                    reason: error_chain(&e),
                }
            }
        })?;
        if let Some(after) = header_retry_after(&response) {
            if let Ok(mut last) = self.client.last_retry_after.lock() {
                *last = after;
            }
        }
        Ok(response)
    }

    async fn wait(&self, duration: Duration) -> Result<(), ClientError> {
        self.client.pause(self.deadline, duration).await
    }
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn header_retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).clamp(Duration::from_millis(100), MAX_RETRY_AFTER))
}

fn retry_after(response: &Response) -> Duration {
    header_retry_after(response).unwrap_or(Duration::from_secs(1))
}

async fn parse<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::protocol(e.to_string()))?;
    dps_model::from_json(&bytes).map_err(|e| ClientError::protocol(e.to_string()))
}

async fn error_of(response: Response) -> ClientError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    ClientError::from_answer(status, &text)
}

pub(crate) fn encode(segment: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(segment, KEEP).to_string()
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

/// Run blocking TPM work off the async runtime's threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClientError::Tpm {
            command: "(blocking task)".to_owned(),
            reason: format!("the TPM task failed: {e}"),
        })?
}
