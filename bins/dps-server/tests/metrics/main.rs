//! `GET /metrics` of the real `dps-server` binary after registrations over
//! HTTPS, MQTT and MQTT over WebSocket: the exposition passes `promtool
//! check metrics` (Debian's `prometheus` package, installed by `.ci/run`)
//! and counts what happened. The same run checks the log: one structured
//! line for the refused device, naming it, without its SAS token; and the
//! service API access log, without the `Authorization` header.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_attestation::sas::{create_token, registration_resource, unix_now, SymmetricKey};
use dps_client::{Credential, ProvisioningClient, Transport};
use dps_hub_sim::{HubSim, HubSimConfig, RunningHubSim};
use dps_model::{IndividualEnrollment, LinkedHub, Tenant};
use dps_service::ServiceConfig;
use dps_storage::{SqliteOptions, SqliteStore, Store};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const HUB: &str = "hub-1.metrics.test";
const IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// `promtool`, or a clear failure: CI installs it, so its absence is a
/// broken setup, not a reason to skip.
fn promtool() -> Result<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|path| path.is_file());
    found.context(
        "promtool not found: install Debian's `prometheus` package \
         (apt-get install -y prometheus; .ci/run does) to check /metrics",
    )
}

fn free_port() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind((IP, 0))?.local_addr()?)
}

struct Server {
    child: Child,
    log_path: std::path::PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The JSON log lines (`--log-format json`).
    fn log_events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

async fn start_server(config_file: &Path, log_path: &Path, admin: SocketAddr) -> Result<Server> {
    let log = std::fs::File::create(log_path)?;
    let child = Command::new(env!("CARGO_BIN_EXE_dps-server"))
        .arg("--config")
        .arg(config_file)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .env_remove("DPS_CONFIG")
        .env_remove("DPS_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("spawning dps-server")?;
    let mut server = Server {
        child,
        log_path: log_path.to_owned(),
    };
    // Ready once /readyz says so: every listener bound, the store answering.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("dps-server exited with {status}:\n{}", server.log());
        }
        let ready = http.get(format!("http://{admin}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(server);
        }
        ensure!(
            Instant::now() < deadline,
            "dps-server not ready within 60 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of the sample `name{labels}` exactly as written in the text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

fn expect(text: &str, series: &str, value: f64) -> Result<()> {
    match sample(text, series) {
        Some(found) if found == value => Ok(()),
        found => bail!("{series}: expected {value}, found {found:?} in\n{text}"),
    }
}

/// A running `dps-server` with a tenant, five enrolled devices (keys
/// known) and a hub emulator in this process.
struct System {
    server: Server,
    scope: String,
    devices: Vec<(String, String)>,
    device_addr: SocketAddr,
    service_addr: SocketAddr,
    mqtt_addr: SocketAddr,
    admin_addr: SocketAddr,
    /// The server's development CA (PEM).
    ca: String,
    _hubs: RunningHubSim,
    _dir: tempfile::TempDir,
}

async fn start_system(access_log: bool) -> Result<System> {
    let dir = tempfile::tempdir()?;
    let hubs = HubSim::start(HubSimConfig::new(SocketAddr::from((IP, 0)), &[HUB])).await?;
    let hub_ca = dir.path().join("hub-ca.pem");
    std::fs::write(&hub_ca, hubs.ca_pem().context("the emulator's CA")?)?;

    // A tenant and five enrolled devices, seeded before the server starts.
    let db = dir.path().join("dps.db");
    let store = Arc::new(SqliteStore::open(&db, SqliteOptions::default()).await?);
    let mut tenant = Tenant::new("metrics", "127.0.0.1")?;
    tenant.linked_hubs = vec![LinkedHub::new(HUB, hubs.connection_string(HUB).unwrap())];
    let tenant = store.create_tenant(tenant).await?;
    let scope = tenant.id_scope.to_string();
    let devices: Vec<(String, String)> = (0..5)
        .map(|n| (format!("metrics-device-{n}"), generate_key()))
        .collect();
    let enrollments = devices
        .iter()
        .map(|(id, key)| {
            let body = json!({"registrationId": id, "attestation": {
                "type": "symmetricKey", "symmetricKey": {"primaryKey": key}}});
            IndividualEnrollment::from_json(body.to_string().as_bytes())
        })
        .collect::<Result<Vec<_>, _>>()?;
    store
        .import_enrollments(&tenant.id_scope, enrollments)
        .await?;
    store.close().await;
    drop(store);

    let (device_addr, service_addr, mqtt_addr, admin_addr) =
        (free_port()?, free_port()?, free_port()?, free_port()?);
    let mut config = ServiceConfig {
        data_dir: dir.path().join("data"),
        storage_url: Some(format!("sqlite://{}", db.display())),
        operator_key: Some(generate_key()),
        ..ServiceConfig::default()
    };
    config.device.listen = device_addr;
    config.device.mqtt.enabled = true;
    config.device.mqtt.listen = Some(mqtt_addr);
    // AMQP's default port (5671) would be shared by the tests running side by side.
    config.device.amqp.listen = Some(free_port()?);
    config.service.listen = service_addr;
    config.admin.listen = Some(admin_addr);
    config.log.access_log = access_log;
    config.hubs.trusted_ca_files = vec![hub_ca];
    config.hubs.resolve.insert(HUB.to_owned(), hubs.addr());
    let config_file = dir.path().join("dps.toml");
    std::fs::write(&config_file, toml::to_string(&config)?)?;
    let server = start_server(&config_file, &dir.path().join("server.log"), admin_addr).await?;
    let ca = std::fs::read_to_string(dir.path().join("data/tls/ca.pem"))?;
    Ok(System {
        server,
        scope,
        devices,
        device_addr,
        service_addr,
        mqtt_addr,
        admin_addr,
        ca,
        _hubs: hubs,
        _dir: dir,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_the_real_binary_count_every_transport_and_pass_promtool() -> Result<()> {
    let promtool = promtool()?;
    let system = start_system(true).await?;
    let (scope, devices, ca) = (
        system.scope.clone(),
        system.devices.clone(),
        system.ca.clone(),
    );
    let (device_addr, service_addr, mqtt_addr, admin_addr) = (
        system.device_addr,
        system.service_addr,
        system.mqtt_addr,
        system.admin_addr,
    );
    let mut server = system.server;

    // 2 over HTTPS, 1 over MQTT, 1 over MQTT over WebSocket.
    let plan = [
        (Transport::Https, device_addr),
        (Transport::Https, device_addr),
        (Transport::Mqtt, mqtt_addr),
        (Transport::MqttWs, device_addr),
    ];
    for ((transport, addr), (id, key)) in plan.into_iter().zip(&devices) {
        let registration = ProvisioningClient::builder(addr.to_string(), &scope, id)
            .credential(Credential::symmetric_key(key)?)
            .trust_ca_pem(ca.clone())
            .system_roots(false)
            .transport(transport)
            .poll_interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(20))
            .build()?
            .register()
            .await
            .with_context(|| format!("{id} over {transport:?}"))?;
        assert_eq!(registration.assigned_hub, HUB);
    }

    // One refused over HTTPS: a token signed with the wrong key.
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
        .build()?;
    let refused_id = &devices[4].0;
    let wrong_key = SymmetricKey::from_base64(&generate_key())?;
    let token = create_token(
        &registration_resource(&scope, refused_id),
        &wrong_key,
        unix_now() + 600,
        Some("registration"),
    );
    let answer = http
        .put(format!(
            "https://{device_addr}/{scope}/registrations/{refused_id}/register?api-version=2021-06-01"
        ))
        .header("Authorization", &token)
        .json(&json!({"registrationId": refused_id}))
        .send()
        .await?;
    assert_eq!(answer.status(), 401);
    let refused_code = answer.json::<Value>().await?["errorCode"]
        .as_i64()
        .context("errorCode")?;

    // And one refused over MQTT (the wrong key again).
    let refused_mqtt = ProvisioningClient::builder(mqtt_addr.to_string(), &scope, refused_id)
        .credential(Credential::symmetric_key(&generate_key())?)
        .trust_ca_pem(ca.clone())
        .system_roots(false)
        .transport(Transport::Mqtt)
        .timeout(Duration::from_secs(20))
        .build()?
        .register()
        .await;
    ensure!(refused_mqtt.is_err(), "a wrong key is refused over MQTT");

    // A service API call with a made-up credential, for the access log.
    let secret_signature = "accessLogMustNotShowThisSignature";
    let answer = http
        .get(format!(
            "https://{service_addr}/enrollments/{refused_id}?api-version=2021-10-01"
        ))
        .header(
            "Authorization",
            format!("SharedAccessSignature sr=x&sig={secret_signature}&se=1&skn=owner"),
        )
        .send()
        .await?;
    assert_eq!(answer.status(), 401);

    // A TLS handshake that fails: plain HTTP on the device port.
    let mut plain = std::net::TcpStream::connect(device_addr)?;
    plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    drop(plain);

    // Scrape (again, until the handshake failure's task has counted it).
    let admin = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (content_type, text) = loop {
        let answer = admin
            .get(format!("http://{admin_addr}/metrics"))
            .send()
            .await?;
        assert_eq!(answer.status(), 200);
        let content_type = answer.headers()["content-type"].to_str()?.to_owned();
        let text = answer.text().await?;
        let handshakes = sample(
            &text,
            "dps_tls_handshake_failures_total{listener=\"device\"}",
        );
        if handshakes.unwrap_or(0.0) >= 1.0 || Instant::now() > deadline {
            break (content_type, text);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");

    let mut check = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    check.stdin.take().unwrap().write_all(text.as_bytes())?;
    let checked = check.wait_with_output()?;
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let registrations = |transport: &str, outcome: &str, code: &str| {
        format!(
            "dps_registrations_total{{transport=\"{transport}\",outcome=\"{outcome}\",code=\"{code}\"}}"
        )
    };
    expect(&text, &registrations("https", "assigned", "none"), 2.0)?;
    expect(&text, &registrations("mqtt", "assigned", "none"), 1.0)?;
    expect(&text, &registrations("mqtt-ws", "assigned", "none"), 1.0)?;
    expect(
        &text,
        &registrations("https", "refused", &refused_code.to_string()),
        1.0,
    )?;
    expect(
        &text,
        &registrations("mqtt", "refused", &refused_code.to_string()),
        1.0,
    )?;
    expect(&text, "dps_registrations_in_flight", 0.0)?;
    expect(&text, "dps_service_requests_total{status=\"401\"}", 1.0)?;
    expect(
        &text,
        "dps_device_register_duration_seconds_count{transport=\"https\"}",
        3.0,
    )?;
    expect(
        &text,
        "dps_device_register_duration_seconds_count{transport=\"mqtt\"}",
        2.0,
    )?;
    expect(
        &text,
        "dps_device_register_duration_seconds_count{transport=\"mqtt-ws\"}",
        1.0,
    )?;
    expect(
        &text,
        "dps_billing_operations_total{kind=\"registration\"}",
        4.0,
    )?;
    ensure!(
        sample(
            &text,
            "dps_tls_handshake_failures_total{listener=\"device\"}"
        ) >= Some(1.0),
        "the failed handshake is counted:\n{text}"
    );
    for present in [
        "dps_open_connections{listener=\"mqtt\"}",
        "dps_connections_accepted_total{listener=\"device\"}",
        "dps_attestation_duration_seconds_count",
        "dps_allocation_duration_seconds_count{policy=\"hashed\"}",
        "dps_store_writer_batch_size_count",
        "dps_store_writer_queue_depth",
        "dps_device_throttled_total",
    ] {
        let found = text.lines().any(|line| line.starts_with(present));
        if present == "dps_device_throttled_total" {
            ensure!(!found, "nothing was throttled");
            continue;
        }
        ensure!(found, "{present} missing from\n{text}");
    }
    let hub_calls: f64 = text
        .lines()
        .filter(|l| l.starts_with("dps_hub_call_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    ensure!(
        hub_calls >= 4.0,
        "a hub call per registration at least:\n{text}"
    );

    // The log: one structured line for the refused device, no token.
    let events = server.log_events();
    let refusals: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "registration refused or failed")
        .collect();
    assert_eq!(refusals.len(), 2, "one line per refused registration");
    let fields = &refusals[0]["fields"];
    // Over MQTT the connection is accepted unverified and the register
    // request refused.
    assert_eq!(refusals[1]["fields"]["transport"], "mqtt");
    assert_eq!(refusals[1]["fields"]["instruction"], "register");
    assert_eq!(fields["registration_id"], refused_id.as_str());
    assert_eq!(fields["scope"], scope.as_str());
    assert_eq!(fields["transport"], "https");
    assert_eq!(fields["outcome"], "refused");
    assert_eq!(fields["peer"], "127.0.0.1");
    // The specific reason, although the device got the generic refusal.
    assert_eq!(
        fields["reason"],
        "Unauthorized: the token's signature matches neither key of the individual enrollment."
    );
    let access: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "dps::access")
        .collect();
    assert_eq!(access.len(), 1, "one service API request");
    assert_eq!(access[0]["fields"]["status"], 401);
    assert_eq!(
        access[0]["fields"]["path"],
        format!("/enrollments/{refused_id}")
    );
    let log = server.log();
    let signature = token
        .split('&')
        .find_map(|part| part.strip_prefix("sig="))
        .context("the token's signature")?;
    for secret in [token.as_str(), signature, secret_signature] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }

    server.child.kill().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_devices_writes_a_bounded_log_and_counts_every_refusal() -> Result<()> {
    const FLOOD: usize = 400;
    const WORKERS: usize = 8;
    let system = start_system(false).await?;
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(system.ca.as_bytes())?)
        .build()?;
    let id = system.devices[0].0.clone();
    let token = create_token(
        &registration_resource(&system.scope, &id),
        &SymmetricKey::from_base64(&generate_key())?,
        unix_now() + 600,
        Some("registration"),
    );
    let url = format!(
        "https://{}/{}/registrations/{id}/register?api-version=2021-06-01",
        system.device_addr, system.scope
    );
    let refuse = {
        let (http, url, token, id) = (http.clone(), url.clone(), token.clone(), id.clone());
        move || {
            let (http, url, token, id) = (http.clone(), url.clone(), token.clone(), id.clone());
            async move {
                let answer = http
                    .put(url)
                    .header("Authorization", token)
                    .json(&json!({ "registrationId": id }))
                    .send()
                    .await?;
                // Refused, then (the address failing too often) throttled.
                ensure!(
                    matches!(answer.status().as_u16(), 401 | 429),
                    "{}",
                    answer.status()
                );
                anyhow::Ok(())
            }
        }
    };
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let refuse = refuse.clone();
        workers.spawn(async move {
            for _ in 0..FLOOD / WORKERS {
                refuse().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let refusal_lines = |server: &Server| {
        server
            .log_events()
            .iter()
            .filter(|e| e["fields"]["message"] == "registration refused or failed")
            .count()
    };
    let written = refusal_lines(&system.server);
    // The burst (100), then 20 a second.
    let allowed = 100 + (20.0 * elapsed).ceil() as usize;
    ensure!(
        (100..=allowed).contains(&written),
        "{written} lines for {FLOOD} refusals in {elapsed:.2} s (allowed {allowed})"
    );
    ensure!(
        written < FLOOD,
        "the flood outran the limit: nothing suppressed"
    );

    // Dropped lines are summed up in one WARN before the next line that
    // passes, at most once per 10 s: during the flood when a token came
    // back meanwhile, else before the next line once a token is back (the
    // bucket refills at 20 a second: 50 ms each).
    tokio::time::sleep(Duration::from_millis(120)).await;
    refuse().await?;
    let events = system.server.log_events();
    let summaries: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["fields"]["message"] == "refused or failed registration lines suppressed (rate limit)"
        })
        .collect();
    assert_eq!(summaries.len(), 1, "one summary per 10 s");
    assert_eq!(summaries[0]["level"], "WARN");
    let suppressed = summaries[0]["fields"]["suppressed"]
        .as_u64()
        .context("suppressed count")? as usize;
    let lines = refusal_lines(&system.server);
    assert!(suppressed > 0 && lines + suppressed <= FLOOD + 1);
    assert!(lines <= written + 1, "at most the one after the pause");

    // The metrics count every refusal, logged or not.
    let text = reqwest::get(format!("http://{}/metrics", system.admin_addr))
        .await?
        .text()
        .await?;
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("dps_registrations_total{transport=\"https\""))
        .filter(|l| l.contains("outcome=\"refused\"") || l.contains("outcome=\"throttled\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, (FLOOD + 1) as f64, "{text}");
    Ok(())
}
