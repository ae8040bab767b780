//! The byte pipe under an MQTT session: a TLS stream (port 8883) or a
//! WebSocket (MQTT over WebSocket on the HTTPS port), where MQTT packets ride
//! in binary messages that may split or join packets freely.

use std::io;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt as _};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Any byte stream a session can run over (TLS in production).
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// The connection an MQTT session runs over.
pub(crate) enum Transport {
    /// MQTT directly over a byte stream.
    Stream(Box<dyn ByteStream>),
    /// MQTT in WebSocket binary messages.
    WebSocket(Box<WebSocketStream<TokioIo<Upgraded>>>),
}

impl Transport {
    /// Append whatever arrives next to `buf`; `Ok(0)` once the peer closed.
    /// Cancel-safe: nothing is lost when the future is dropped.
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Transport::Stream(stream) => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
                stream.read_buf(buf).await
            }
            Transport::WebSocket(ws) => loop {
                let message = match ws.next().await {
                    None => return Ok(0),
                    Some(Ok(message)) => message,
                    Some(Err(err)) => return Err(io::Error::other(err)),
                };
                match message {
                    Message::Binary(data) if !data.is_empty() => {
                        buf.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    Message::Binary(_) | Message::Pong(_) | Message::Frame(_) => {}
                    // tungstenite queued the pong; send it now rather than
                    // with the next reply.
                    Message::Ping(_) => ws.flush().await.map_err(io::Error::other)?,
                    Message::Close(_) => return Ok(0),
                    Message::Text(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "MQTT over WebSocket must use binary messages",
                        ))
                    }
                }
            },
        }
    }

    /// Send one or more encoded packets.
    pub(crate) async fn send(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            Transport::Stream(stream) => {
                stream.write_all(&bytes).await?;
                stream.flush().await
            }
            Transport::WebSocket(ws) => ws
                .send(Message::Binary(bytes))
                .await
                .map_err(io::Error::other),
        }
    }

    /// Close politely (TLS close_notify, WebSocket close frame).
    pub(crate) async fn close(&mut self) {
        match self {
            Transport::Stream(stream) => {
                let _ = stream.shutdown().await;
            }
            Transport::WebSocket(ws) => {
                let _ = SinkExt::close(ws.as_mut()).await;
            }
        }
    }
}
