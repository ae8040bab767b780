//! The real `dps-server` binary, with its default limits, under hostile
//! traffic (issue #15): while idle TLS connections pile up, slow clients
//! dribble headers, bad tokens flood HTTPS and MQTT, oversized bodies and
//! packets arrive and X.509 chain bombs are presented, healthy devices keep
//! provisioning over HTTPS, MQTT and MQTT over WebSocket with a p99 under
//! 250 ms. Afterwards the server is still running, never panicked, and
//! every registration it acknowledged is readable through the service API.
//!
//! This is its own test binary so that no other test shares the machine's
//! two cores with it while it measures latency.

#[allow(dead_code)] // shared with the crash test, which uses other parts
#[path = "../crash/server.rs"]
mod server;

mod attacks;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use dps_attestation::sas::{create_token, unix_now, SymmetricKey};
use dps_client::{Credential, ProvisioningClient, Transport};
use dps_storage::{SqliteOptions, SqliteStore};
use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinSet;

use attacks::{attacker_ip, chain_bomb, closed_within, http_exchange, mqtt_connect, Tls};
use server::{Backend, CrashSystem, Extras};

/// How long the attack lasts.
const ATTACK: Duration = Duration::from_secs(20);
/// Healthy devices enrolled (more than can register in [`ATTACK`]).
const DEVICES: usize = 4000;
const CA_SUBJECT: &str = "adversarial-ca";
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 252, 1);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthy_devices_provision_while_attacked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("dps.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).await?);
    let backend = Backend {
        storage_url: format!("sqlite://{}", path.display()),
        store: store.clone(),
    };
    let group_ca = group_ca_pem()?;
    let extras = Extras {
        mqtt: true,
        x509_group_ca_pem: Some(group_ca),
        ..Extras::default()
    };
    let mut system = CrashSystem::prepare_with(backend, SERVER_IP, dir, DEVICES, extras).await?;
    store.close().await;
    drop(store);
    system.start_server().await?;

    let until = Instant::now() + ATTACK;
    let mut attackers = JoinSet::new();
    let tls = Tls::new(system.ca_pem(), SERVER_IP, None)?;
    let bomb = chain_bomb(CA_SUBJECT, "bomb-device", 240)?;
    let bomb_tls = Tls::new(system.ca_pem(), SERVER_IP, Some(bomb))?;
    let scope = system.scope().to_string();
    let device = system.device_addr;
    let mqtt = system.mqtt_addr.context("MQTT listener")?;
    let stats = Arc::new(AttackStats::default());

    // 300 idle TLS connections, from three addresses.
    for n in 0..300u16 {
        let (tls, stats) = (tls.clone(), stats.clone());
        attackers.spawn(async move {
            let source = attacker_ip(1 + (n % 3) as u8);
            if let Ok(mut stream) = tls.connect(source, device).await {
                stats.idle_opened.fetch_add(1, Ordering::Relaxed);
                let left = until.saturating_duration_since(Instant::now());
                closed_within(&mut stream, left).await;
            }
        });
    }
    // 20 dribblers: a request line, one byte per second.
    for _ in 0..20 {
        let (tls, stats) = (tls.clone(), stats.clone());
        attackers.spawn(async move {
            let Ok(mut stream) = tls.connect(attacker_ip(4), device).await else {
                return;
            };
            for byte in b"PUT /".iter().cycle() {
                if Instant::now() >= until || stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                if closed_within(&mut stream, Duration::from_secs(1)).await {
                    stats.dribblers_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        });
    }
    // Bad tokens over HTTPS, four keep-alive floods.
    for flood in 0..4u8 {
        let (tls, scope, stats) = (tls.clone(), scope.clone(), stats.clone());
        attackers.spawn(async move {
            let source = attacker_ip(10 + flood);
            while Instant::now() < until {
                let Ok(mut stream) = tls.connect(source, device).await else {
                    continue;
                };
                while Instant::now() < until {
                    let request =
                        register_request(&scope, "crash-device-00001", &bad_token(&scope), b"{}");
                    match http_exchange(&mut stream, &request).await {
                        Ok(Some(status)) => stats.record_refusal(status),
                        _ => break,
                    }
                }
            }
        });
    }
    // Bad tokens over MQTT: CONNECT (accepted unverified: refusals come on
    // the reply topic, a silent connection is closed), again.
    for flood in 0..2u8 {
        let (tls, scope, stats) = (tls.clone(), scope.clone(), stats.clone());
        attackers.spawn(async move {
            let source = attacker_ip(20 + flood);
            while Instant::now() < until {
                let Ok(mut stream) = tls.connect(source, mqtt).await else {
                    continue;
                };
                let connect = mqtt_connect(&scope, "crash-device-00002", &bad_token(&scope));
                if stream.write_all(&connect).await.is_ok() {
                    stats.mqtt_bad_connects.fetch_add(1, Ordering::Relaxed);
                }
                closed_within(&mut stream, Duration::from_secs(2)).await;
            }
        });
    }
    // Oversized: a 4 MiB register body, and an MQTT packet announcing 256 MiB.
    {
        let (tls, scope, stats) = (tls.clone(), scope.clone(), stats.clone());
        attackers.spawn(async move {
            let body = vec![b' '; 4 << 20];
            while Instant::now() < until {
                let Ok(mut stream) = tls.connect(attacker_ip(30), device).await else {
                    continue;
                };
                let request =
                    register_request(&scope, "crash-device-00003", &bad_token(&scope), &body);
                if let Ok(Some(status)) = http_exchange(&mut stream, &request).await {
                    stats.record_refusal(status);
                }
                let Ok(mut stream) = tls.connect(attacker_ip(31), mqtt).await else {
                    continue;
                };
                let mut packet = vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F];
                packet.extend_from_slice(&[0u8; 64 << 10]);
                let _ = stream.write_all(&packet).await;
                if closed_within(&mut stream, Duration::from_secs(5)).await {
                    stats.oversized_mqtt_closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Eight X.509 chain bombs in flight.
    for n in 0..8u8 {
        let (bomb_tls, scope, stats) = (bomb_tls.clone(), scope.clone(), stats.clone());
        attackers.spawn(async move {
            while Instant::now() < until {
                let mut stream = match bomb_tls.connect(attacker_ip(40 + n), device).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        // Refused in the handshake: as good as a 401.
                        stats.note_bomb_refused_in_handshake(&err);
                        continue;
                    }
                };
                let request = register_request(
                    &scope,
                    "bomb-device",
                    "",
                    br#"{"registrationId":"bomb-device"}"#,
                );
                match http_exchange(&mut stream, &request).await {
                    Ok(Some(status)) => {
                        stats.record_refusal(status);
                        stats.bombs_answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => stats.note_bomb_refused_in_handshake(&anyhow::anyhow!(
                        "closed without an answer"
                    )),
                    Err(err) => stats.note_bomb_refused_in_handshake(&err),
                }
            }
        });
    }

    // Meanwhile, healthy devices register one after another.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let transports = [Transport::Https, Transport::Mqtt, Transport::MqttWs];
    let mut latencies = Vec::new();
    let mut registered = Vec::new();
    for (n, device) in system.devices().iter().enumerate() {
        if Instant::now() >= until {
            break;
        }
        let transport = transports[n % transports.len()];
        let endpoint = match transport {
            Transport::Mqtt => mqtt.to_string(),
            _ => system.device_addr.to_string(),
        };
        let client = ProvisioningClient::builder(endpoint, system.scope().to_string(), &device.id)
            .credential(Credential::symmetric_key(&device.key)?)
            .system_roots(false)
            .trust_ca_pem(system.ca_pem())
            .transport(transport)
            .timeout(Duration::from_secs(10))
            .poll_interval(Duration::from_millis(5))
            .build()?;
        let started = Instant::now();
        let registration = client
            .register()
            .await
            .with_context(|| format!("healthy device {} over {transport:?}", device.id))?;
        latencies.push(started.elapsed());
        ensure!(
            !registration.assigned_hub.is_empty(),
            "assigned without a hub"
        );
        registered.push(device.id.clone());
    }
    while attackers.join_next().await.is_some() {}

    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let p50 = latencies[latencies.len() / 2];
    eprintln!(
        "adversarial: {} healthy registrations, p50 {p50:?}, p99 {p99:?}, max {:?}; {}",
        latencies.len(),
        latencies.last().copied().unwrap_or_default(),
        stats.summary()
    );
    ensure!(
        latencies.len() >= 50,
        "only {} healthy registrations in {ATTACK:?}",
        latencies.len()
    );
    ensure!(
        p99 < Duration::from_millis(250),
        "healthy p99 {p99:?} under attack (limit 250 ms)"
    );
    ensure!(
        stats.idle_opened.load(Ordering::Relaxed) > 0,
        "no idle connection was opened"
    );
    ensure!(
        stats.refusals.load(Ordering::Relaxed) > 0,
        "the floods got no answer at all"
    );
    ensure!(stats.bombs_refused() > 0, "no chain bomb was refused");
    ensure!(
        stats.accepted.load(Ordering::Relaxed) == 0,
        "an attacker's request was accepted"
    );

    system.assert_running()?;
    for id in &registered {
        let (status, body) = system.service_get(&format!("registrations/{id}")).await?;
        ensure!(
            status == 200 && body["status"] == "assigned",
            "acknowledged registration {id} lost: {status} {body}"
        );
    }
    let log = system.log()?;
    ensure!(!log.contains("panicked"), "the server panicked:\n{log}");
    Ok(())
}

/// Counts of what the attackers saw.
#[derive(Default)]
struct AttackStats {
    idle_opened: AtomicUsize,
    dribblers_closed: AtomicUsize,
    refusals: AtomicUsize,
    throttled: AtomicUsize,
    accepted: AtomicUsize,
    mqtt_bad_connects: AtomicUsize,
    oversized_mqtt_closed: AtomicUsize,
    bombs_answered: AtomicUsize,
    bombs_refused_in_handshake: AtomicUsize,
    first_handshake_refusal: std::sync::OnceLock<String>,
}

impl AttackStats {
    fn record_refusal(&self, status: u16) {
        match status {
            200..=299 => self.accepted.fetch_add(1, Ordering::Relaxed),
            429 => self.throttled.fetch_add(1, Ordering::Relaxed),
            _ => self.refusals.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn note_bomb_refused_in_handshake(&self, err: &anyhow::Error) {
        self.bombs_refused_in_handshake
            .fetch_add(1, Ordering::Relaxed);
        let _ = self.first_handshake_refusal.set(format!("{err:#}"));
    }

    fn bombs_refused(&self) -> usize {
        self.bombs_answered.load(Ordering::Relaxed)
            + self.bombs_refused_in_handshake.load(Ordering::Relaxed)
    }

    fn summary(&self) -> String {
        let get = |counter: &AtomicUsize| counter.load(Ordering::Relaxed);
        format!(
            "idle opened {}, dribblers closed {}, HTTPS refusals {} + throttled {}, MQTT bad CONNECTs {}, oversized MQTT closed {}, chain bombs answered {}, refused in the handshake {} ({})",
            get(&self.idle_opened),
            get(&self.dribblers_closed),
            get(&self.refusals),
            get(&self.throttled),
            get(&self.mqtt_bad_connects),
            get(&self.oversized_mqtt_closed),
            get(&self.bombs_answered),
            get(&self.bombs_refused_in_handshake),
            self.first_handshake_refusal.get().map_or("-", String::as_str),
        )
    }
}

/// A token for the scope signed with a key nobody enrolled.
fn bad_token(scope: &str) -> String {
    let key = SymmetricKey::from_base64("c2VjcmV0LWtleS1ub2JvZHktZW5yb2xsZWQtYW55d2hlcmU=")
        .expect("a valid base64 key");
    create_token(
        &format!("{scope}/registrations/crash-device-00001"),
        &key,
        unix_now() + 600,
        Some("registration"),
    )
}

/// A register request as HTTP/1.1 bytes (keep-alive).
fn register_request(scope: &str, registration_id: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "PUT /{scope}/registrations/{registration_id}/register?api-version=2019-03-31 HTTP/1.1\r\n\
         Host: {SERVER_IP}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !token.is_empty() {
        request.push_str(&format!("authorization: {token}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The group's CA: it shares its subject with every certificate of the bomb.
fn group_ca_pem() -> Result<String> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_SUBJECT);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    Ok(params.self_signed(&key)?.pem())
}
