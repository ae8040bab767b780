//! Reaching the service for the stream transports (MQTT, AMQP): TCP, TLS,
//! and the WebSocket upgrade on `/$iothub/websocket` with a subprotocol.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::WebSocketStream;

use crate::credential::Credential;
use crate::{ClientError, TlsTrust};

/// The WebSocket path of the official SDKs, for MQTT and AMQP alike.
pub(crate) const WEBSOCKET_PATH: &str = "/$iothub/websocket";

/// Where a connection goes: the endpoint as configured, and its host and port.
#[derive(Clone, Debug)]
pub(crate) struct Target<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl<'a> Target<'a> {
    /// `endpoint` (`host` or `host:port`, IPv6 in brackets), `default_port`
    /// when it names none.
    pub(crate) fn new(endpoint: &'a str, default_port: u16) -> Self {
        let (host, port) = split_host_port(endpoint, default_port);
        Target {
            endpoint,
            host,
            port,
        }
    }

    pub(crate) fn network(&self, reason: impl Into<String>) -> ClientError {
        ClientError::Network {
            endpoint: self.endpoint.to_owned(),
            reason: reason.into(),
        }
    }

    /// TCP (no Nagle: the exchanges are small request/answer pairs), then TLS.
    pub(crate) async fn tls(
        &self,
        config: Arc<ClientConfig>,
    ) -> Result<TlsStream<TcpStream>, ClientError> {
        let server_name = ServerName::try_from(self.host.clone())
            .map_err(|e| self.network(format!("invalid host name {:?}: {e}", self.host)))?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.network(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| self.network(format!("TLS: {e}")))
    }

    /// The WebSocket upgrade over `stream`, asking for `subprotocol`.
    pub(crate) async fn websocket<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        subprotocol: &'static str,
    ) -> Result<WebSocketStream<S>, ClientError> {
        // The SDKs send no port in Host for 443.
        let host_header = if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut request = format!("wss://{host_header}{WEBSOCKET_PATH}")
            .into_client_request()
            .map_err(|e| self.network(format!("WebSocket request: {e}")))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(subprotocol),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| self.network(format!("WebSocket upgrade: {e}")))?;
        Ok(ws)
    }
}

/// The TLS configuration of a stream transport (MQTT, AMQP): the trusted
/// roots (the same [`TlsTrust`] the HTTPS transport uses, so a swarm's
/// shared trust applies to every transport), the X.509 credential as the
/// client certificate, and no ALPN — neither protocol has one, and the
/// WebSocket upgrade relies on the server's HTTP/1.1 default, as the SDKs'
/// connections do.
pub(crate) fn stream_tls(
    trust: &TlsTrust,
    credential: &Credential,
) -> Result<Arc<ClientConfig>, ClientError> {
    let identity = match credential {
        Credential::X509 { chain_pem, key_pem } => Some((chain_pem.as_str(), key_pem.as_str())),
        Credential::SymmetricKey(_) | Credential::Tpm(_) => None,
    };
    let mut config = trust.client_config(identity)?;
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// `host` or `host:port` (IPv6 in brackets) → host and port.
pub(crate) fn split_host_port(endpoint: &str, default_port: u16) -> (String, u16) {
    if let Some(rest) = endpoint.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (host.to_owned(), port);
        }
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_owned(), port),
            Err(_) => (endpoint.to_owned(), default_port),
        },
        _ => (endpoint.to_owned(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(
            split_host_port("dps.example", 5671),
            ("dps.example".to_owned(), 5671)
        );
        assert_eq!(
            split_host_port("127.0.0.1:9000", 5671),
            ("127.0.0.1".to_owned(), 9000)
        );
        assert_eq!(split_host_port("[::1]:9000", 443), ("::1".to_owned(), 9000));
        assert_eq!(split_host_port("[::1]", 443), ("::1".to_owned(), 443));
    }
}
