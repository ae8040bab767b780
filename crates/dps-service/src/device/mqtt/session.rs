//! One MQTT connection, from CONNECT to close: authentication at CONNECT,
//! SUBSCRIBE to the reply filter, PUBLISH requests answered on the reply
//! topic, and the limits (CONNECT deadline, keep-alive, packet size, requests
//! in flight). Any protocol violation closes this connection and nothing else.
//!
//! A malformed CONNECT (username shape, client id, protocol level) is refused
//! with a CONNACK return code. Credentials that fail (bad token, unknown scope
//! or enrollment, no token at all, throttled) are not: the connection is
//! accepted *unverified*, and each request is answered on the reply topic by
//! the pipeline, which authenticates every request as on HTTPS — so a device
//! gets the same status and Azure error code on every transport (Azure's own
//! MQTT endpoint answers an X.509 refusal as `res/401` with `401002`, spec
//! §2.1), and a TPM device gets its challenge. An unverified connection never
//! takes another connection's place (see [`super::registry`]) until one of its
//! requests succeeds.
//!
//! Sessions are never persistent: `clean session` false is accepted (Python
//! sends it) but CONNACK always says no session is present, and QoS 1 replies
//! are not redelivered after a reconnect — a device that lost a reply asks again.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use dps_model::mqtt as topics;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::registry::{evicted, Registered};
use super::requests::{self, InFlight, Instruction};
use super::transport::Transport;
use super::MqttEndpoint;
use crate::listener::{stopped, ConnectionInfo};
use crate::pipeline::{DeviceCredentials, DeviceRequest};
use crate::respond::WireAnswer;

/// Why a session ended (logged at debug level; never sent).
enum End {
    /// The device disconnected or closed the connection.
    Closed,
    /// The device broke the protocol or a limit.
    Violation(String),
    /// The connection failed.
    Io(io::Error),
    /// No packet within 1.5 × the keep-alive (the server's maximum when the
    /// client asked none or more).
    KeepAliveExpired,
    /// A newer connection of the same device took this one's place.
    Replaced,
    /// An unverified connection sent nothing within the CONNECT deadline
    /// (the SDKs disconnect by themselves once refused; closing at once
    /// after a refusal makes the Node SDK lose the answer).
    Refused,
    /// The server is shutting down.
    Shutdown,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed => f.write_str("closed by the device"),
            End::Violation(reason) => write!(f, "protocol violation: {reason}"),
            End::Io(err) => write!(f, "connection error: {err}"),
            End::KeepAliveExpired => f.write_str("keep-alive expired"),
            End::Replaced => f.write_str("replaced by a newer connection of the device"),
            End::Refused => f.write_str("unverified connection idle"),
            End::Shutdown => f.write_str("server shutdown"),
        }
    }
}

impl From<io::Error> for End {
    fn from(err: io::Error) -> Self {
        End::Io(err)
    }
}

/// What woke a session up.
enum Event {
    /// Bytes from the device (0: it closed the connection).
    Read(io::Result<usize>),
    /// An answer ready to publish.
    Reply(Reply),
}

/// An answer computed by a pipeline task, on its way back to the session.
struct Reply {
    rid: String,
    answer: WireAnswer,
}

/// Serve one connection until it ends.
pub(crate) async fn run(
    transport: Transport,
    connection: ConnectionInfo,
    endpoint: Arc<MqttEndpoint>,
) {
    let peer = connection.peer;
    let limits = &endpoint.limits;
    let in_flight = InFlight::new(limits.max_in_flight, limits.max_throttled_replies);
    let mut session = Session {
        transport,
        endpoint,
        buf: BytesMut::with_capacity(4096),
        next_packet_id: 0,
        reply_qos: QoS::AtLeastOnce,
        in_flight,
    };
    let end = session.serve(&connection).await;
    if !matches!(end, End::Closed) {
        tracing::debug!(%peer, reason = %end, "MQTT connection closed");
    }
    session.transport.close().await;
}

struct Session {
    transport: Transport,
    endpoint: Arc<MqttEndpoint>,
    buf: BytesMut,
    next_packet_id: u16,
    reply_qos: QoS,
    in_flight: InFlight,
}

impl Session {
    async fn serve(&mut self, connection: &ConnectionInfo) -> End {
        let connect = match self.receive_connect().await {
            Ok(connect) => connect,
            Err(end) => return end,
        };
        let asked = connect.keep_alive;
        let granted = self.endpoint.limits.keep_alive(asked);
        if granted.as_secs() != u64::from(asked) {
            tracing::debug!(
                peer = %connection.peer,
                asked,
                granted_seconds = granted.as_secs(),
                "MQTT keep-alive set to the server maximum"
            );
        }
        // MQTT 3.1.1 §3.1.2.10: the server closes after 1.5 × the keep-alive
        // without a control packet.
        let idle_limit = granted * 3 / 2;
        let (request, verified) = match self.accept(connect, connection).await {
            Ok(accepted) => accepted,
            Err(code) => {
                let _ = self.connack(code).await;
                return End::Violation(format!("CONNECT refused with {code:?}"));
            }
        };
        let mut registered = verified.then(|| self.register(&request));
        if let Err(err) = self.connack(ConnectReturnCode::Success).await {
            return End::Io(err);
        }

        let capacity = self.endpoint.limits.max_in_flight.max(1);
        let (reply_sender, mut replies) = mpsc::channel::<Reply>(capacity);
        let mut shutdown = self.endpoint.shutdown.clone();
        let mut last_read = Instant::now();
        loop {
            if let Err(end) = self.handle_buffered(&request, &reply_sender).await {
                return end;
            }
            // An unverified connection with nothing in flight gets the
            // CONNECT deadline, not the keep-alive: failed credentials hold
            // no connection for long.
            let verified = registered.is_some();
            let idle = tokio::time::sleep_until(
                last_read
                    + if verified || !self.in_flight.is_empty() {
                        idle_limit
                    } else {
                        self.endpoint.limits.connect_timeout
                    },
            );
            let event = tokio::select! {
                read = self.transport.read_into(&mut self.buf) => Event::Read(read),
                Some(reply) = replies.recv() => Event::Reply(reply),
                _ = idle => return if verified { End::KeepAliveExpired } else { End::Refused },
                _ = evicted(&mut registered) => return End::Replaced,
                _ = stopped(&mut shutdown) => return End::Shutdown,
            };
            match event {
                Event::Read(Ok(0)) => return End::Closed,
                Event::Read(Ok(_)) => last_read = Instant::now(),
                Event::Read(Err(err)) => return End::Io(err),
                Event::Reply(reply) => {
                    self.in_flight.finished();
                    // A success means the pipeline authenticated the device.
                    let status = reply.answer.status;
                    if registered.is_none() && status < 300 {
                        registered = Some(self.register(&request));
                    }
                    if let Err(err) = self.reply(None, &reply.rid, reply.answer).await {
                        return End::Io(err);
                    }
                }
            }
        }
    }

    /// Count this connection under its registration id (evicting the
    /// oldest over the cap): only for a device that proved its credentials.
    fn register(&self, request: &DeviceRequest) -> Registered {
        self.endpoint
            .registry
            .register(&request.id_scope, &request.registration_id)
    }

    /// The first packet, which must be a CONNECT, within the deadline.
    async fn receive_connect(&mut self) -> Result<Connect, End> {
        let deadline = Instant::now() + self.endpoint.limits.connect_timeout;
        loop {
            match self.decode() {
                Ok(Some(Packet::Connect(connect))) => return Ok(connect),
                Ok(Some(other)) => {
                    return Err(End::Violation(format!(
                        "first packet is {}, not CONNECT",
                        kind(&other)
                    )))
                }
                Ok(None) => {}
                Err(CodecError::InvalidProtocolLevel(level)) => {
                    let _ = self
                        .connack(ConnectReturnCode::RefusedProtocolVersion)
                        .await;
                    return Err(End::Violation(format!("protocol level {level}")));
                }
                Err(err) => return Err(End::Violation(format!("malformed CONNECT: {err}"))),
            }
            match tokio::time::timeout_at(deadline, self.transport.read_into(&mut self.buf)).await {
                Err(_) => return Err(End::Violation("no CONNECT before the deadline".to_owned())),
                Ok(Ok(0)) => return Err(End::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(End::Io(err)),
            }
        }
    }

    /// Check the CONNECT and authenticate the device: the request every
    /// PUBLISH of this connection stands for, and whether its credentials
    /// passed; the return code when the CONNECT itself is malformed.
    async fn accept(
        &mut self,
        connect: Connect,
        connection: &ConnectionInfo,
    ) -> Result<(DeviceRequest, bool), ConnectReturnCode> {
        if connect.protocol != Protocol::V4 {
            return Err(ConnectReturnCode::RefusedProtocolVersion);
        }
        let (username, password) = match connect.login {
            Some(login) => (login.username, login.password),
            None => (String::new(), String::new()),
        };
        let parsed =
            topics::parse_username(&username).ok_or(ConnectReturnCode::BadUserNamePassword)?;
        if !connect
            .client_id
            .eq_ignore_ascii_case(&parsed.registration_id)
        {
            return Err(ConnectReturnCode::BadClientId);
        }
        let api_version = parsed
            .api_version
            .ok_or(ConnectReturnCode::BadUserNamePassword)?;
        let request = DeviceRequest {
            id_scope: parsed.id_scope,
            registration_id: parsed.registration_id,
            api_version,
            credentials: DeviceCredentials {
                sas_token: (!password.is_empty()).then_some(password),
                client_chain: connection.client_chain.clone(),
            },
            peer: connection.peer.ip(),
            transport: match self.transport {
                Transport::Stream(_) => crate::pipeline::TransportKind::Mqtt,
                Transport::WebSocket(_) => crate::pipeline::TransportKind::MqttWs,
            },
        };
        let verified = match self.endpoint.pipeline.authenticate_device(&request).await {
            Ok(()) => true,
            Err(err) => {
                // The requests will be refused with the code the pipeline
                // chooses; the reason is in the pipeline's own log.
                tracing::debug!(peer = %connection.peer, status = err.code.0, "MQTT connection unverified");
                false
            }
        };
        Ok((request, verified))
    }

    /// Handle every complete packet in the buffer.
    async fn handle_buffered(
        &mut self,
        request: &DeviceRequest,
        replies: &mpsc::Sender<Reply>,
    ) -> Result<(), End> {
        loop {
            let packet = match self.decode() {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(err) => return Err(End::Violation(format!("malformed packet: {err}"))),
            };
            match packet {
                Packet::Publish(publish) => self.on_publish(publish, request, replies).await?,
                Packet::Subscribe(subscribe) => {
                    let codes = subscribe
                        .filters
                        .iter()
                        .map(|filter| {
                            if topics::is_reply_filter(&filter.path) {
                                // QoS 2 asked is granted as 1: replies need no more.
                                let granted = match filter.qos {
                                    QoS::AtMostOnce => QoS::AtMostOnce,
                                    _ => QoS::AtLeastOnce,
                                };
                                self.reply_qos = granted;
                                SubscribeReasonCode::Success(granted)
                            } else {
                                SubscribeReasonCode::Failure
                            }
                        })
                        .collect();
                    self.write(&[Packet::SubAck(SubAck::new(subscribe.pkid, codes))])
                        .await?;
                }
                Packet::Unsubscribe(unsubscribe) => {
                    self.write(&[Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))])
                        .await?;
                }
                Packet::PingReq => self.write(&[Packet::PingResp]).await?,
                // Acknowledgements of our QoS 1 replies: nothing is redelivered.
                Packet::PubAck(_) => {}
                Packet::Disconnect => return Err(End::Closed),
                other => {
                    return Err(End::Violation(format!(
                        "{} is not allowed from a device",
                        kind(&other)
                    )))
                }
            }
        }
    }

    async fn on_publish(
        &mut self,
        publish: Publish,
        request: &DeviceRequest,
        replies: &mpsc::Sender<Reply>,
    ) -> Result<(), End> {
        if publish.qos == QoS::ExactlyOnce {
            return Err(End::Violation("QoS 2 publish".to_owned()));
        }
        let Some(topic) = topics::parse_request_topic(&publish.topic) else {
            return Err(End::Violation("publish to an unknown topic".to_owned()));
        };
        let rid = topic.rid().to_owned();
        let instruction = Instruction::from(&topic);
        let ack =
            (publish.qos == QoS::AtLeastOnce).then(|| Packet::PubAck(PubAck::new(publish.pkid)));
        match self.in_flight.admit(self.endpoint.retry_after_seconds) {
            Err(reason) => return Err(End::Violation(reason)),
            Ok(Some(answer)) => {
                self.reply(ack, &rid, answer).await?;
                return Ok(());
            }
            Ok(None) => {}
        }
        if let Some(ack) = ack {
            self.write(&[ack]).await?;
        }
        let endpoint = self.endpoint.clone();
        let request = request.clone();
        let replies = replies.clone();
        tokio::spawn(async move {
            let answer = requests::answer(
                &endpoint.pipeline,
                &request,
                instruction,
                publish.payload,
                endpoint.retry_after_seconds,
            )
            .await;
            // The session may be gone; the work is done either way.
            let _ = replies.send(Reply { rid, answer }).await;
        });
        Ok(())
    }

    fn decode(&mut self) -> Result<Option<Packet>, CodecError> {
        match Packet::read(&mut self.buf, self.endpoint.limits.max_packet_bytes) {
            Ok(packet) => Ok(Some(packet)),
            Err(CodecError::InsufficientBytes(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn connack(&mut self, code: ConnectReturnCode) -> io::Result<()> {
        self.write(&[Packet::ConnAck(ConnAck::new(code, false))])
            .await
    }

    /// Publish `answer` on the reply topic of `rid`, after `before` if given.
    async fn reply(
        &mut self,
        before: Option<Packet>,
        rid: &str,
        answer: WireAnswer,
    ) -> io::Result<()> {
        let topic = topics::reply_topic(answer.status, rid, answer.retry_after);
        let mut publish = Publish::from_bytes(topic, self.reply_qos, Bytes::from(answer.body));
        if self.reply_qos != QoS::AtMostOnce {
            publish.pkid = self.packet_id();
        }
        match before {
            Some(first) => self.write(&[first, Packet::Publish(publish)]).await,
            None => self.write(&[Packet::Publish(publish)]).await,
        }
    }

    fn packet_id(&mut self) -> u16 {
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.next_packet_id
    }

    async fn write(&mut self, packets: &[Packet]) -> io::Result<()> {
        let mut out = BytesMut::new();
        for packet in packets {
            packet
                .write(&mut out, usize::MAX)
                .map_err(io::Error::other)?;
        }
        self.transport.send(out.freeze()).await
    }
}

/// A packet's type, for logs (never its contents: CONNECT carries the token).
fn kind(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn drain(bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        while let Ok(packet) = Packet::read(&mut buf, 4096) {
            let _ = kind(&packet);
        }
    }

    proptest! {
        // The codec sees every byte a device sends: no input may panic it.
        #[test]
        fn arbitrary_bytes_never_panic_the_codec(bytes in vec(any::<u8>(), 0..600)) {
            drain(&bytes);
        }

        #[test]
        fn well_framed_garbage_never_panics_the_codec(
            first in any::<u8>(),
            body in vec(any::<u8>(), 0..120),
        ) {
            let mut bytes = vec![first, body.len() as u8];
            bytes.extend_from_slice(&body);
            drain(&bytes);
        }
    }
}
