//! A client connection's clock: the whole-head deadline and the idle timeout, kept by a thin
//! wrapper around the connection's byte stream ([`ConnIo`]).
//!
//! hyper's own `header_read_timeout` starts when it begins waiting for a head, so it also
//! cuts keep-alive connections that are merely quiet; and it knows nothing of HTTP/2. Here a
//! connection is in one of three phases:
//!
//! - **head**: bytes of a request head have arrived (or the connection is new) and no request
//!   is in flight yet: the head must be complete within `server.header_timeout` of its first
//!   byte, whatever the pace of the reads (a slowloris client is cut at the deadline);
//! - **busy**: a request is in flight (from the service being called to its response body
//!   being done): no clock, the upstream timeouts and `server.request_timeout` apply;
//! - **idle**: nothing in flight: the connection is closed after `server.idle_timeout`.
//!
//! The service tells the wrapper about requests through [`ConnState`] (an atomic count shared
//! with the connection's [`super::Client`]); an HTTP/2 connection is recognised by its
//! preface, and never enters the head phase after it. Deadlines move lazily: the timer is
//! re-armed only when a new deadline is earlier than the armed one, or when the armed one
//! fires early, so a busy keep-alive connection costs about one clock read per request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// What the service side shares with its connection's [`ConnIo`].
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests the service was called for, and those whose response body is done (both
    /// wrap; in flight = the difference).
    started: AtomicU32,
    finished: AtomicU32,
    /// The connection was handed over to a tunnel (WebSocket): no more clocks.
    upgraded: AtomicBool,
    /// The connection speaks HTTP/2 (seen in its preface).
    h2: AtomicBool,
    /// The connection's task, woken when its last request in flight is done (so it starts the
    /// idle clock even if hyper has nothing else to do).
    waker: AtomicWaker,
    /// Reads that brought bytes (wraps): a drain closes an HTTP/1 connection only once it has
    /// been quiet for a while.
    reads: AtomicU32,
    /// The request (its `seq` + 1; 0: none) after whose answer the connection closes: the
    /// desync guard forwarded it as ambiguous.
    close_after: AtomicU32,
}

impl ConnState {
    /// Marks a request in flight until the returned guard drops.
    #[must_use]
    pub fn begin(self: &Arc<Self>) -> Active {
        let seq = self.started.fetch_add(1, Ordering::Relaxed);
        Active(Arc::clone(self), seq)
    }

    /// The connection now carries a tunnel: its timers stop for good.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    #[must_use]
    pub fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Relaxed)
    }

    /// The connection closes after the answer to request `seq`.
    pub fn close_after(&self, seq: u32) {
        self.close_after
            .store(seq.wrapping_add(1), Ordering::Relaxed);
    }

    /// Whether the answer to request `seq` must close the connection.
    #[must_use]
    pub fn closes_after(&self, seq: u32) -> bool {
        self.close_after.load(Ordering::Relaxed) == seq.wrapping_add(1)
    }

    /// Wakes `waker` when a request in flight finishes or the connection is upgraded.
    pub fn on_change(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    #[must_use]
    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// Whether a request is in flight now.
    #[must_use]
    pub fn busy(&self) -> bool {
        self.started.load(Ordering::Relaxed) != self.finished.load(Ordering::Relaxed)
    }

    /// A counter that moves whenever bytes arrive.
    #[must_use]
    pub fn reads(&self) -> u32 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// A request in flight on its connection (see [`ConnState::begin`]), and its place on it.
#[derive(Debug)]
pub struct Active(Arc<ConnState>, u32);

impl Active {
    /// The request's place on its connection (0 for the first).
    #[must_use]
    pub const fn seq(&self) -> u32 {
        self.1
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Release);
        self.0.waker.wake();
    }
}

/// The timeouts a [`ConnIo`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    pub header: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Busy,
    Idle,
    Off,
}

/// A client byte stream (TCP, or TLS after the handshake) with the connection's clocks.
#[derive(Debug)]
pub struct ConnIo<I> {
    inner: I,
    state: Arc<ConnState>,
    clocks: Clocks,
    phase: Phase,
    /// The current phase's deadline; the timer may be armed earlier than this.
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    /// `ConnState::started` when last looked at.
    seen: u32,
    /// The first bytes were looked at (HTTP/2 preface or not).
    sniffed: bool,
    h2: bool,
    metrics: Arc<Metrics>,
}

impl<I> ConnIo<I> {
    /// A new connection starts in the head phase: its first request must arrive in time.
    pub fn new(inner: I, state: Arc<ConnState>, clocks: Clocks, metrics: Arc<Metrics>) -> Self {
        let deadline = Instant::now() + clocks.header;
        Self {
            inner,
            state,
            clocks,
            phase: Phase::Head,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            seen: 0,
            sniffed: false,
            h2: false,
            metrics,
        }
    }

    fn set_deadline(&mut self, phase: Phase, deadline: Instant) {
        self.phase = phase;
        self.deadline = deadline;
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
    }

    /// Catches up with the service: a request started since the last look ends the head
    /// phase; one in flight makes the connection busy. Returns whether one is in flight.
    fn observe(&mut self) -> bool {
        let started = self.state.started.load(Ordering::Relaxed);
        if started != self.seen {
            self.seen = started;
            if self.phase == Phase::Head {
                self.phase = Phase::Busy;
            }
        }
        let busy = started != self.state.finished.load(Ordering::Acquire);
        if busy {
            self.phase = Phase::Busy;
        }
        busy
    }

    /// Bytes arrived: on a quiet HTTP/1 connection they start a request head.
    fn on_data(&mut self, data: &[u8]) {
        self.state.reads.fetch_add(1, Ordering::Relaxed);
        if !self.sniffed {
            self.sniffed = true;
            let n = data.len().min(H2_PREFACE.len());
            self.h2 = data[..n] == H2_PREFACE[..n];
            if self.h2 {
                self.state.h2.store(true, Ordering::Relaxed);
                // HTTP/2 has no head phase: streams open while others run, and h2's own
                // limits bound a stream's headers.
                self.phase = Phase::Idle;
                self.deadline = Instant::now() + self.clocks.idle;
            }
            return;
        }
        if !self.h2 && !self.observe() && matches!(self.phase, Phase::Idle | Phase::Busy) {
            self.set_deadline(Phase::Head, Instant::now() + self.clocks.header);
        }
    }

    /// Nothing to read: is the phase's deadline past?
    fn poll_clock(&mut self, cx: &mut Context<'_>) -> Poll<Phase> {
        if self.phase == Phase::Off {
            return Poll::Pending;
        }
        if self.state.upgraded.load(Ordering::Relaxed) {
            self.phase = Phase::Off;
            return Poll::Pending;
        }
        if self.observe() {
            // Woken when the request is done; looked at again in case it just was.
            self.state.waker.register(cx.waker());
            if self.observe() {
                return Poll::Pending;
            }
        }
        if self.phase == Phase::Busy {
            self.set_deadline(Phase::Idle, Instant::now() + self.clocks.idle);
        }
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.deadline {
                return Poll::Ready(self.phase);
            }
            let d = self.deadline;
            self.timer.as_mut().reset(d);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ConnIo<I> {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && self.phase != Phase::Off {
                    self.on_data(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match ready!(self.poll_clock(cx)) {
                Phase::Head => {
                    self.metrics.request_rejected("header_timeout");
                    self.phase = Phase::Off;
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within server.header_timeout",
                    )))
                }
                // Idle: end of stream, which hyper takes as a quiet close.
                _ => {
                    self.metrics.idle_closed.inc();
                    self.phase = Phase::Off;
                    Poll::Ready(Ok(()))
                }
            },
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ConnIo<I> {
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

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight (see [`ConnState::begin`]) until it
    /// is done or dropped.
    #[derive(Debug)]
    pub struct Tracked<B> {
        #[pin]
        body: B,
        active: Active,
    }
}

impl<B> Tracked<B> {
    pub const fn new(body: B, active: Active) -> Self {
        Self { body, active }
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
