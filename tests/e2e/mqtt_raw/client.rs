//! A raw MQTT 3.1.1 client over rustls for the malformed-input tests: it
//! sends exactly the bytes a test wants and reports what came back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::{Bytes, BytesMut};
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::server::TestSystem;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, Subscribe,
    SubscribeReasonCode,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A raw MQTT connection over TLS to port 8883.
pub(super) struct Raw {
    pub(super) stream: TlsStream<TcpStream>,
    pub(super) buf: BytesMut,
}

/// What came back while waiting.
#[derive(Debug)]
pub(super) enum Next {
    Packet(Packet),
    Closed,
    Silent,
}

impl Raw {
    pub(super) async fn open(system: &TestSystem) -> Result<Raw> {
        let addr = system.server.mqtt_addr().context("MQTT is enabled")?;
        let tcp = TcpStream::connect(addr).await?;
        let stream = connector(system)?
            .connect(ServerName::try_from(system.device_host.clone())?, tcp)
            .await?;
        Ok(Raw {
            stream,
            buf: BytesMut::new(),
        })
    }

    pub(super) async fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    pub(super) async fn send(&mut self, packet: Packet) -> Result<()> {
        self.send_bytes(&encode(&packet)).await
    }

    pub(super) async fn next(&mut self, within: Duration) -> Result<Next> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(packet) => return Ok(Next::Packet(packet)),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(err) => bail!("the server sent a malformed packet: {err}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(Next::Silent),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(Next::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Read (and collect) packets until the server closes; `None` if it did
    /// not close within `within`.
    pub(super) async fn closed_within(&mut self, within: Duration) -> Result<Option<Vec<Packet>>> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Next::Packet(packet) => seen.push(packet),
                Next::Closed => return Ok(Some(seen)),
                Next::Silent => return Ok(None),
            }
        }
    }

    pub(super) async fn connect(&mut self, connect: Connect) -> Result<ConnectReturnCode> {
        self.send(Packet::Connect(connect)).await?;
        match self.next(Duration::from_secs(5)).await? {
            Next::Packet(Packet::ConnAck(ConnAck { code, .. })) => Ok(code),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    pub(super) async fn subscribe(&mut self, qos: QoS) -> Result<Vec<SubscribeReasonCode>> {
        let mut subscribe = Subscribe::new("$dps/registrations/res/#", qos);
        subscribe.pkid = 1;
        self.send(Packet::Subscribe(subscribe)).await?;
        match self.next(Duration::from_secs(5)).await? {
            Next::Packet(Packet::SubAck(ack)) => Ok(ack.return_codes),
            other => bail!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publish a request and wait for the reply (PUBACKing it).
    pub(super) async fn request(&mut self, topic: &str, qos: QoS, body: &[u8]) -> Result<Publish> {
        let mut publish = Publish::from_bytes(topic, qos, Bytes::copy_from_slice(body));
        publish.pkid = if qos == QoS::AtMostOnce { 0 } else { 7 };
        self.send(Packet::Publish(publish)).await?;
        loop {
            match self.next(Duration::from_secs(10)).await? {
                Next::Packet(Packet::PubAck(_)) => {}
                Next::Packet(Packet::Publish(reply)) => {
                    if reply.qos == QoS::AtLeastOnce {
                        self.send(Packet::PubAck(PubAck::new(reply.pkid))).await?;
                    }
                    return Ok(reply);
                }
                other => bail!("expected a reply, got {other:?}"),
            }
        }
    }
}

pub(super) fn connector(system: &TestSystem) -> Result<TlsConnector> {
    use rustls::pki_types::pem::PemObject as _;
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
    Ok(TlsConnector::from(Arc::new(config)))
}

pub(super) fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.write(&mut out, usize::MAX).expect("encodable");
    out.to_vec()
}

/// The CONNECT the Node SDK sends.
pub(super) fn device_connect(scope: &str, id: &str, key: &str) -> Connect {
    let token = create_token(
        &registration_resource(scope, id),
        &SymmetricKey::from_base64(key).expect("base64 key"),
        unix_now() + 3600,
        Some("registration"),
    );
    let mut connect = Connect::new(id);
    connect.keep_alive = 180;
    connect.login = Some(Login::new(
        format!("{scope}/registrations/{id}/api-version=2019-03-31&ClientVersion=raw%2F1"),
        token,
    ));
    connect
}

pub(super) const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/?$rid=";

pub(super) fn json(publish: &Publish) -> Value {
    serde_json::from_slice(&publish.payload).unwrap_or(Value::Null)
}

/// A connected, subscribed raw device.
pub(super) async fn healthy(system: &TestSystem, id: &str, key: &str) -> Result<Raw> {
    let mut raw = Raw::open(system).await?;
    let code = raw
        .connect(device_connect(&system.scope().to_string(), id, key))
        .await?;
    assert_eq!(code, ConnectReturnCode::Success);
    raw.subscribe(QoS::AtLeastOnce).await?;
    Ok(raw)
}
