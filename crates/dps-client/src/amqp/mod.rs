//! The device protocol over AMQP 1.0 (docs/amqp.md): over TLS (default
//! port 5671) or over WebSocket over TLS (default port 443, path
//! `/$iothub/websocket`, subprotocol `AMQPWSB10`), speaking what the
//! official Node transport speaks:
//!
//! * symmetric key: SASL `PLAIN`, authcid `{idScope}/registrations/{id}`,
//!   the registration SAS token as password;
//! * X.509: no SASL at all, the certificate is the TLS client certificate;
//! * TPM: SASL `TPM`, whose challenges carry the encrypted key the TPM
//!   activates; the device answers with a token signed by that key.
//!
//! Then one session, a receiver and a sender link on
//! `{idScope}/registrations/{id}`, the register request and the polls as
//! messages correlated by a string `correlation-id`, and the replies read
//! back into HTTPS-shaped answers ([`reply`]).
//!
//! One connection per [`crate::ProvisioningClient::register`] call, closed
//! at the end. fe2o3-amqp does the framing, the session and the links.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dps_attestation::sas::unix_now;
use dps_model::{RegistrationOperationStatus, RegistrationStatus};
use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::link::SendError;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, OrderedMap, Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use rustls::ClientConfig;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

mod reply;
mod sasl;
mod ws;

use self::reply::{answer_of_rejection, answer_of_reply, correlation_id, Answer};
use self::sasl::Mechanism;
use crate::credential::Credential;
use crate::dial::Target;
use crate::http::{blocking, encode};
use crate::{ClientError, ProvisioningClient, Registration};

/// The default port of AMQP over TLS.
pub(crate) const AMQP_PORT: u16 = 5671;
/// The WebSocket subprotocol of AMQP (the SDKs' value).
const SUBPROTOCOL: &str = "AMQPWSB10";
/// How long closing the links, session and connection may take once the
/// registration has its outcome: the outcome does not wait on a slow peer.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The client version sent as a link property, as the SDKs send theirs.
const CLIENT_VERSION: &str = concat!("dps-client/", env!("CARGO_PKG_VERSION"));

/// One register → assigned exchange over one AMQP connection.
pub(crate) struct Exchange<'a> {
    pub(crate) client: &'a ProvisioningClient,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) websocket: bool,
    pub(crate) deadline: Instant,
    /// The register request's body (the TPM keys are added here).
    pub(crate) body: &'a serde_json::Value,
}

/// The TPM's public keys, read once per registration.
struct TpmKeys {
    endorsement_key: Vec<u8>,
    storage_root_key: Vec<u8>,
}

impl Exchange<'_> {
    pub(crate) async fn run(&self) -> Result<Registration, ClientError> {
        let c = self.client;
        let keys = match &c.credential {
            Credential::Tpm(tpm) => {
                let tpm = tpm.clone();
                Some(
                    blocking(move || {
                        Ok(TpmKeys {
                            endorsement_key: tpm.endorsement_key()?,
                            storage_root_key: tpm.storage_root_key()?,
                        })
                    })
                    .await?,
                )
            }
            _ => None,
        };
        let default_port = if self.websocket { 443 } else { AMQP_PORT };
        let target = Target::new(&c.endpoint, default_port);
        let tls = self.bounded(target.tls(self.tls.clone())).await?;
        if self.websocket {
            let ws = self.bounded(target.websocket(tls, SUBPROTOCOL)).await?;
            self.over(ws::WsBytes::new(ws), &target, keys.as_ref())
                .await
        } else {
            self.over(tls, &target, keys.as_ref()).await
        }
    }

    /// SASL (or none), the AMQP connection, and the registration over it.
    async fn over<S>(
        &self,
        mut stream: S,
        target: &Target<'_>,
        keys: Option<&TpmKeys>,
    ) -> Result<Registration, ClientError>
    where
        S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
    {
        let c = self.client;
        let address = format!("{}/registrations/{}", c.id_scope, c.registration_id);
        match (&c.credential, keys) {
            (Credential::SymmetricKey(key), _) => {
                let (se, to_sign) = self.to_sign();
                let token = self.token(se, key.sign(to_sign.as_bytes()));
                let mechanism = Mechanism::Plain {
                    username: &address,
                    password: &token,
                };
                let no_key = |_| async { Err(ClientError::protocol("a key challenge for PLAIN")) };
                self.bounded(sasl::negotiate(
                    &mut stream,
                    &target.host,
                    mechanism,
                    no_key,
                ))
                .await?;
            }
            (Credential::Tpm(_), Some(keys)) => {
                let mechanism = Mechanism::Tpm {
                    scope: &c.id_scope,
                    registration_id: &c.registration_id,
                    endorsement_key: &keys.endorsement_key,
                    storage_root_key: &keys.storage_root_key,
                };
                let answer = |key: Vec<u8>| self.answer_tpm_challenge(key);
                self.bounded(sasl::negotiate(
                    &mut stream,
                    &target.host,
                    mechanism,
                    answer,
                ))
                .await?;
            }
            // X.509: no SASL layer, as the SDKs connect.
            _ => {}
        }
        let connection = self
            .bounded(async {
                Connection::builder()
                    .container_id(container_id())
                    .hostname(target.host.as_str())
                    .scheme("amqp")
                    .open_with_stream(stream)
                    .await
                    .map_err(|e| match e {
                        OpenError::ProtocolHeaderMismatch(header) => {
                            sasl::unexpected_header(&header)
                        }
                        e => target.network(format!("AMQP open: {e}")),
                    })
            })
            .await?;
        let mut parts = Parts {
            connection,
            session: None,
            receiver: None,
            sender: None,
        };
        let result = self.on_connection(&mut parts, &address, keys).await;
        // The outcome is known: the close handshake (detach, end, close,
        // each answered by the service) goes on without the caller, as an
        // MQTT device's DISCONNECT or an HTTPS client's dropped connection
        // does not make it wait either.
        tokio::spawn(parts.close());
        result
    }

    async fn on_connection(
        &self,
        parts: &mut Parts,
        address: &str,
        keys: Option<&TpmKeys>,
    ) -> Result<Registration, ClientError> {
        let network = |what: &str, e: &dyn std::fmt::Display| ClientError::Network {
            endpoint: self.client.endpoint.clone(),
            reason: format!("{what}: {e}"),
        };
        let session = self
            .bounded(async {
                Session::begin(&mut parts.connection)
                    .await
                    .map_err(|e| network("AMQP begin", &e))
            })
            .await?;
        let session = parts.session.insert(session);
        // The receiver first, as the SDKs attach: the reply link must be
        // there before a request can be answered.
        let receiver = self
            .bounded(async {
                Receiver::builder()
                    .name(format!("dps-client-receiver-{}", container_id()))
                    .source(address)
                    .properties(self.link_properties())
                    .verify_incoming_source(false)
                    .verify_incoming_target(false)
                    .attach(session)
                    .await
                    .map_err(|e| refused_attach("receiver", &e))
            })
            .await?;
        let receiver = parts.receiver.insert(receiver);
        let sender = self
            .bounded(async {
                Sender::builder()
                    .name(format!("dps-client-sender-{}", container_id()))
                    .target(address)
                    .properties(self.link_properties())
                    .verify_incoming_source(false)
                    .verify_incoming_target(false)
                    .attach(session)
                    .await
                    .map_err(|e| refused_attach("sender", &e))
            })
            .await?;
        let mut link = Link {
            sender: parts.sender.insert(sender),
            receiver,
            next: 0,
        };
        tracing::debug!(address, "AMQP links attached");
        self.provision(&mut link, keys).await
    }

    async fn provision(
        &self,
        link: &mut Link<'_>,
        keys: Option<&TpmKeys>,
    ) -> Result<Registration, ClientError> {
        let c = self.client;
        let mut body = self.body.clone();
        if let Some(keys) = keys {
            body["tpm"] = json!({
                "endorsementKey": BASE64.encode(&keys.endorsement_key),
                "storageRootKey": BASE64.encode(&keys.storage_root_key),
            });
        }
        let body = body.to_string().into_bytes();
        let (mut status, mut retry_after) = loop {
            let register = ApplicationProperties::builder()
                .insert("iotdps-operation-type", "iotdps-register")
                .insert("iotdps-forceRegistration", false)
                .build();
            let data = Body::Data(vec![Data(Binary::from(body.clone()))].into());
            let answer = self.request(link, register, data).await?;
            match answer.status {
                200 | 202 => break (parse_status(&answer.body)?, answer.retry_after),
                s if is_transient(s) => self.wait(answer.retry_after).await?,
                _ => return Err(ClientError::from_answer(answer.status, &text(&answer))),
            }
        };
        while matches!(
            status.status,
            RegistrationStatus::Assigning | RegistrationStatus::Unassigned
        ) {
            match c.poll_interval_override {
                Some(interval) => c.pause(self.deadline, interval).await?,
                None => self.wait(retry_after).await?,
            }
            let poll = ApplicationProperties::builder()
                .insert("iotdps-operation-type", "iotdps-get-operationstatus")
                .insert("iotdps-operation-id", status.operation_id.as_str())
                .build();
            // The Node SDK's poll body: an amqp-value holding an empty string.
            let empty = Body::Value(AmqpValue(Value::String(String::new())));
            let answer = self.request(link, poll, empty).await?;
            match answer.status {
                200 | 202 => {
                    status = parse_status(&answer.body)?;
                    retry_after = answer.retry_after;
                }
                s if is_transient(s) => retry_after = answer.retry_after,
                _ => return Err(ClientError::from_answer(answer.status, &text(&answer))),
            }
        }
        if status.status == RegistrationStatus::Assigned {
            // TPM: the assignment carries the hub key, imported into the TPM.
            let hub_key = status
                .registration_state
                .as_ref()
                .and_then(|s| s.tpm.as_ref())
                .map(|t| t.authentication_key.clone());
            if let (Credential::Tpm(tpm), Some(blob)) = (&c.credential, hub_key) {
                let blob = BASE64
                    .decode(blob)
                    .map_err(|_| ClientError::protocol("authenticationKey is not base64"))?;
                let tpm = tpm.clone();
                blocking(move || tpm.import_activation_blob(&blob)).await?;
            }
        }
        Registration::from_status(status, &c.credential)
    }

    /// Send one request and wait for its answer: the reply with its
    /// correlation id, or the rejection of the request itself.
    async fn request(
        &self,
        link: &mut Link<'_>,
        operation: ApplicationProperties,
        body: Body<Value>,
    ) -> Result<Answer, ClientError> {
        link.next += 1;
        let id = format!("{}-{}", container_id(), link.next);
        let message = Message::builder()
            .properties(
                Properties::builder()
                    .correlation_id(MessageId::String(id.clone()))
                    .build(),
            )
            .application_properties(operation)
            .body(body)
            .build();
        let endpoint = &self.client.endpoint;
        let broken = |what: &str, e: &dyn std::fmt::Display| ClientError::Network {
            endpoint: endpoint.clone(),
            reason: format!("{what}: {e}"),
        };
        self.bounded(async {
            let outcome = link.sender.send(message).await;
            tracing::debug!(correlation_id = %id, ?outcome, "AMQP request settled");
            match outcome {
                Ok(Outcome::Accepted(_)) => {}
                Ok(Outcome::Rejected(rejected)) => {
                    return Ok(answer_of_rejection(rejected.error.as_ref()))
                }
                // Released or modified: not processed, try again later.
                Ok(other) => {
                    return Ok(Answer {
                        status: 503,
                        retry_after: None,
                        body: format!("{{\"message\":\"the request was {other:?}\"}}").into_bytes(),
                    })
                }
                Err(SendError::Detached(e)) => {
                    return Err(broken("the request link was detached", &e))
                }
                Err(e) => return Err(broken("sending the request", &e)),
            }
            loop {
                let delivery = link
                    .receiver
                    .recv::<Body<Value>>()
                    .await
                    .map_err(|e| broken("receiving the reply", &e))?;
                link.receiver
                    .accept(&delivery)
                    .await
                    .map_err(|e| broken("accepting the reply", &e))?;
                if correlation_id(delivery.message()) == Some(id.as_str()) {
                    return Ok(answer_of_reply(delivery.message()));
                }
            }
        })
        .await
    }

    /// The link properties the SDKs send: the api-version and who we are.
    fn link_properties(&self) -> OrderedMap<Symbol, Value> {
        let mut properties = OrderedMap::new();
        properties.insert(
            Symbol::from("com.microsoft:api-version"),
            Value::String(self.client.api_version.clone()),
        );
        properties.insert(
            Symbol::from("com.microsoft:client-version"),
            Value::String(CLIENT_VERSION.to_owned()),
        );
        properties
    }

    /// The TPM's answer to the key challenge: activate the key, sign a token.
    async fn answer_tpm_challenge(&self, key: Vec<u8>) -> Result<String, ClientError> {
        let Credential::Tpm(tpm) = &self.client.credential else {
            return Err(ClientError::protocol(
                "a TPM challenge for a device without a TPM",
            ));
        };
        let (tpm, (se, to_sign)) = (tpm.clone(), self.to_sign());
        let signature = blocking(move || {
            tpm.import_activation_blob(&key)?;
            tpm.hmac_sha256(to_sign.as_bytes())
        })
        .await?;
        Ok(self.token(se, BASE64.encode(signature)))
    }

    /// The token's expiry and the string its signature covers.
    fn to_sign(&self) -> (u64, String) {
        let c = self.client;
        let se = unix_now() + c.token_lifetime.as_secs();
        (se, format!("{}\n{se}", self.resource()))
    }

    fn resource(&self) -> String {
        let c = self.client;
        encode(&format!(
            "{}/registrations/{}",
            c.id_scope, c.registration_id
        ))
    }

    /// The registration SAS token expiring at `se`, with the signature of
    /// what [`Self::to_sign`] gave for that expiry.
    fn token(&self, se: u64, signature: String) -> String {
        format!(
            "SharedAccessSignature sr={}&sig={}&se={se}&skn=registration",
            self.resource(),
            encode(&signature)
        )
    }

    /// Run `work` within the request timeout and the overall deadline.
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.client.bounded(self.deadline, work).await
    }

    /// Wait as the service asked.
    async fn wait(&self, retry_after: Option<Duration>) -> Result<(), ClientError> {
        self.client.pause_as_asked(self.deadline, retry_after).await
    }
}

/// What a registration opened, closed in order at its end.
struct Parts {
    connection: ConnectionHandle<()>,
    session: Option<SessionHandle<()>>,
    receiver: Option<Receiver>,
    sender: Option<Sender>,
}

impl Parts {
    /// Detach the links, end the session and close the connection as the
    /// SDKs do, within [`CLOSE_GRACE`] (a peer that does not answer is then
    /// left; dropping the handles ends the connection's tasks).
    async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if let Some(sender) = self.sender {
                let _ = sender.close().await;
            }
            if let Some(receiver) = self.receiver {
                let _ = receiver.close().await;
            }
            if let Some(mut session) = self.session {
                let _ = session.end().await;
            }
            let _ = self.connection.close().await;
        })
        .await;
    }
}

/// The two links of a connection and the next correlation number.
struct Link<'a> {
    sender: &'a mut Sender,
    receiver: &'a mut Receiver,
    next: u64,
}

/// A refused attach: the service turned the device away before any request.
fn refused_attach(which: &str, error: &dyn std::fmt::Display) -> ClientError {
    ClientError::Service {
        status: 404,
        error_code: None,
        message: format!("the service refused the {which} link: {error}"),
    }
}

fn parse_status(body: &[u8]) -> Result<RegistrationOperationStatus, ClientError> {
    dps_model::from_json(body).map_err(|e| ClientError::protocol(e.to_string()))
}

fn is_transient(status: u16) -> bool {
    status == 429 || status >= 500
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// A container id unique enough for a connection's lifetime.
fn container_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "dps-client-{:08x}-{:x}",
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
