//! The battery's transports: each carries one device attempt (register, then
//! polls while the answer is `202`) the way its protocol does, from a chosen
//! loopback address, and reads every answer back into one shape. AMQP's
//! driver is in [`super::amqp`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::{Bytes, BytesMut};
use dps_e2e::server::TestSystem;
use dps_model::mqtt;
use futures::{SinkExt as _, StreamExt as _};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, Subscribe,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A device transport the battery runs every case over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wire {
    /// HTTPS on the device port.
    Https,
    /// MQTT 3.1.1 over TLS on the MQTT port.
    Mqtt,
    /// MQTT 3.1.1 over WebSocket on the device port.
    MqttWs,
    /// AMQP 1.0 over TLS on the AMQP port.
    Amqp,
    /// AMQP 1.0 over WebSocket (`AMQPWSB10`) on the device port.
    AmqpWs,
}

/// One device's attempt: where it says it belongs, what it proves, what it sends.
#[derive(Clone, Debug)]
pub(super) struct Attempt {
    pub(super) scope: String,
    pub(super) registration_id: String,
    /// The registration token (`Authorization`, MQTT password); `None`: none.
    pub(super) token: Option<String>,
    /// The register body, sent as is.
    pub(super) body: Vec<u8>,
    /// The loopback address the device connects from (throttling is per address).
    pub(super) source: Ipv4Addr,
    /// Send `forceRegistration=true` with the register request (Node SDK).
    pub(super) force_registration: bool,
}

/// One answer, whatever carried it.
#[derive(Clone, Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) retry_after: Option<u64>,
    pub(super) body: Value,
}

/// Polls after a `202` before the battery gives up (dps answers a register
/// only once its outcome is stored, so the first poll normally ends it).
pub(super) const MAX_POLLS: usize = 10;
const API_VERSION: &str = "2021-06-01";

impl Wire {
    pub(super) fn name(self) -> &'static str {
        match self {
            Wire::Https => "https",
            Wire::Mqtt => "mqtt",
            Wire::MqttWs => "mqtt-ws",
            Wire::Amqp => "amqp",
            Wire::AmqpWs => "amqp-ws",
        }
    }

    /// Register, then poll while the answer is `202`: every answer, in order.
    pub(super) async fn exchange(
        self,
        system: &TestSystem,
        attempt: &Attempt,
    ) -> Result<Vec<Answer>> {
        let work = async {
            match self {
                Wire::Https => https(system, attempt).await,
                Wire::Mqtt | Wire::MqttWs => {
                    let mut link = Link::open(system, attempt, self == Wire::MqttWs).await?;
                    let answers = link.exchange(attempt).await;
                    link.close().await;
                    answers
                }
                Wire::Amqp | Wire::AmqpWs => {
                    super::amqp::exchange(system, attempt, self == Wire::AmqpWs).await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .context("no answer within 20 s")?
    }
}

/// The operation id of a `202`, to poll.
pub(super) fn operation_id(answer: &Answer) -> Result<String> {
    answer.body["operationId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("a 202 without operationId: {}", answer.body))
}

async fn https(system: &TestSystem, attempt: &Attempt) -> Result<Vec<Answer>> {
    let ca = reqwest::Certificate::from_pem(system.server.trust_pem().as_bytes())?;
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .local_address(std::net::IpAddr::V4(attempt.source))
        .build()?;
    let base = format!(
        "https://{}/{}/registrations/{}",
        system.device_host, attempt.scope, attempt.registration_id
    );
    let authorized = |request: reqwest::RequestBuilder| match &attempt.token {
        Some(token) => request.header("authorization", token),
        None => request,
    };
    let force = if attempt.force_registration {
        "&forceRegistration=true"
    } else {
        ""
    };
    let request = http
        .put(format!("{base}/register?api-version={API_VERSION}{force}"))
        .header("content-type", "application/json")
        .body(attempt.body.clone());
    let mut answers = vec![http_answer(authorized(request)).await?];
    while answers.len() <= MAX_POLLS && answers.last().is_some_and(|a| a.status == 202) {
        let operation = operation_id(answers.last().expect("an answer"))?;
        let request = http.get(format!(
            "{base}/operations/{operation}?api-version={API_VERSION}"
        ));
        answers.push(http_answer(authorized(request)).await?);
    }
    Ok(answers)
}

async fn http_answer(request: reqwest::RequestBuilder) -> Result<Answer> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// The byte pipe under an MQTT connection.
enum Pipe {
    Tls(Box<TlsStream<TcpStream>>),
    WebSocket(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

/// An MQTT connection, CONNECTed and subscribed to the replies.
struct Link {
    pipe: Pipe,
    buf: BytesMut,
    next_rid: u16,
}

impl Link {
    async fn open(system: &TestSystem, attempt: &Attempt, websocket: bool) -> Result<Link> {
        let target = if websocket {
            system.server.device_addr()
        } else {
            system.server.mqtt_addr()
        }
        .context("the listener is enabled")?;
        let tls = tls_from(system, attempt.source, target).await?;
        let pipe = if websocket {
            let mut request =
                format!("wss://{}/$iothub/websocket", system.device_host).into_client_request()?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
            let (ws, _) = tokio_tungstenite::client_async(request, tls).await?;
            Pipe::WebSocket(Box::new(ws))
        } else {
            Pipe::Tls(Box::new(tls))
        };
        let mut link = Link {
            pipe,
            buf: BytesMut::new(),
            next_rid: 0,
        };
        let mut connect = Connect::new(attempt.registration_id.clone());
        connect.login = Some(Login::new(
            mqtt::username(
                &attempt.scope,
                &attempt.registration_id,
                API_VERSION,
                "battery/1",
            ),
            attempt.token.clone().unwrap_or_default(),
        ));
        link.send(Packet::Connect(connect)).await?;
        match link.receive().await? {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                ..
            }) => {}
            other => bail!("CONNECT not accepted: {other:?}"),
        }
        let mut subscribe = Subscribe::new(mqtt::REPLY_FILTER, QoS::AtLeastOnce);
        subscribe.pkid = 1;
        link.send(Packet::Subscribe(subscribe)).await?;
        match link.receive().await? {
            Packet::SubAck(_) => Ok(link),
            other => bail!("expected SUBACK, got {other:?}"),
        }
    }

    async fn exchange(&mut self, attempt: &Attempt) -> Result<Vec<Answer>> {
        let rid = self.rid();
        let mut register = mqtt::register_topic(&rid);
        if attempt.force_registration {
            register.push_str("&forceRegistration=true");
        }
        let mut answers = vec![self.request(register, &rid, attempt.body.clone()).await?];
        while answers.len() <= MAX_POLLS && answers.last().is_some_and(|a| a.status == 202) {
            let operation = operation_id(answers.last().expect("an answer"))?;
            let rid = self.rid();
            let poll = mqtt::operation_status_topic(&rid, &operation);
            answers.push(self.request(poll, &rid, b" ".to_vec()).await?);
        }
        Ok(answers)
    }

    fn rid(&mut self) -> String {
        self.next_rid += 1;
        format!("battery-{}", self.next_rid)
    }

    async fn request(&mut self, topic: String, rid: &str, body: Vec<u8>) -> Result<Answer> {
        let mut publish = Publish::from_bytes(topic, QoS::AtLeastOnce, Bytes::from(body));
        publish.pkid = self.next_rid.wrapping_add(100);
        self.send(Packet::Publish(publish)).await?;
        loop {
            let Packet::Publish(reply) = self.receive().await? else {
                continue;
            };
            self.send(Packet::PubAck(PubAck::new(reply.pkid))).await?;
            let topic = mqtt::parse_reply_topic(&reply.topic)
                .with_context(|| format!("not a reply topic: {}", reply.topic))?;
            if topic.rid == rid {
                return Ok(Answer {
                    status: topic.status,
                    retry_after: topic.retry_after_seconds,
                    body: serde_json::from_slice(&reply.payload).unwrap_or(Value::Null),
                });
            }
        }
    }

    async fn send(&mut self, packet: Packet) -> Result<()> {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX)?;
        match &mut self.pipe {
            Pipe::Tls(tls) => {
                tls.write_all(&out).await?;
                tls.flush().await?;
            }
            Pipe::WebSocket(ws) => ws.send(Message::Binary(out.freeze())).await?,
        }
        Ok(())
    }

    async fn receive(&mut self) -> Result<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(packet) => return Ok(packet),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(err) => bail!("a malformed packet from the server: {err}"),
            }
            let more = match &mut self.pipe {
                Pipe::Tls(tls) => tls.read_buf(&mut self.buf).await? > 0,
                Pipe::WebSocket(ws) => match ws.next().await.transpose()? {
                    Some(Message::Binary(data)) => {
                        self.buf.extend_from_slice(&data);
                        true
                    }
                    Some(Message::Close(_)) | None => false,
                    Some(_) => true,
                },
            };
            if !more {
                bail!("the server closed the connection");
            }
        }
    }

    async fn close(mut self) {
        let _ = self.send(Packet::Disconnect).await;
    }
}

/// TCP from `source` to `target`, then TLS trusting the system's CA (no
/// ALPN: MQTT has none, and the WebSocket upgrade needs HTTP/1.1).
pub(super) async fn tls_from(
    system: &TestSystem,
    source: Ipv4Addr,
    target: SocketAddr,
) -> Result<TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject as _;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(target).await?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        rustls::pki_types::CertificateDer::pem_slice_iter(system.server.trust_pem().as_bytes())
    {
        roots.add(certificate?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(system.device_host.clone())?, tcp)
        .await?)
}
