//! WebSocket upgrades on the HTTPS device router: a request that asks to
//! upgrade to WebSocket with the `mqtt` subprotocol becomes an MQTT session,
//! one asking for `AMQPWSB10` an AMQP connection ([`crate::device::amqp`]),
//! on any path (Node and Python use `/$iothub/websocket`, C# none) and
//! whatever the `Host`; every other request goes to the HTTPS routes unchanged.
//!
//! Extensions offered by the client (Node offers permessage-deflate) are not
//! accepted: MQTT packets here are small JSON, and the 101 answer simply
//! omits `Sec-WebSocket-Extensions`, which every client handles.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::transport::Transport;
use super::{session, MqttEndpoint};
use crate::device::amqp::{self, AmqpEndpoint};
use crate::listener::{ConnectionInfo, ConnectionSlot};
use crate::respond::ApiError;

/// The subprotocol of MQTT over WebSocket.
const SUBPROTOCOL: &str = "mqtt";

/// The endpoints an upgrade may lead to.
#[derive(Clone, Debug)]
struct Upgrades {
    mqtt: Option<Arc<MqttEndpoint>>,
    amqp: Option<Arc<AmqpEndpoint>>,
}

/// Which endpoint an upgrade asked for.
enum Target {
    Mqtt(Arc<MqttEndpoint>),
    Amqp(Arc<AmqpEndpoint>),
}

/// `router` with the MQTT-over-WebSocket upgrade in front of it.
pub fn with_websocket(router: Router, endpoint: Arc<MqttEndpoint>) -> Router {
    with_websockets(router, Some(endpoint), None)
}

/// `router` with the MQTT and AMQP WebSocket upgrades (each when given) in
/// front of it.
pub fn with_websockets(
    router: Router,
    mqtt: Option<Arc<MqttEndpoint>>,
    amqp: Option<Arc<AmqpEndpoint>>,
) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Upgrades { mqtt, amqp },
        hook,
    ))
}

async fn hook(State(upgrades): State<Upgrades>, request: Request, next: Next) -> Response {
    match choose(upgrades, request.headers()) {
        Some((target, subprotocol)) => upgrade(target, request, subprotocol),
        None => next.run(request).await,
    }
}

/// The endpoint and subprotocol token an upgrade asks for, if served.
fn choose(upgrades: Upgrades, headers: &HeaderMap) -> Option<(Target, String)> {
    let mqtt = upgrades
        .mqtt
        .and_then(|e| subprotocol(headers, SUBPROTOCOL).map(|p| (Target::Mqtt(e), p)));
    mqtt.or_else(|| {
        let wanted = subprotocol(headers, amqp::websocket::SUBPROTOCOL)?;
        upgrades.amqp.map(|e| (Target::Amqp(e), wanted))
    })
}

/// The `name` token exactly as the client wrote it, when this is a
/// WebSocket upgrade asking for it.
fn subprotocol(headers: &HeaderMap, name: &str) -> Option<String> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if !tokens(upgrade).any(|t| t.eq_ignore_ascii_case("websocket")) {
        return None;
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(tokens)
        .find(|t| t.eq_ignore_ascii_case(name))
        .map(str::to_owned)
}

fn tokens(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|t| !t.is_empty())
}

fn upgrade(target: Target, mut request: Request, subprotocol: String) -> Response {
    let headers = request.headers();
    if request.method() != Method::GET {
        return ApiError::bad_request("A WebSocket upgrade must be a GET.").into_response();
    }
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut response =
            ApiError::unsupported("Only WebSocket version 13 is supported.").into_response();
        *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return ApiError::bad_request("Sec-WebSocket-Key is missing.").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(connection) = request.extensions().get::<ConnectionInfo>().cloned() else {
        return ApiError::internal("WebSocket upgrade without connection information")
            .into_response();
    };
    // The session outlives the HTTP connection: it keeps the connection's
    // place under the caps until it ends.
    let slot = request.extensions().get::<ConnectionSlot>().cloned();
    // Present only on HTTP/1.1 connections served with upgrades.
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return ApiError::bad_request("This connection cannot be upgraded (HTTP/1.1 only).")
            .into_response();
    };
    let max_bytes = match &target {
        Target::Mqtt(endpoint) => endpoint.limits.max_packet_bytes,
        Target::Amqp(endpoint) => endpoint.max_frame_bytes(),
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(2 * max_bytes))
        .max_frame_size(Some(2 * max_bytes));
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                match target {
                    Target::Mqtt(endpoint) => {
                        session::run(Transport::WebSocket(Box::new(ws)), connection, endpoint).await
                    }
                    Target::Amqp(endpoint) => amqp::websocket::run(ws, connection, endpoint).await,
                }
                drop(slot);
            }
            Err(err) => tracing::debug!(%err, "WebSocket upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&subprotocol) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    response
}
