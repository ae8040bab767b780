//! Our server's AMQP endpoint driven byte by byte over rustls: garbage
//! before the protocol header, a wrong protocol id or version, oversized
//! and undecodable frames, a connection that never finishes SASL (or never
//! speaks), and a flood of transfers — each closes only that connection,
//! while devices provision over AMQP the whole time and a connection opened
//! before the abuse still answers after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_client::{Credential, ProvisioningClient, Transport};
use dps_e2e::server::{SystemOptions, TestSystem};
use fe2o3_amqp::frames::sasl::Frame as SaslFrame;
use fe2o3_amqp::types::definitions::{Handle, Role};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, MessageId, Properties, Source, Target, TargetArchetype,
};
use fe2o3_amqp::types::performatives::{
    Attach, Begin, ChannelMax, Detach, MaxFrameSize, Open, Transfer,
};
use fe2o3_amqp::types::primitives::{Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::mqtt_fixtures as fixtures;

const SASL_HEADER: &[u8; 8] = b"AMQP\x03\x01\x00\x00";
const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x01\x00\x00";

/// A raw TLS connection to the AMQP port (also used by `amqp_limits`).
pub(crate) struct Raw {
    stream: TlsStream<TcpStream>,
}

impl Raw {
    pub(crate) async fn open(system: &TestSystem) -> Result<Raw> {
        use rustls::pki_types::pem::PemObject as _;
        let addr = system.server.amqp_addr().context("AMQP is enabled")?;
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
        let tcp = TcpStream::connect(addr).await?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(system.device_host.clone())?, tcp)
            .await?;
        Ok(Raw { stream })
    }

    /// Send bytes; the server may already have closed (that is for
    /// [`Raw::closed_within`] to tell).
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Read exactly `n` bytes.
    async fn read(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), self.stream.read_exact(&mut buf))
            .await
            .context("no answer within 5 s")??;
        Ok(buf)
    }

    /// Read one frame (size prefix included).
    async fn frame(&mut self) -> Result<Vec<u8>> {
        let mut frame = self.read(4).await?;
        let size = u32::from_be_bytes(frame[..4].try_into()?) as usize;
        ensure!((8..1 << 20).contains(&size), "a frame of {size} bytes");
        frame.extend(self.read(size - 4).await?);
        Ok(frame)
    }

    /// Everything the server sends until it closes the connection — the
    /// TCP stream ends, or an AMQP `close` arrives (the server then waits
    /// for ours); `None` if it is still open after `within`.
    pub(crate) async fn closed_within(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            }
            if frames(&seen).any(|frame| performative(frame) == Some(CLOSE)) {
                return Some(seen);
            }
        }
    }

    /// SASL PLAIN with the device's token, then the AMQP header exchange.
    pub(crate) async fn plain(&mut self, scope: &str, id: &str, key: &str) -> Result<()> {
        self.send(SASL_HEADER).await;
        ensure!(self.read(8).await? == SASL_HEADER, "no SASL header back");
        self.frame().await?; // sasl-mechanisms
        let token = create_token(
            &registration_resource(scope, id),
            &SymmetricKey::from_base64(key)?,
            unix_now() + 3600,
            Some("registration"),
        );
        let init = SaslInit {
            mechanism: Symbol::from("PLAIN"),
            initial_response: Some(Binary::from(
                format!("\0{scope}/registrations/{id}\0{token}").into_bytes(),
            )),
            hostname: None,
        };
        self.send(&sasl_frame(&SaslFrame::Init(init))?).await;
        let outcome = self.frame().await?;
        match serde_amqp::from_slice::<SaslFrame>(&outcome[8..])? {
            SaslFrame::Outcome(outcome) if outcome.code == SaslCode::Ok => {}
            other => anyhow::bail!("expected a sasl-outcome ok, got {other:?}"),
        }
        self.send(AMQP_HEADER).await;
        ensure!(self.read(8).await? == AMQP_HEADER, "no AMQP header back");
        Ok(())
    }

    /// Open, begin, and attach a sender link to the device's address.
    pub(crate) async fn attach_sender(&mut self, address: &str) -> Result<()> {
        let open = Open {
            container_id: "raw".to_owned(),
            hostname: None,
            max_frame_size: MaxFrameSize::default(),
            channel_max: ChannelMax::default(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let begin = Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 2048,
            outgoing_window: u32::MAX,
            handle_max: Handle::from(u32::MAX),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let mut bytes = amqp_frame(serde_amqp::to_vec(&open)?, &[])?;
        bytes.extend(amqp_frame(serde_amqp::to_vec(&begin)?, &[])?);
        self.send(&bytes).await;
        self.until(BEGIN).await?;
        self.attach_link(0, Role::Sender, address).await
    }

    /// Attach one more link (our `role`, handle `handle`) on `address` and
    /// wait for the server's attach.
    pub(crate) async fn attach_link(
        &mut self,
        handle: u32,
        role: Role,
        address: &str,
    ) -> Result<()> {
        self.send_attach(handle, role, address).await?;
        self.until(ATTACH).await
    }

    /// Send an attach of a link (our `role`, handle `handle`) on `address`
    /// without waiting for an answer (the server may close instead).
    pub(crate) async fn send_attach(
        &mut self,
        handle: u32,
        role: Role,
        address: &str,
    ) -> Result<()> {
        // The device's address is the target of its sender, the source of its receiver.
        let (source, target) = match role {
            Role::Sender => (
                Source::default(),
                Target::builder().address(address).build(),
            ),
            Role::Receiver => (
                Source::builder().address(address).build(),
                Target::default(),
            ),
        };
        let attach = Attach {
            name: format!("raw-link-{handle}"),
            handle: Handle::from(handle),
            role,
            snd_settle_mode: Default::default(),
            rcv_settle_mode: Default::default(),
            source: Some(Box::new(source)),
            target: Some(Box::new(TargetArchetype::Target(target))),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(&amqp_frame(serde_amqp::to_vec(&attach)?, &[])?)
            .await;
        Ok(())
    }

    /// Detach (and close) the link of handle `handle`, without waiting.
    pub(crate) async fn send_detach(&mut self, handle: u32) -> Result<()> {
        let detach = Detach {
            handle: Handle::from(handle),
            closed: true,
            error: None,
        };
        self.send(&amqp_frame(serde_amqp::to_vec(&detach)?, &[])?)
            .await;
        Ok(())
    }

    /// Read frames until one carries the performative `code`.
    async fn until(&mut self, code: u8) -> Result<()> {
        for _ in 0..10 {
            if performative(&self.frame().await?) == Some(code) {
                return Ok(());
            }
        }
        anyhow::bail!("no performative {code:#04x} in 10 frames")
    }
}

/// The descriptor codes of the performatives the tests wait for.
const BEGIN: u8 = 0x11;
const ATTACH: u8 = 0x12;
const DISPOSITION: u8 = 0x15;
const CLOSE: u8 = 0x18;

/// The descriptor code of a frame's performative (`00 53 code` after the
/// 8-byte frame header); `None` for an empty (heartbeat) frame.
fn performative(frame: &[u8]) -> Option<u8> {
    match frame.get(8..11)? {
        [0x00, 0x53, code] => Some(*code),
        _ => None,
    }
}

/// The whole frames at the start of `bytes` (after a protocol header, if
/// `bytes` starts with one).
fn frames(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes.strip_prefix(&b"AMQP"[..]).map_or(bytes, |r| &r[4..]);
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if size < 8 || size > rest.len() {
            return None;
        }
        let (frame, tail) = rest.split_at(size);
        rest = tail;
        Some(frame)
    })
}

/// A SASL frame, size prefix included.
fn sasl_frame(frame: &SaslFrame) -> Result<Vec<u8>> {
    framed(1, &serde_amqp::to_vec(frame)?, &[])
}

/// An AMQP frame on channel 0 carrying an encoded performative and `payload`.
fn amqp_frame(performative: Vec<u8>, payload: &[u8]) -> Result<Vec<u8>> {
    framed(0, &performative, payload)
}

fn framed(kind: u8, body: &[u8], payload: &[u8]) -> Result<Vec<u8>> {
    let size = u32::try_from(8 + body.len() + payload.len())?;
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(&[2, kind, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(payload);
    Ok(out)
}

/// A register transfer with delivery id `n`, ignoring link credit.
fn register_transfer(n: u32, id: &str) -> Result<Vec<u8>> {
    let transfer = Transfer {
        handle: Handle::from(0),
        delivery_id: Some(n),
        delivery_tag: Some(Binary::from(n.to_be_bytes().to_vec())),
        message_format: Some(0),
        settled: Some(false),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    };
    let properties = Properties::builder()
        .correlation_id(MessageId::String(format!("flood-{n}")))
        .build();
    let operation = ApplicationProperties::builder()
        .insert("iotdps-operation-type", "iotdps-register")
        .build();
    let mut message = serde_amqp::to_vec(&properties)?;
    message.extend(serde_amqp::to_vec(&operation)?);
    message.extend(serde_amqp::to_vec(&Data(Binary::from(
        format!(r#"{{"registrationId":"{id}"}}"#).into_bytes(),
    )))?);
    amqp_frame(serde_amqp::to_vec(&transfer)?, &message)
}

/// A `dps-client` AMQP client of `id` (also used by `amqp_limits`).
pub(crate) fn client(system: &TestSystem, id: &str, key: &str) -> Result<ProvisioningClient> {
    Ok(
        ProvisioningClient::builder(system.device_host.clone(), system.scope().to_string(), id)
            .credential(Credential::symmetric_key(key)?)
            .trust_ca_pem(system.server.trust_pem().to_owned())
            .system_roots(false)
            .transport(Transport::Amqp)
            .poll_interval(Duration::from_millis(100))
            .timeout(Duration::from_secs(30))
            .build()?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_that_connection() -> Result<()> {
    let system = TestSystem::start(SystemOptions {
        configure: &|config| config.device.amqp.sasl_timeout_ms = 1000,
        ..SystemOptions::default()
    })
    .await?;
    let scope = system.scope().to_string();
    let abuser_key = fixtures::symmetric_individual(&system, "amqp-abuser").await?;
    let late_key = fixtures::symmetric_individual(&system, "amqp-late").await?;
    let mut device_keys = Vec::new();
    for i in 0..12 {
        device_keys.push(fixtures::symmetric_individual(&system, &format!("amqp-bg-{i}")).await?);
    }
    // A connection opened before the abuse, used after it.
    let mut early = Raw::open(&system).await?;
    early
        .plain(&scope, "amqp-late", &late_key)
        .await
        .context("the early connection")?;
    early
        .attach_sender(&format!("{scope}/registrations/amqp-late"))
        .await
        .context("attaching the early connection")?;

    // Devices provisioning with dps-client over AMQP the whole time.
    let background = {
        let clients = device_keys
            .iter()
            .enumerate()
            .map(|(i, key)| client(&system, &format!("amqp-bg-{i}"), key))
            .collect::<Result<Vec<_>>>()?;
        tokio::spawn(async move {
            let mut provisioned = Vec::new();
            for client in clients {
                provisioned.push(client.register().await?.device_id);
            }
            anyhow::Ok(provisioned)
        })
    };
    let quick = Duration::from_secs(3);

    // Garbage before the protocol header, and HTTP on the AMQP port.
    for garbage in [
        &b"GARBAGE!AMQP\x03\x01\x00\x00"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut raw = Raw::open(&system).await?;
        raw.send(garbage).await;
        let seen = raw.closed_within(quick).await.context("garbage kept")?;
        // At most the header the server speaks, never a SASL exchange.
        ensure!(seen.len() <= 8, "answered garbage with {seen:02x?}");
    }

    // A wrong protocol id (2: TLS inside TLS), a wrong version.
    for header in [b"AMQP\x02\x01\x00\x00", b"AMQP\x00\x02\x00\x00"] {
        let mut raw = Raw::open(&system).await?;
        raw.send(header).await;
        let seen = raw.closed_within(quick).await.context("bad header kept")?;
        ensure!(
            seen.is_empty() || seen.starts_with(b"AMQP"),
            "{header:02x?} answered with {seen:02x?}"
        );
    }

    // An oversized frame: its header says 1 MiB; refused before the body.
    let mut raw = Raw::open(&system).await?;
    raw.plain(&scope, "amqp-abuser", &abuser_key)
        .await
        .context("before the oversized frame")?;
    let mut oversized = (1u32 << 20).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[2, 0, 0, 0]);
    oversized.extend(vec![0x40u8; 4096]);
    raw.send(&oversized).await;
    raw.closed_within(quick)
        .await
        .context("oversized frame kept")?;

    // An undecodable performative.
    let mut raw = Raw::open(&system).await?;
    raw.send(AMQP_HEADER).await;
    raw.read(8).await.context("the bare AMQP header")?;
    raw.send(&framed(0, &[0x00, 0x53, 0x10, 0xff, 0xff, 0xff], &[])?)
        .await;
    raw.closed_within(quick)
        .await
        .context("undecodable frame kept")?;

    // SASL that never finishes, and a connection that never speaks: both
    // closed at the (1 s) SASL deadline, not before.
    let started = Instant::now();
    let mut stalled = Raw::open(&system).await?;
    stalled.send(SASL_HEADER).await;
    let mut silent = Raw::open(&system).await?;
    for (raw, what) in [(&mut stalled, "stalled SASL"), (&mut silent, "silent")] {
        raw.closed_within(quick)
            .await
            .with_context(|| format!("{what} connection kept"))?;
    }
    ensure!(started.elapsed() >= Duration::from_millis(900));

    // A flood: 300 register transfers on a link that was granted far less
    // credit, written at once.
    let mut raw = Raw::open(&system).await?;
    raw.plain(&scope, "amqp-abuser", &abuser_key)
        .await
        .context("before the flood")?;
    raw.attach_sender(&format!("{scope}/registrations/amqp-abuser"))
        .await
        .context("attaching before the flood")?;
    let mut flood = Vec::new();
    for n in 0..300 {
        flood.extend(register_transfer(n, "amqp-abuser")?);
    }
    raw.send(&flood).await;
    raw.closed_within(Duration::from_secs(5))
        .await
        .context("flood kept")?;

    // Everyone else is fine: the early connection still works…
    early.send(&register_transfer(0, "amqp-late")?).await;
    early
        .until(DISPOSITION)
        .await
        .context("the answer after the abuse")?;
    // …and the devices provisioning meanwhile all got their hub.
    let provisioned = background.await??;
    assert_eq!(provisioned.len(), 12);
    for id in provisioned {
        fixtures::assert_on_hub(&system, "hub-a.test", &id);
    }
    system.stop().await;
    Ok(())
}
