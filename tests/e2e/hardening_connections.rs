//! Issue #15, finding 3: every listener bounds how long a connection may
//! take at each step and how many connections may be open. Each test runs a
//! server with short limits (1–2 s) and raw clients over rustls, bound to
//! chosen loopback source addresses (any 127/8 address works as a source).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use bytes::BytesMut;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_e2e::server::{SystemOptions, TestSystem};
use dps_service::connection_limits::ConnectionGate;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Login, Packet};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::mqtt_fixtures as fixtures;

/// A TLS connection to `addr` from `source`, offering `alpn`.
async fn open(
    system: &TestSystem,
    addr: SocketAddr,
    source: Ipv4Addr,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        rustls::pki_types::CertificateDer::pem_slice_iter(system.server.trust_pem().as_bytes())
    {
        roots.add(certificate?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(addr).await?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(system.device_host.clone())?, tcp)
        .await?;
    Ok(stream)
}

/// A loopback source address in the test system's own block (`127.0.N.n`),
/// so parallel tests never share one.
fn source(system: &TestSystem, n: u8) -> Result<Ipv4Addr> {
    let device: Ipv4Addr = system.device_host.parse()?;
    let [a, b, c, _] = device.octets();
    Ok(Ipv4Addr::new(a, b, c, n))
}

/// How long after `since` the server closed `stream` (reading and dropping
/// whatever it sends), or `None` if it was still open at `since + within`.
async fn closed_within(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::from_std(since + within);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Read one HTTP/1.1 response (headers and a `Content-Length` body).
async fn read_response(stream: &mut TlsStream<TcpStream>) -> Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse())
                .transpose()?
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .context("no response")??;
        ensure!(n > 0, "closed before a whole response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Wait (up to 2 s) until `gate` counts `expected` open connections: the
/// server gives a place back just after closing the socket.
async fn open_soon(gate: &ConnectionGate, expected: usize) -> Result<()> {
    let started = Instant::now();
    while gate.stats().open != expected {
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "{}: {} open, expected {expected}",
            gate.listener(),
            gate.stats().open
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn short_http_limits(config: &mut dps_service::ServiceConfig) {
    config.connections.header_read_timeout_ms = 1_000;
    config.connections.body_read_timeout_ms = 1_500;
    config.connections.idle_timeout_ms = 2_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dribbling_connections_are_closed_by_the_header_timeout() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &short_http_limits,
        ..SystemOptions::default()
    })
    .await?;
    let from = source(&system, 201)?;
    let listeners = [
        system.server.device_addr().expect("device HTTPS listener"),
        system.server.service_addr().expect("service listener"),
    ];
    for (addr, alpn) in listeners
        .into_iter()
        .flat_map(|addr| [(addr, b"http/1.1".as_slice()), (addr, b"h2".as_slice())])
    {
        // Silent after the handshake (either protocol): closed at ~1 s.
        let mut idle = open(&system, addr, from, &[alpn]).await?;
        let after = closed_within(&mut idle, Instant::now(), Duration::from_secs(4))
            .await
            .with_context(|| format!("{addr} kept an idle connection"))?;
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_millis(2500),
            "{addr}: idle connection closed after {after:?}"
        );
    }

    // One header byte every 300 ms: cut ~1 s after the first, long before
    // the request line is even complete.
    let stream = open(
        &system,
        system.server.device_addr().expect("device HTTPS listener"),
        from,
        &[b"http/1.1"],
    )
    .await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let started = Instant::now();
    let dribbler = tokio::spawn(async move {
        let request = b"GET /a/long/path/of/a/dribbled/request HTTP/1.1\r\nHost: x\r\n\r\n";
        for byte in request {
            if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let after = closed_within(&mut reader, started, Duration::from_secs(5))
        .await
        .context("the dribbling connection was kept")?;
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_millis(2500),
        "dribbler closed after {after:?}"
    );
    dribbler.abort();
    open_soon(&system.server.connections().device, 0).await?;
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_lives_while_used_and_closes_after_the_idle_timeout() -> Result<()>
{
    let system = TestSystem::start(SystemOptions {
        configure: &short_http_limits,
        ..SystemOptions::default()
    })
    .await?;
    let from = source(&system, 201)?;
    let mut stream = open(
        &system,
        system.server.device_addr().expect("device HTTPS listener"),
        from,
        &[b"http/1.1"],
    )
    .await?;
    let request = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request).await?;
    let first = read_response(&mut stream).await?;
    assert!(first.starts_with("HTTP/1.1 404"), "{first}");
    // Idle longer than the header timeout, shorter than the idle timeout:
    // the connection is still there for the next request.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stream.write_all(request).await?;
    let second = read_response(&mut stream).await?;
    assert!(second.starts_with("HTTP/1.1 404"), "{second}");

    let idle_from = Instant::now();
    let after = closed_within(&mut stream, idle_from, Duration::from_secs(5))
        .await
        .context("the idle keep-alive connection was kept")?;
    assert!(
        after >= Duration::from_millis(1_800) && after < Duration::from_millis(3_500),
        "idle keep-alive connection closed after {after:?}"
    );
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_body_is_cut_at_the_body_timeout() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &short_http_limits,
        ..SystemOptions::default()
    })
    .await?;
    let from = source(&system, 201)?;
    let stream = open(
        &system,
        system.server.device_addr().expect("device HTTPS listener"),
        from,
        &[b"http/1.1"],
    )
    .await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = format!(
        "PUT /{}/registrations/dribble/register?api-version=2021-06-01 HTTP/1.1\r\n\
         Host: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n",
        system.scope()
    );
    writer.write_all(head.as_bytes()).await?;
    writer.flush().await?;
    let started = Instant::now();
    let dribbler = tokio::spawn(async move {
        for _ in 0..20 {
            if writer.write_all(b" ").await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        match tokio::time::timeout(left, reader.read(&mut chunk)).await {
            Err(_) => bail!("no answer 5 s into a dribbled body"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    let after = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        after >= Duration::from_millis(1_300) && after < Duration::from_millis(3_000),
        "answered after {after:?}"
    );
    dribbler.abort();
    system.stop().await;
    Ok(())
}

/// The listeners of `system` with their gates, for the cap tests.
fn listeners(system: &TestSystem) -> Result<Vec<(SocketAddr, Arc<ConnectionGate>)>> {
    let connections = &system.server.connections();
    Ok(vec![
        (
            system.server.device_addr().expect("device HTTPS listener"),
            connections.device.clone(),
        ),
        (
            system.server.service_addr().expect("service listener"),
            connections.service.clone(),
        ),
        (
            system.server.mqtt_addr().context("MQTT is enabled")?,
            connections.mqtt.clone().context("an MQTT gate")?,
        ),
    ])
}

/// Whether a connection from `from` is refused (closed before the TLS
/// handshake completes).
async fn refused(system: &TestSystem, addr: SocketAddr, from: Ipv4Addr) -> bool {
    let attempt = tokio::time::timeout(Duration::from_secs(3), open(system, addr, from, &[])).await;
    matches!(attempt, Ok(Err(_)))
}

/// Open from `from` until one is admitted (a freed place is given back once
/// the server has seen the close), within 3 s.
async fn admitted_soon(
    system: &TestSystem,
    addr: SocketAddr,
    from: Ipv4Addr,
) -> Result<TlsStream<TcpStream>> {
    let started = Instant::now();
    loop {
        match open(system, addr, from, &[]).await {
            Ok(stream) => return Ok(stream),
            Err(err) if started.elapsed() > Duration::from_secs(3) => {
                return Err(err).context("no place was given back")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_caps_connections_per_address_and_in_total() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| {
            config.connections.max_connections_per_address = 2;
            config.connections.max_connections = 4;
        },
        ..SystemOptions::default()
    })
    .await?;
    let [a, b, c] = [
        source(&system, 201)?,
        source(&system, 202)?,
        source(&system, 203)?,
    ];
    for (addr, gate) in listeners(&system)? {
        let name = gate.listener();
        let mut held = vec![
            open(&system, addr, a, &[]).await?,
            open(&system, addr, a, &[]).await?,
        ];
        // A's third is refused; B (another address behind no cap) is not.
        assert!(
            refused(&system, addr, a).await,
            "{name}: A's third admitted"
        );
        held.push(open(&system, addr, b, &[]).await?);
        held.push(open(&system, addr, b, &[]).await?);
        // Four open: the total cap refuses C, which has none open.
        assert!(refused(&system, addr, c).await, "{name}: fifth admitted");
        let stats = gate.stats();
        assert_eq!(stats.open, 4, "{name}");
        assert_eq!(stats.refused_address_cap_total, 1, "{name}");
        assert_eq!(stats.refused_total_cap_total, 1, "{name}");
        // Closing one gives its place back.
        drop(held.pop());
        held.push(admitted_soon(&system, addr, c).await?);
        drop(held);
    }
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_mqtt_session_keeps_its_connections_place() -> Result<()> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Message;
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.connections.max_connections_per_address = 1,
        ..SystemOptions::default()
    })
    .await?;
    let key = fixtures::symmetric_individual(&system, "ws-slot").await?;
    let from = source(&system, 201)?;
    let addr = system.server.device_addr().expect("device HTTPS listener");
    let tls = open(&system, addr, from, &[b"http/1.1"]).await?;
    let mut request = "wss://localhost/$iothub/websocket".into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await?;
    ws.send(Message::Binary(
        encode(&connect(&system, "ws-slot", &key, 60)).into(),
    ))
    .await?;
    let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await?
        .context("closed")??;
    let mut buf = BytesMut::from(&message.into_data()[..]);
    assert!(matches!(
        Packet::read(&mut buf, 1024)?,
        Packet::ConnAck(ConnAck {
            code: ConnectReturnCode::Success,
            ..
        })
    ));
    // The HTTP exchange is over; the session still holds the address's place.
    assert_eq!(system.server.connections().device.stats().open, 1);
    assert!(
        refused(&system, addr, from).await,
        "second connection admitted"
    );
    ws.close(None).await?;
    drop(admitted_soon(&system, addr, from).await?);
    system.stop().await;
    Ok(())
}

/// A device CONNECT asking `keep_alive` seconds.
fn connect(system: &TestSystem, id: &str, key: &str, keep_alive: u16) -> Packet {
    let scope = system.scope().to_string();
    let token = create_token(
        &registration_resource(&scope, id),
        &SymmetricKey::from_base64(key).expect("base64 key"),
        unix_now() + 3600,
        Some("registration"),
    );
    let mut connect = Connect::new(id);
    connect.keep_alive = keep_alive;
    connect.login = Some(Login::new(
        format!("{scope}/registrations/{id}/api-version=2019-03-31"),
        token,
    ));
    Packet::Connect(connect)
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.write(&mut out, usize::MAX).expect("encodable");
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_keep_alive_zero_gets_the_server_maximum_and_a_silent_client_the_connect_deadline(
) -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| {
            config.connections.mqtt_max_keep_alive_seconds = 1;
            config.device.mqtt.connect_timeout_ms = 1_000;
        },
        ..SystemOptions::default()
    })
    .await?;
    let addr = system.server.mqtt_addr().context("MQTT is enabled")?;
    let from = source(&system, 201)?;

    // Nothing after the TLS handshake: closed at the CONNECT deadline.
    let mut silent = open(&system, addr, from, &[]).await?;
    let after = closed_within(&mut silent, Instant::now(), Duration::from_secs(4))
        .await
        .context("a client that never sent CONNECT was kept")?;
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_millis(2_500),
        "closed after {after:?}"
    );

    // Keep-alive 0 (none) and 3600 both get the 1 s maximum: closed after
    // 1.5 s without a packet.
    for (i, asked) in [0u16, 3600].into_iter().enumerate() {
        let id = format!("keep-alive-{i}");
        let key = fixtures::symmetric_individual(&system, &id).await?;
        let mut stream = open(&system, addr, from, &[]).await?;
        stream
            .write_all(&encode(&connect(&system, &id, &key, asked)))
            .await?;
        let mut buf = BytesMut::new();
        let connected = loop {
            match Packet::read(&mut buf, 1024) {
                Ok(packet) => break packet,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(err) => bail!("malformed CONNACK: {err}"),
            }
            ensure!(
                stream.read_buf(&mut buf).await? > 0,
                "closed before CONNACK"
            );
        };
        assert!(
            matches!(
                connected,
                Packet::ConnAck(ConnAck {
                    code: ConnectReturnCode::Success,
                    ..
                })
            ),
            "{connected:?}"
        );
        let after = closed_within(&mut stream, Instant::now(), Duration::from_secs(5))
            .await
            .with_context(|| format!("keep-alive {asked} was never enforced"))?;
        assert!(
            after >= Duration::from_millis(1_300) && after < Duration::from_millis(3_000),
            "keep-alive {asked}: closed after {after:?}"
        );
    }
    system.stop().await;
    Ok(())
}
