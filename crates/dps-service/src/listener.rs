//! The TLS accept loop shared by every listener (`accept_tls`: TCP accept
//! under the connection caps, TLS handshake bounded in time, the client
//! certificate chain captured), and HTTP/1.1 or HTTP/2 served on it by an
//! axum router under the header, body and idle timeouts, with the peer
//! address and the client certificate chain attached to every request.
//! MQTT over TLS runs its sessions on the same accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::config::ConnectionLimits;
use crate::connection_limits::{ConnectionGate, ConnectionPermit};
use crate::http_timeouts::{watchdog, Activity, DeadlineBody, Expired, Timeouts, Watched};

/// How long open requests may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long an idle connection may take to close politely (HTTP/2 GOAWAY).
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the transport knows about the connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The certificate chain the client presented (leaf first), or empty.
    pub client_chain: Arc<Vec<CertificateDer<'static>>>,
}

/// The connection's place under the caps, attached to every HTTP request
/// next to [`ConnectionInfo`]: whatever outlives the HTTP connection (an
/// MQTT-over-WebSocket session) keeps it, so it stays counted.
#[derive(Clone, Debug)]
pub struct ConnectionSlot {
    // Held, never read: dropping the last clone gives the place back.
    _permit: Arc<ConnectionPermit>,
}

/// Serve `router` over TLS on `listener` until `shutdown` turns true, under
/// the default [`ConnectionLimits`].
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: watch::Receiver<bool>,
) {
    let limits = ConnectionLimits::default();
    let gate = ConnectionGate::new("https", &limits);
    serve_tls_limited(listener, tls, router, shutdown, limits, gate).await;
}

/// Serve `router` over TLS on `listener` until `shutdown` turns true, under
/// `limits`, counting connections in `gate`.
pub async fn serve_tls_limited(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: watch::Receiver<bool>,
    limits: ConnectionLimits,
    gate: Arc<ConnectionGate>,
) {
    let timeouts = Timeouts::from(&limits);
    let connections_shutdown = shutdown.clone();
    let serve = move |tls, info, slot| {
        serve_http(
            tls,
            info,
            slot,
            router.clone(),
            timeouts,
            connections_shutdown.clone(),
        )
    };
    accept_tls(listener, tls, gate, &limits, shutdown, serve).await;
}

/// The one TLS accept loop of every listener (device HTTPS, service API,
/// MQTT over TLS; MQTT over WebSocket rides on the HTTPS one): accept
/// connections on `listener` until `shutdown` turns true; each one is
/// admitted by `gate` (over a cap it is closed at once), completes its TLS
/// handshake within `limits`' handshake timeout, and is then handed to
/// `serve` on its own task. The connection's place under the caps is held until
/// `serve` returns and every clone of its [`ConnectionSlot`] is gone.
pub(crate) async fn accept_tls<F, Fut>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    gate: Arc<ConnectionGate>,
    limits: &ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TlsStream<TcpStream>, ConnectionInfo, ConnectionSlot) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let handshake_timeout = limits.tls_handshake_timeout();
    let serve = Arc::new(serve);
    let listener_name = gate.listener();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = listener_name, %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over a cap: dropping the socket closes it before any TLS work; the
        // gate counts and logs the refusal (once per interval).
        let Ok(permit) = gate.admit(peer.ip()) else {
            continue;
        };
        let slot = ConnectionSlot {
            _permit: Arc::new(permit),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let serve = serve.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    gate.tls_handshake_failed();
                    tracing::debug!(listener = listener_name, %peer, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    gate.tls_handshake_failed();
                    tracing::debug!(listener = listener_name, %peer, "TLS handshake timed out");
                    return;
                }
            };
            let client_chain = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let info = ConnectionInfo {
                peer,
                client_chain: Arc::new(client_chain),
            };
            serve(tls, info, slot).await;
        });
    }
}

/// Serve HTTP on one TLS connection until it ends, a timeout expires, or
/// shutdown.
async fn serve_http(
    tls: TlsStream<TcpStream>,
    info: ConnectionInfo,
    slot: ConnectionSlot,
    router: Router,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = info.peer;
    let alpn_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let activity = Activity::new(alpn_h2);
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |request: http::Request<Incoming>| {
            let in_flight = activity.begin(request.version() == http::Version::HTTP_2);
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(info.clone());
            parts.extensions.insert(slot.clone());
            let request = http::Request::from_parts(parts, DeadlineBody::new(body, timeouts.body));
            let router = router.clone();
            async move {
                let response = router
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {});
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's own HTTP/1.1 header timer also runs while a keep-alive
    // connection waits for its next request, so it is set no shorter than
    // the idle timeout: a backstop behind the watchdog, which tells idle
    // from dribbling.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header.max(timeouts.idle));
    // Pings find dead peers under long requests; idle connections are the
    // watchdog's.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeouts.idle / 2)
        .keep_alive_timeout(timeouts.header);
    let io = TokioIo::new(Watched::new(tls, activity.clone()));
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        }
        expired = watchdog(&activity, timeouts) => {
            tracing::debug!(%peer, reason = expired.as_str(), "closing the connection");
            if expired == Expired::Idle {
                // Nothing in flight: let HTTP/2 say GOAWAY, briefly.
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, connection).await;
            }
            // A request whose headers are late is simply dropped.
        }
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
