//! The admin listener: `/healthz` and `/readyz` of the real server, and
//! readiness following PostgreSQL going away and coming back without a
//! restart (the database reached through a forwarder the test stops).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use dps_attestation::keys::generate_key;
use dps_service::server::RunningServer;
use dps_service::ServiceConfig;
use dps_storage::postgres::scratch::ScratchSchema;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

fn config(dir: &std::path::Path, storage_url: Option<String>) -> ServiceConfig {
    let mut config = ServiceConfig {
        data_dir: dir.to_path_buf(),
        storage_url,
        operator_key: Some(generate_key()),
        ..ServiceConfig::default()
    };
    config.device.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.service.listen = SocketAddr::from(([127, 0, 0, 2], 0));
    config.device.mqtt.enabled = false;
    config
}

async fn get(server: &RunningServer, path: &str) -> Result<(StatusCode, Value)> {
    let addr = server.admin_addr().context("admin listener is off")?;
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

/// Poll `/readyz` until `want` answers (within `within`); the last body.
async fn wait_for(server: &RunningServer, want: StatusCode, within: Duration) -> Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get(server, "/readyz").await?;
        if status == want {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("/readyz still answers {status} after {within:?}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_sqlite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = dps_service::server::start(config(dir.path(), None)).await?;
    let addr = server.admin_addr().context("admin address")?;
    assert!(addr.ip().is_loopback(), "{addr}");

    let (status, body) = get(&server, "/healthz").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");

    let (status, body) = get(&server, "/readyz").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    for check in ["store", "listeners", "schema"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_stalled_request_head_is_cut_off() -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir()?;
    let server = dps_service::server::start(config(dir.path(), None)).await?;
    let mut stream = TcpStream::connect(server.admin_addr().context("admin address")?).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was still open after 15 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn admin_listener_can_be_disabled() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = config(dir.path(), None);
    config.admin.enabled = false;
    let server = dps_service::server::start(config).await?;
    assert_eq!(server.admin_addr(), None);
    server.shutdown().await;
    Ok(())
}

/// A TCP forwarder from an ephemeral loopback port to PostgreSQL that can be
/// stopped (listener and every live connection dropped) and started again on
/// the same port: a database outage as the server sees it.
struct Forwarder {
    addr: SocketAddr,
    target: String,
    tasks: JoinSet<()>,
}

impl Forwarder {
    async fn start(addr: SocketAddr, target: String) -> Result<Forwarder> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut forwarder = Forwarder {
            addr,
            target,
            tasks: JoinSet::new(),
        };
        let target = forwarder.target.clone();
        forwarder.tasks.spawn(async move {
            // Connections live in this set: aborting the accept task drops it
            // and with it every open connection.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(forwarder)
    }

    async fn stop(mut self) -> (SocketAddr, String) {
        self.tasks.shutdown().await;
        (self.addr, self.target)
    }
}

/// `host:port` of a `postgres://user:pass@host:port/db?…` URL, and the URL
/// with that authority replaced by `to`.
fn redirect(url: &str, to: SocketAddr) -> Result<(String, String)> {
    let scheme_end = url.find("://").context("URL scheme")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host = &authority[host_start..];
    let target = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let redirected = format!(
        "{}{}{to}{}",
        &url[..scheme_end],
        &authority[..host_start],
        &rest[authority_end..]
    );
    Ok((target, redirected))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_postgres_going_away_and_coming_back() -> Result<()> {
    let Some(schema) = ScratchSchema::create().await else {
        return Ok(());
    };
    let (target, _) = redirect(schema.url(), SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let forwarder = Forwarder::start(SocketAddr::from(([127, 0, 0, 1], 0)), target).await?;
    let (_, url) = redirect(schema.url(), forwarder.addr)?;
    // Short pool timeouts: the outage shows (and ends) within seconds.
    let url = format!(
        "{url}&dps_max_connections=2&dps_acquire_timeout_ms=1000&dps_connect_timeout_ms=1000"
    );
    let dir = tempfile::tempdir()?;
    let server = dps_service::server::start(config(dir.path(), Some(url))).await?;
    let body = wait_for(&server, StatusCode::OK, Duration::from_secs(5)).await?;
    assert_eq!(body["checks"]["store"]["ok"], true, "{body}");

    let (addr, target) = forwarder.stop().await;
    let body = wait_for(
        &server,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(8),
    )
    .await?;
    assert_eq!(body["status"], "not ready", "{body}");
    assert_eq!(body["checks"]["store"]["ok"], false, "{body}");
    let error = body["checks"]["store"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(!error.is_empty(), "{body}");
    assert!(!error.contains(schema.url()), "the URL leaked: {error}");
    assert_eq!(body["checks"]["listeners"]["ok"], true, "{body}");
    // Liveness is not readiness: the process is still alive.
    assert_eq!(get(&server, "/healthz").await?.0, StatusCode::OK);

    let forwarder = Forwarder::start(addr, target).await?;
    let body = wait_for(&server, StatusCode::OK, Duration::from_secs(8)).await?;
    assert_eq!(body["checks"]["store"]["ok"], true, "{body}");

    server.shutdown().await;
    forwarder.stop().await;
    Ok(())
}
