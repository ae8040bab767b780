//! Time limits of one HTTP connection that hyper does not enforce itself:
//!
//! * **headers**: the first request's headers must be complete within the
//!   header timeout of the TLS handshake's end (hyper-util's protocol
//!   detection waits for bytes forever), and on HTTP/1.1 a later request's
//!   within the header timeout of its first byte (hyper's own header timer
//!   also runs while a keep-alive connection idles, so it cannot tell an
//!   idle client from a dribbling one);
//! * **idle**: a connection with no request in flight is closed after the
//!   idle timeout (hyper has no idle timeout for HTTP/2 at all);
//! * **body**: a request body must be complete within the body timeout of
//!   its headers ([`DeadlineBody`]); past it the body read fails, and the
//!   handler's body extractor answers 400.
//!
//! [`Activity`] is shared by the connection's byte stream ([`Watched`]
//! notes reads), its service (requests in flight) and the [`watchdog`],
//! which resolves once a deadline passes.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ConnectionLimits;

/// Why the watchdog closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// A request's headers did not arrive in time.
    Headers,
    /// No request was in flight for the idle timeout.
    Idle,
}

impl Expired {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Expired::Headers => "header read timeout",
            Expired::Idle => "keep-alive idle timeout",
        }
    }
}

/// What the watchdog needs to know about one connection. Times are
/// milliseconds since `start`; `first_read` is that plus one (0 = none).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    http2: AtomicBool,
    idle_since: AtomicU64,
    first_read: AtomicU64,
    changed: Notify,
}

impl Activity {
    /// A connection whose TLS handshake just ended; `http2` when ALPN chose h2.
    pub(crate) fn new(http2: bool) -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(http2),
            idle_since: AtomicU64::new(0),
            first_read: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Bytes arrived. On an idle HTTP/1.1 connection they start a request,
    /// whose headers are now on the clock. (HTTP/2 sends frames of its own
    /// — settings, pings, window updates — so there only the idle timeout
    /// applies between requests.)
    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
            && self
                .first_read
                .compare_exchange(0, self.now_ms() + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// A request's headers are complete: it is in flight until the guard drops.
    pub(crate) fn begin(self: &Arc<Self>, http2: bool) -> InFlight {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.first_read.store(0, Ordering::Release);
        self.changed.notify_one();
        InFlight {
            activity: self.clone(),
        }
    }

    /// When the connection expires as things stand, and why; `None` while a
    /// request is in flight.
    fn deadline(&self, limits: &Timeouts) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Relaxed) {
            return Some((self.start + limits.header, Expired::Headers));
        }
        let idle = (
            self.at(self.idle_since.load(Ordering::Acquire)) + limits.idle,
            Expired::Idle,
        );
        match self.first_read.load(Ordering::Acquire) {
            0 => Some(idle),
            first => {
                let headers = (self.at(first - 1) + limits.header, Expired::Headers);
                Some(if headers.0 < idle.0 { headers } else { idle })
            }
        }
    }
}

/// A request in flight; dropping it (response produced, or the request
/// abandoned) may start the idle clock.
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity
                .idle_since
                .store(activity.now_ms(), Ordering::Release);
            activity.first_read.store(0, Ordering::Release);
            activity.changed.notify_one();
        }
    }
}

/// The connection's time limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) body: Duration,
    pub(crate) idle: Duration,
}

impl From<&ConnectionLimits> for Timeouts {
    fn from(limits: &ConnectionLimits) -> Self {
        Timeouts {
            header: limits.header_read_timeout(),
            body: limits.body_read_timeout(),
            idle: limits.idle_timeout(),
        }
    }
}

/// Resolves once the connection has passed a deadline.
pub(crate) async fn watchdog(activity: &Activity, limits: Timeouts) -> Expired {
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        // Register before reading the state, so no change is missed.
        changed.as_mut().enable();
        match activity.deadline(&limits) {
            None => changed.await,
            Some((deadline, why)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        if activity.deadline(&limits).is_some_and(|(at, _)| at <= Instant::now()) {
                            return why;
                        }
                    }
                    _ = changed => {}
                }
            }
        }
    }
}

/// A byte stream that tells its [`Activity`] when bytes arrive.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The request body did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {limit:?}")]
pub(crate) struct BodyTimedOut {
    /// The body timeout.
    pub(crate) limit: Duration,
}

/// A request body that fails once its deadline has passed.
#[derive(Debug)]
pub(crate) struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must be complete within `limit` from now.
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            expired: false,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired = true;
                tracing::debug!(limit_ms = self.limit.as_millis(), "request body timed out");
                Poll::Ready(Some(Err(Box::new(BodyTimedOut { limit: self.limit }))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, StreamBody};

    // Real time, scaled down: 100 ms stands for the header timeout, 300 ms
    // for the idle one; each check allows the scheduler 80 ms of slack.
    fn limits() -> Timeouts {
        Timeouts {
            header: Duration::from_millis(100),
            body: Duration::from_millis(150),
            idle: Duration::from_millis(300),
        }
    }

    fn assert_about(elapsed: Duration, expected_ms: u64) {
        let expected = Duration::from_millis(expected_ms);
        assert!(
            elapsed >= expected && elapsed < expected + Duration::from_millis(80),
            "{elapsed:?}, expected about {expected:?}"
        );
    }

    #[tokio::test]
    async fn a_new_connection_must_send_headers_within_the_header_timeout() {
        let activity = Activity::new(false);
        let started = Instant::now();
        assert_eq!(watchdog(&activity, limits()).await, Expired::Headers);
        assert_about(started.elapsed(), 100);
    }

    #[tokio::test]
    async fn an_idle_connection_closes_after_the_idle_timeout_and_a_started_request_after_the_header_timeout(
    ) {
        let activity = Activity::new(false);
        drop(activity.begin(false));
        let started = Instant::now();
        assert_eq!(watchdog(&activity, limits()).await, Expired::Idle);
        assert_about(started.elapsed(), 300);

        let activity = Activity::new(false);
        drop(activity.begin(false));
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { watchdog(&activity, limits()).await }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        activity.read();
        let started = Instant::now();
        assert_eq!(watch.await.unwrap(), Expired::Headers);
        assert_about(started.elapsed(), 100);
    }

    #[tokio::test]
    async fn nothing_expires_while_a_request_is_in_flight_and_http2_frames_do_not_start_headers() {
        let activity = Activity::new(true);
        let request = activity.begin(true);
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { watchdog(&activity, limits()).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!watch.is_finished());
        drop(request);
        let idle_from = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        activity.read();
        assert_eq!(watch.await.unwrap(), Expired::Idle);
        assert_about(idle_from.elapsed(), 300);
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_at_its_deadline() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(4);
        let stream = futures::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|item| (item, r))
        });
        let limit = limits().body;
        let body = DeadlineBody::new(StreamBody::new(Box::pin(stream)), limit);
        sender
            .send(Ok(Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        let started = Instant::now();
        let err = body.collect().await.unwrap_err();
        let timed_out = err.downcast_ref::<BodyTimedOut>().expect("a BodyTimedOut");
        assert_eq!(timed_out.limit, limit);
        assert_about(started.elapsed(), 150);
        drop(sender);
    }

    #[tokio::test]
    async fn a_body_in_time_passes_whole() {
        let body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            limits().body,
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
    }
}
