//! The device protocol over MQTT 3.1.1 (spec §2): over TLS (default port
//! 8883) or over WebSocket over TLS (default port 443, path
//! `/$iothub/websocket`, subprotocol `mqtt`). CONNECT carries the
//! registration token as the password (none for X.509: the certificate is the
//! TLS client certificate), then SUBSCRIBE to the reply filter, PUBLISH the
//! register request and the polls, each answered on
//! `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}]`. The
//! username and topics are written and read by [`dps_model::mqtt`], the
//! grammar the server reads them with.
//!
//! One connection per [`crate::ProvisioningClient::register`] call, closed
//! with DISCONNECT at the end. TPM attestation has no MQTT form (as in Azure).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dps_attestation::sas::unix_now;
use dps_model::mqtt::{self as grammar, encode};
use dps_model::RegistrationStatus;
use futures::{SinkExt as _, StreamExt as _};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, Subscribe,
    SubscribeReasonCode,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

mod protocol;

use self::protocol::{error_of, is_transient, kind, parse_status, refusal, uuid_like};
use crate::credential::Credential;
use crate::dial::Target;
use crate::{ClientError, ProvisioningClient, Registration, TlsTrust};

/// How a [`ProvisioningClient`] talks to the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// HTTPS (default port 443).
    #[default]
    Https,
    /// MQTT 3.1.1 over TLS (default port 8883).
    Mqtt,
    /// MQTT 3.1.1 over WebSocket over TLS (default port 443, path `/$iothub/websocket`).
    MqttWs,
    /// AMQP 1.0 over TLS (default port 5671).
    Amqp,
    /// AMQP 1.0 over WebSocket over TLS (default port 443, path
    /// `/$iothub/websocket`, subprotocol `AMQPWSB10`).
    AmqpWs,
}

impl Transport {
    /// The port dialled when the endpoint names none.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Mqtt => 8883,
            Transport::Amqp => crate::amqp::AMQP_PORT,
            Transport::Https | Transport::MqttWs | Transport::AmqpWs => 443,
        }
    }
}

/// Keep-alive sent in CONNECT (the Node SDK's value): longer than any wait here.
const KEEP_ALIVE_SECONDS: u16 = 180;
/// Largest packet accepted from the service.
const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// The TLS configuration of an MQTT client ([`crate::dial::stream_tls`]);
/// a TPM cannot use MQTT.
pub(crate) fn tls_config(
    trust: &TlsTrust,
    credential: &Credential,
) -> Result<Arc<ClientConfig>, ClientError> {
    if let Credential::Tpm(_) = credential {
        return Err(ClientError::Config {
            reason: "TPM attestation is not available over MQTT; use Transport::Https or Transport::Amqp"
                .to_owned(),
        });
    }
    crate::dial::stream_tls(trust, credential)
}

/// One register → assigned exchange over one MQTT connection.
pub(crate) struct Exchange<'a> {
    pub(crate) client: &'a ProvisioningClient,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) websocket: bool,
    pub(crate) deadline: Instant,
    /// The register body ([`ProvisioningClient::register_body`]).
    pub(crate) body: &'a serde_json::Value,
}

/// An answer on the reply topic.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl Exchange<'_> {
    pub(crate) async fn run(&self) -> Result<Registration, ClientError> {
        let mut link = self.connect().await?;
        let result = self.provision(&mut link).await;
        link.disconnect().await;
        result
    }

    async fn provision(&self, link: &mut Link) -> Result<Registration, ClientError> {
        let c = self.client;
        let body = Bytes::from(self.body.to_string());
        let (mut status, mut retry_after) = loop {
            let rid = link.next_rid();
            let topic = grammar::register_topic(&rid);
            let answer = self.request(link, topic, &rid, body.clone()).await?;
            match answer.status {
                200 | 202 => break (parse_status(&answer.body)?, answer.retry_after),
                s if is_transient(s) => self.wait(answer.retry_after).await?,
                _ => return Err(error_of(&answer)),
            }
        };
        while matches!(
            status.status,
            RegistrationStatus::Assigning | RegistrationStatus::Unassigned
        ) {
            match c.poll_interval_override {
                Some(interval) => self.wait_exactly(interval).await?,
                None => self.wait(retry_after).await?,
            }
            let rid = link.next_rid();
            let topic = grammar::operation_status_topic(&rid, &status.operation_id);
            let answer = self
                .request(link, topic, &rid, Bytes::from_static(b" "))
                .await?;
            match answer.status {
                200 | 202 => {
                    status = parse_status(&answer.body)?;
                    retry_after = answer.retry_after;
                }
                s if is_transient(s) => {
                    retry_after = answer.retry_after;
                }
                _ => return Err(error_of(&answer)),
            }
        }
        Registration::from_status(status, &c.credential)
    }

    /// TCP, TLS, WebSocket when asked, CONNECT and SUBSCRIBE.
    async fn connect(&self) -> Result<Link, ClientError> {
        let c = self.client;
        let transport = if self.websocket {
            Transport::MqttWs
        } else {
            Transport::Mqtt
        };
        let target = Target::new(&c.endpoint, transport.default_port());
        let network = |reason: String| target.network(reason);
        let work = async {
            let tls = target.tls(self.tls.clone()).await?;
            let stream = if self.websocket {
                Stream::WebSocket(Box::new(target.websocket(tls, "mqtt").await?))
            } else {
                Stream::Tls(Box::new(tls))
            };
            let mut link = Link {
                stream,
                buf: BytesMut::with_capacity(4096),
                next_id: 0,
            };
            let mut connect = Connect::new(c.registration_id.clone());
            connect.keep_alive = KEEP_ALIVE_SECONDS;
            connect.clean_session = true;
            connect.login = Some(Login::new(self.username(), self.token()));
            link.send(&[Packet::Connect(connect)])
                .await
                .map_err(|e| network(e.to_string()))?;
            match link.receive().await.map_err(|e| network(e.to_string()))? {
                Packet::ConnAck(ConnAck {
                    code: ConnectReturnCode::Success,
                    ..
                }) => {}
                Packet::ConnAck(ConnAck { code, .. }) => return Err(refusal(code)),
                other => {
                    return Err(ClientError::protocol(format!(
                        "expected CONNACK, got {other:?}"
                    )))
                }
            }
            let pkid = link.packet_id();
            let mut subscribe = Subscribe::new(grammar::REPLY_FILTER, QoS::AtLeastOnce);
            subscribe.pkid = pkid;
            link.send(&[Packet::Subscribe(subscribe)])
                .await
                .map_err(|e| network(e.to_string()))?;
            loop {
                match link.receive().await.map_err(|e| network(e.to_string()))? {
                    Packet::SubAck(ack) if ack.pkid == pkid => {
                        if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                            return Err(ClientError::protocol(
                                "the service refused the reply subscription",
                            ));
                        }
                        return Ok(link);
                    }
                    Packet::PingResp => {}
                    other => {
                        return Err(ClientError::protocol(format!(
                            "expected SUBACK, got {}",
                            kind(&other)
                        )))
                    }
                }
            }
        };
        self.bounded(work).await
    }

    /// Publish a request and wait for its answer.
    async fn request(
        &self,
        link: &mut Link,
        topic: String,
        rid: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let network = |reason: String| ClientError::Network {
            endpoint: self.client.endpoint.clone(),
            reason,
        };
        let work = async {
            let mut publish = Publish::from_bytes(topic, QoS::AtLeastOnce, body);
            publish.pkid = link.packet_id();
            link.send(&[Packet::Publish(publish)])
                .await
                .map_err(|e| network(e.to_string()))?;
            loop {
                match link.receive().await.map_err(|e| network(e.to_string()))? {
                    Packet::Publish(reply) => {
                        if reply.qos == QoS::AtLeastOnce {
                            link.send(&[Packet::PubAck(PubAck::new(reply.pkid))])
                                .await
                                .map_err(|e| network(e.to_string()))?;
                        }
                        let Some(topic) = grammar::parse_reply_topic(&reply.topic) else {
                            continue;
                        };
                        if topic.rid == rid {
                            return Ok(Answer {
                                status: topic.status,
                                retry_after: topic.retry_after_seconds.map(Duration::from_secs),
                                body: reply.payload,
                            });
                        }
                    }
                    Packet::PubAck(_) | Packet::PingResp => {}
                    other => {
                        return Err(ClientError::protocol(format!(
                            "unexpected {} from the service",
                            kind(&other)
                        )))
                    }
                }
            }
        };
        self.bounded(work).await
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

    /// Wait exactly `duration` (the caller's own poll interval, zero included).
    async fn wait_exactly(&self, duration: Duration) -> Result<(), ClientError> {
        self.client.pause(self.deadline, duration).await
    }

    fn username(&self) -> String {
        let c = self.client;
        grammar::username(
            &c.id_scope,
            &c.registration_id,
            &c.api_version,
            concat!("dps-client/", env!("CARGO_PKG_VERSION")),
        )
    }

    /// The registration token (empty for X.509: no password is sent).
    fn token(&self) -> String {
        let c = self.client;
        let Credential::SymmetricKey(key) = &c.credential else {
            return String::new();
        };
        let sr = encode(&format!(
            "{}/registrations/{}",
            c.id_scope, c.registration_id
        ));
        let se = unix_now() + c.token_lifetime.as_secs();
        let signature = key.sign(format!("{sr}\n{se}").as_bytes());
        format!(
            "SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration",
            encode(&signature)
        )
    }
}

/// The stream under the MQTT packets.
enum Stream {
    Tls(Box<TlsStream<TcpStream>>),
    WebSocket(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

/// An open MQTT connection.
struct Link {
    stream: Stream,
    buf: BytesMut,
    next_id: u16,
}

impl Link {
    fn packet_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.next_id
    }

    fn next_rid(&mut self) -> String {
        uuid_like(self.packet_id())
    }

    async fn send(&mut self, packets: &[Packet]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        for packet in packets {
            packet
                .write(&mut out, usize::MAX)
                .map_err(std::io::Error::other)?;
        }
        match &mut self.stream {
            Stream::Tls(tls) => {
                tls.write_all(&out).await?;
                tls.flush().await
            }
            Stream::WebSocket(ws) => ws
                .send(Message::Binary(out.freeze()))
                .await
                .map_err(std::io::Error::other),
        }
    }

    async fn receive(&mut self) -> std::io::Result<Packet> {
        loop {
            // An HTTP server answering our CONNECT parses as MQTT packets
            // ("HT" is a PUBACK): name the likely mistake instead.
            if self.buf.starts_with(b"HTTP/") {
                return Err(std::io::Error::other(
                    "the endpoint answered HTTP, not MQTT: point MQTT at the \
                     service's MQTT port (8883 unless configured otherwise), \
                     or use MQTT over WebSocket on the HTTPS port",
                ));
            }
            match Packet::read(&mut self.buf, MAX_INCOMING_PACKET) {
                Ok(packet) => return Ok(packet),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(err) => return Err(std::io::Error::other(err)),
            }
            let read = match &mut self.stream {
                Stream::Tls(tls) => tls.read_buf(&mut self.buf).await?,
                Stream::WebSocket(ws) => match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => 0,
                    Some(Ok(Message::Binary(data))) => {
                        self.buf.extend_from_slice(&data);
                        data.len().max(1)
                    }
                    Some(Ok(_)) => 1,
                    Some(Err(err)) => return Err(std::io::Error::other(err)),
                },
            };
            if read == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the service closed the connection",
                ));
            }
        }
    }

    async fn disconnect(mut self) {
        let _ = self.send(&[Packet::Disconnect]).await;
        match &mut self.stream {
            Stream::Tls(tls) => {
                let _ = tls.shutdown().await;
            }
            Stream::WebSocket(ws) => {
                let _ = ws.as_mut().close(None).await;
            }
        }
    }
}
