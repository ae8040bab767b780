//! The byte stream under fe2o3's AMQP connection: [`FrameGuard`] first
//! gives back the bytes already read (the protocol header of a connection
//! without SASL, or whatever followed the SASL outcome), so fe2o3's acceptor
//! sees the connection from its start, and checks every frame's size field
//! as the bytes go by: a size under 8 (fe2o3's decoder would index past the
//! end of such a frame) or over our cap fails the read, which closes the
//! connection before any frame is decoded.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the guard is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// Inside the 8-byte protocol header (`n` bytes seen).
    Header(u8),
    /// Inside a frame's 4-byte size field.
    Size { seen: u8, value: u32 },
    /// Inside a frame body, this many bytes left.
    Body(u32),
}

/// The frame-size checker of [`FrameGuard`], apart from any I/O.
#[derive(Clone, Debug)]
pub(crate) struct FrameSizes {
    position: Position,
    max_frame_bytes: u32,
}

impl FrameSizes {
    /// At the start of a protocol header, frames up to `max_frame_bytes`.
    pub(crate) fn new(max_frame_bytes: usize) -> Self {
        FrameSizes {
            position: Position::Header(0),
            max_frame_bytes: u32::try_from(max_frame_bytes).unwrap_or(u32::MAX),
        }
    }

    /// Account for `bytes`; an error names the first bad frame size.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            match self.position {
                Position::Header(seen) => {
                    let take = usize::from(8 - seen).min(bytes.len());
                    bytes = &bytes[take..];
                    // `take` ≤ 8 - seen ≤ 8.
                    let seen = seen + take as u8;
                    self.position = if seen == 8 {
                        Position::Size { seen: 0, value: 0 }
                    } else {
                        Position::Header(seen)
                    };
                }
                Position::Size { seen, value } => {
                    let value = (value << 8) | u32::from(bytes[0]);
                    bytes = &bytes[1..];
                    self.position = if seen + 1 < 4 {
                        Position::Size {
                            seen: seen + 1,
                            value,
                        }
                    } else if value < 8 {
                        return Err(format!("frame size {value} is under 8"));
                    } else if value > self.max_frame_bytes {
                        return Err(format!(
                            "frame size {value} is over {}",
                            self.max_frame_bytes
                        ));
                    } else {
                        Position::Body(value - 4)
                    };
                }
                Position::Body(left) => {
                    let take = bytes.len().min(left as usize);
                    bytes = &bytes[take..];
                    // `take` ≤ `left`, a u32.
                    let left = left - take as u32;
                    self.position = if left == 0 {
                        Position::Size { seen: 0, value: 0 }
                    } else {
                        Position::Body(left)
                    };
                }
            }
        }
        Ok(())
    }
}

/// A stream that yields `prefix` first and whose reads fail at the first
/// frame of a forbidden size.
#[derive(Debug)]
pub(crate) struct FrameGuard<T> {
    prefix: Bytes,
    sizes: FrameSizes,
    inner: T,
}

impl<T> FrameGuard<T> {
    /// `prefix` then `inner`, starting at a protocol header, frames up to
    /// `max_frame_bytes`.
    pub(crate) fn new(prefix: Bytes, inner: T, max_frame_bytes: usize) -> Self {
        FrameGuard {
            prefix,
            sizes: FrameSizes::new(max_frame_bytes),
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let read = if this.prefix.is_empty() {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            Poll::Ready(Ok(()))
        };
        match read {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                match this.sizes.feed(fresh) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(reason) => {
                        // A read that fails hands over no bytes.
                        buf.set_filled(before);
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, reason)))
                    }
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::AsyncReadExt as _;

    fn frame(size: u32) -> Vec<u8> {
        let mut bytes = size.to_be_bytes().to_vec();
        bytes.resize(size.max(4) as usize, 0);
        bytes
    }

    #[test]
    fn well_sized_frames_pass_in_any_split() {
        let mut stream = b"AMQP\x00\x01\x00\x00".to_vec();
        stream.extend(frame(8));
        stream.extend(frame(300));
        stream.extend(frame(1024));
        for chunk in 1..=stream.len() {
            let mut sizes = FrameSizes::new(1024);
            for part in stream.chunks(chunk) {
                sizes.feed(part).expect("valid");
            }
        }
    }

    #[test]
    fn small_and_large_frames_fail() {
        let mut header = b"AMQP\x00\x01\x00\x00".to_vec();
        header.extend(frame(1025));
        assert!(FrameSizes::new(1024).feed(&header).is_err());
        let mut small = b"AMQP\x00\x01\x00\x00".to_vec();
        small.extend(7u32.to_be_bytes());
        assert!(FrameSizes::new(1024).feed(&small).is_err());
    }

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_stream() {
        let mut rest = b"\x00\x01\x00\x00".to_vec();
        rest.extend(frame(8));
        let mut stream = FrameGuard::new(Bytes::from_static(b"AMQP"), &rest[..], 1024);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(&all[..4], b"AMQP");
        assert_eq!(&all[4..], &rest[..]);
    }

    #[tokio::test]
    async fn the_guard_fails_the_read_of_an_oversized_frame() {
        let mut bytes = b"AMQP\x00\x01\x00\x00".to_vec();
        bytes.extend(frame(5000));
        let mut guard = FrameGuard::new(Bytes::new(), &bytes[..], 4096);
        let mut all = Vec::new();
        let err = guard.read_to_end(&mut all).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    proptest! {
        // Every byte a device sends passes through here: nothing may panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), max in 8usize..5000) {
            let _ = FrameSizes::new(max).feed(&bytes);
        }
    }
}
