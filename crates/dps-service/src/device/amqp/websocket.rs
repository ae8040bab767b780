//! AMQP over WebSocket (subprotocol `AMQPWSB10`, docs/amqp.md §6): the AMQP
//! byte stream rides in binary messages split anywhere. A bridge copies it
//! between the WebSocket and an in-memory pipe under the same connection
//! code as AMQP over TLS.

use std::sync::Arc;

use futures::{SinkExt as _, StreamExt as _};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{connection, AmqpEndpoint};
use crate::listener::ConnectionInfo;
use crate::pipeline::TransportKind;

/// The WebSocket subprotocol of AMQP.
pub(crate) const SUBPROTOCOL: &str = "AMQPWSB10";

/// Serve one upgraded WebSocket as an AMQP connection until it ends.
pub(crate) async fn run(
    ws: WebSocketStream<TokioIo<Upgraded>>,
    info: ConnectionInfo,
    endpoint: Arc<AmqpEndpoint>,
) {
    let (ours, theirs) = tokio::io::duplex(2 * endpoint.limits.max_frame_bytes);
    let bridge = tokio::spawn(pump(ws, theirs));
    connection::run(ours, info, TransportKind::AmqpWs, endpoint).await;
    // The connection dropped its end of the pipe: the pump sees EOF and
    // closes the WebSocket; give it a moment, then stop it.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bridge).await;
}

/// Copy bytes both ways until either side ends.
async fn pump(ws: WebSocketStream<TokioIo<Upgraded>>, mut pipe: DuplexStream) {
    let (mut sink, mut stream) = ws.split();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if pipe.write_all(&data).await.is_err() {
                        break;
                    }
                }
                // tungstenite queued the pong: send it now.
                Some(Ok(Message::Ping(_))) => {
                    if sink.flush().await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                // A text message is not AMQP; a close or an error ends it.
                Some(Ok(Message::Text(_) | Message::Close(_))) | Some(Err(_)) | None => break,
            },
            read = pipe.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if sink.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = sink.close().await;
}
