//! The hostile clients: each runs until `until` and reports what it saw.
//! They connect from their own loopback source addresses (127.66.0.x), as
//! attackers on the internet have addresses of their own; the healthy
//! devices connect from 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The attacker's `n`th source address.
pub(crate) fn attacker_ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 66, 0, n))
}

/// TLS towards the server, optionally presenting a client chain.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    pub(crate) fn new(
        ca_pem: &str,
        server_ip: Ipv4Addr,
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Tls> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(ca_pem)? {
            roots.add(cert)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let config = match client {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name: ServerName::IpAddress(IpAddr::V4(server_ip).into()),
        })
    }

    /// A TLS connection from `source` to `server`.
    pub(crate) async fn connect(
        &self,
        source: IpAddr,
        server: SocketAddr,
    ) -> Result<TlsStream<TcpStream>> {
        let tcp = connect_from(source, server).await?;
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            self.connector.connect(self.name.clone(), tcp),
        )
        .await
        .context("TLS handshake timed out")??;
        Ok(tls)
    }
}

fn rustls_pemfile_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|cert| cert.context("the server's CA PEM"))
        .collect()
}

/// A TCP connection from `source` (port chosen by the kernel).
pub(crate) async fn connect_from(source: IpAddr, server: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    Ok(socket.connect(server).await?)
}

/// Whether the server closed `stream` (EOF or reset) within `wait`.
pub(crate) async fn closed_within<S>(stream: &mut S, wait: Duration) -> bool
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A chain bomb: a leaf named `registration_id` and `count - 1` CA
/// certificates that all carry the subject of the group's CA but none of its
/// key, so a naive path builder tries every pair (finding 1 of issue #15).
pub(crate) fn chain_bomb(
    ca_subject: &str,
    registration_id: &str,
    count: usize,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let named = |cn: &str, ca: bool| -> Result<CertificateParams> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        Ok(params)
    };
    let issuer_key = KeyPair::generate_for(&PKCS_ED25519)?;
    let issuer = named(ca_subject, true)?.self_signed(&issuer_key)?;
    let leaf_key = KeyPair::generate_for(&PKCS_ED25519)?;
    let leaf = named(registration_id, false)?.signed_by(&leaf_key, &issuer, &issuer_key)?;
    let mut chain = vec![leaf.der().clone()];
    for _ in 1..count {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        chain.push(named(ca_subject, true)?.self_signed(&key)?.der().clone());
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((chain, key))
}

/// An HTTP/1.1 request on its own connection; the status line's code, or
/// `None` when the server closed without answering.
pub(crate) async fn http_exchange(
    stream: &mut TlsStream<TcpStream>,
    request: &[u8],
) -> Result<Option<u16>> {
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Err(_) => anyhow::bail!("no answer within 10 s"),
            Ok(Err(_)) | Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok()))
}

/// An MQTT 3.1.1 CONNECT packet as DPS devices send it.
pub(crate) fn mqtt_connect(scope: &str, registration_id: &str, password: &str) -> Vec<u8> {
    let username = format!("{scope}/registrations/{registration_id}/api-version=2019-03-31");
    let mut body = Vec::new();
    let mut string = |s: &str| {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    };
    string("MQTT");
    // Level 4; flags: user name, password, clean session; keep-alive 60 s.
    body.extend_from_slice(&[4, 0xC2, 0, 60]);
    let mut payload = Vec::new();
    for field in [registration_id, username.as_str(), password] {
        payload.extend_from_slice(&(field.len() as u16).to_be_bytes());
        payload.extend_from_slice(field.as_bytes());
    }
    body.extend_from_slice(&payload);
    let mut packet = vec![0x10];
    let mut length = body.len();
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if length == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    packet
}
