//! Listener, TLS, per-request routing to a hub, faults, graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use dps_attestation::keys::generate_key;
use dps_attestation::sas::SymmetricKey;
use dps_hub::wire::{Device, Twin};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::LazyConfigAcceptor;
use tower::ServiceExt as _;

use crate::config::{Fault, HubSimConfig};
use crate::http::{authorize, fault_reply, router, throttled_reply, unknown_hub, RoutedHub};
use crate::persist::{self, PersistedHub};
use crate::state::{HubState, SimState};
use crate::throttle::{meter_of, Throttling};
use crate::tls;
use crate::HubSimError;

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The IoT hub emulator.
pub struct HubSim;

impl HubSim {
    /// Bind, build TLS, load the data file and serve in background tasks of the
    /// current tokio runtime.
    pub async fn start(config: HubSimConfig) -> Result<RunningHubSim, HubSimError> {
        let saved = match &config.data_file {
            Some(path) => persist::load(path)?.unwrap_or_default(),
            None => Default::default(),
        };
        let (hubs, dormant) = build_hubs(&config, saved.hubs)?;
        let host_names: Vec<String> = hubs.iter().map(|h| h.host_name.clone()).collect();
        let material = tls::load(&config.tls, &host_names, config.listen.ip())?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| HubSimError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| HubSimError::Bind {
            addr: config.listen,
            source,
        })?;
        let state = Arc::new(SimState {
            hubs,
            dormant,
            changed: Notify::new(),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let writer = config.data_file.clone().map(|path| {
            tokio::spawn(persist::writer(
                Arc::clone(&state),
                path,
                shutdown_rx.clone(),
            ))
        });
        let server = tokio::spawn(accept_loop(
            listener,
            material.config,
            Arc::clone(&state),
            router(Arc::clone(&state)),
            shutdown_rx,
        ));
        tracing::info!(%addr, hubs = ?host_names, "hub emulator listening");
        Ok(RunningHubSim {
            addr,
            ca_pem: material.ca_pem,
            state,
            shutdown: shutdown_tx,
            server: Some(server),
            writer,
        })
    }
}

/// Served hubs, and stored hubs that are not served (kept in the file).
type Hubs = (Vec<Arc<HubState>>, BTreeMap<String, PersistedHub>);

fn build_hubs(
    config: &HubSimConfig,
    mut saved: BTreeMap<String, PersistedHub>,
) -> Result<Hubs, HubSimError> {
    let invalid = |reason: String| HubSimError::InvalidConfig { reason };
    let mut wanted: Vec<(PersistedHub, Option<Throttling>)> = Vec::new();
    if config.hubs.is_empty() {
        wanted.extend(std::mem::take(&mut saved).into_values().map(|h| (h, None)));
    }
    for spec in &config.hubs {
        let host = spec.host_name.trim();
        if host.is_empty() || host.contains(['/', ' ', ';', '@']) {
            return Err(invalid(format!("{host:?} is not a hub host name")));
        }
        let stored = saved.remove(&host.to_ascii_lowercase());
        let key = match (&spec.key, &stored) {
            (Some(key), _) => key.clone(),
            (None, Some(stored)) => stored.key.clone(),
            (None, None) => generate_key(),
        };
        wanted.push((
            PersistedHub {
                host_name: host.to_owned(),
                key_name: spec.key_name.clone(),
                key,
                registry: stored.map(|s| s.registry).unwrap_or_default(),
            },
            spec.throttling.clone(),
        ));
    }
    if wanted.is_empty() {
        return Err(invalid("no hub to serve".to_owned()));
    }
    let mut hubs: Vec<Arc<HubState>> = Vec::new();
    for (hub, throttling) in wanted {
        if hubs
            .iter()
            .any(|h| h.host_name.eq_ignore_ascii_case(&hub.host_name))
        {
            return Err(invalid(format!("hub {:?} is listed twice", hub.host_name)));
        }
        let key = SymmetricKey::from_base64(&hub.key)
            .ok()
            .filter(|k| !k.as_bytes().is_empty())
            .ok_or_else(|| invalid(format!("the key of hub {:?} is not base64", hub.host_name)))?;
        hubs.push(Arc::new(HubState::new(hub, key, throttling.as_ref())));
    }
    Ok((hubs, saved))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<SimState>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    connections.spawn(serve_connection(
                        tcp,
                        Arc::clone(&tls),
                        Arc::clone(&state),
                        router.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "hub emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<SimState>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        // A hub made unreachable is cut before the handshake when the client names it.
        let unreachable = start
            .client_hello()
            .server_name()
            .and_then(|sni| state.hub(sni))
            .is_some_and(|hub| hub.is_unreachable());
        if unreachable {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "hub unreachable (injected fault)",
            ));
        }
        start.into_stream(tls).await
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => stream,
        _ => return,
    };
    let service = hyper::service::service_fn(move |request| {
        handle_request(Arc::clone(&state), router.clone(), request)
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Returned to hyper to cut a request without a reply (the `Unreachable` fault).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request dropped (injected fault)")
    }
}

impl std::error::Error for Dropped {}

async fn handle_request(
    state: Arc<SimState>,
    router: Router,
    mut request: Request<Incoming>,
) -> Result<Response, Dropped> {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let Some(hub) = state.route(authority.as_deref(), authorization.as_deref()) else {
        return Ok(unknown_hub(authority.as_deref()));
    };
    hub.count_request();
    match hub.take_fault() {
        Some(Fault::Unreachable) => return Err(Dropped),
        Some(Fault::Status(status)) => return Ok(fault_reply(status, None)),
        Some(Fault::Throttle { retry_after_secs }) => {
            return Ok(fault_reply(429, Some(retry_after_secs)))
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    if let Err(refusal) = authorize(&hub, authorization.as_deref()) {
        return Ok(refusal.into_response());
    }
    if let Some(meter) = meter_of(request.method(), request.uri().path()) {
        if let Err(retry_after) = hub.charge(meter, 1) {
            return Ok(throttled_reply(&retry_after));
        }
    }
    request.extensions_mut().insert(RoutedHub(hub));
    let request = request.map(Body::new);
    Ok(match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    })
}

/// A running emulator. Dropping it stops the server without waiting;
/// [`RunningHubSim::shutdown`] waits for it and for the final data-file write.
pub struct RunningHubSim {
    addr: SocketAddr,
    ca_pem: Option<String>,
    state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningHubSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHubSim")
            .field("addr", &self.addr)
            .field("hubs", &self.hosts())
            .finish_non_exhaustive()
    }
}

impl RunningHubSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the server certificate (generated TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Host names of the served hubs.
    pub fn hosts(&self) -> Vec<String> {
        self.state
            .hubs
            .iter()
            .map(|h| h.host_name.clone())
            .collect()
    }

    /// `HostName=<host>;SharedAccessKeyName=iothubowner;SharedAccessKey=<key>`.
    pub fn connection_string(&self, host: &str) -> Option<String> {
        self.state.hub(host).map(|h| h.connection_string())
    }

    /// Inject a fault into every request to `host` until cleared. `false` if no such hub.
    pub fn set_fault(&self, host: &str, fault: Fault) -> bool {
        self.with_hub(host, |h| h.set_fault(Some(fault), None))
            .is_some()
    }

    /// Inject a fault into the next `times` requests to `host`.
    pub fn set_fault_times(&self, host: &str, fault: Fault, times: u32) -> bool {
        self.with_hub(host, |h| h.set_fault(Some(fault), Some(times)))
            .is_some()
    }

    /// Serve `host` normally again.
    pub fn clear_fault(&self, host: &str) -> bool {
        self.with_hub(host, |h| h.set_fault(None, None)).is_some()
    }

    /// The device identity as stored (test assertions).
    pub fn device(&self, host: &str, device_id: &str) -> Option<Device> {
        self.with_hub(host, |h| h.registry().get_device(device_id).ok())
            .flatten()
    }

    /// The twin as a client would read it (test assertions).
    pub fn twin(&self, host: &str, device_id: &str) -> Option<Twin> {
        self.with_hub(host, |h| h.registry().get_twin(device_id).ok())
            .flatten()
    }

    /// Number of devices on `host` (0 for an unknown hub).
    pub fn device_count(&self, host: &str) -> usize {
        self.with_hub(host, |h| h.registry().len()).unwrap_or(0)
    }

    /// Identity registry operations asked of `host` so far (each bulk entry
    /// is one), whether throttled or not.
    pub fn registry_operation_count(&self, host: &str) -> u64 {
        self.with_hub(host, |h| h.registry_operation_count())
            .unwrap_or(0)
    }

    /// Requests `host` refused with 429 by its throttling model so far.
    pub fn throttled_count(&self, host: &str) -> u64 {
        self.with_hub(host, |h| h.throttled_count()).unwrap_or(0)
    }

    /// Requests routed to `host` so far, faulted ones included.
    pub fn request_count(&self, host: &str) -> u64 {
        self.with_hub(host, |h| h.request_count()).unwrap_or(0)
    }

    fn with_hub<T>(&self, host: &str, f: impl FnOnce(&HubState) -> T) -> Option<T> {
        self.state.hub(host).map(|h| f(h))
    }

    /// Stop accepting, let open requests finish (briefly), write the data file.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }
}

impl Drop for RunningHubSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
