//! The desync guard: a thin layer between a client connection's bytes and hyper that shows
//! hyper only what the desync classifier ([`crate::desync`]) let through.
//!
//! Every HTTP/1 read passes through [`desync::tracker::Tracker`]: in the common case (whole
//! heads in one read, nothing to report) the bytes go on in place, untouched and uncopied.
//! Otherwise:
//!
//! - an **incomplete head** is held back until its end arrives, so hyper never parses (and
//!   never answers) a head the classifier has not seen whole;
//! - a **refused head** is never shown to hyper: once the requests before it are answered
//!   (and hyper's writes flushed), the guard writes the JSON refusal itself (built by
//!   [`super::refuse::raw`]: counted, logged, a request id) and ends the stream, so hyper
//!   closes the connection;
//! - an **ambiguous head** in `defensive` mode goes on, marked in [`ConnState`] so its answer
//!   carries `Connection: close` and its upstream connection is not reused; nothing after its
//!   body is ever read;
//! - a **broken chunked body** ends the request with a read error where the framing breaks;
//! - after a request that may **upgrade** the connection, later bytes wait for its answer: a
//!   tunnel gets them untouched, anything else has them classified as the next head.
//!
//! HTTP/2 connections (seen by their preface) pass straight through: their framing leaves
//! nothing to desync.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Shared;
use super::conn::ConnState;
use crate::desync::tracker::{Step, Stop, Tracker};
use crate::desync::{Action, Decision, Reason};
use crate::metering::Meter;

/// Most of a refused head kept for its access-log line (method and target).
const KEEP_FOR_LOG: usize = 2048;

/// Where the guard's decisions are recorded and its refusals written.
#[derive(Debug)]
pub struct Answers {
    pub shared: Arc<Shared>,
    pub meter: Option<Arc<Meter>>,
    pub client: IpAddr,
}

impl Answers {
    fn decided(&self, d: Decision, state: &ConnState) {
        let (r, a) = (d.reason, d.action);
        self.shared
            .metrics
            .desync(r.class().label(), r.label(), a.label());
        if a == Action::ForwardClose {
            state.close_after(d.seq);
        }
        // An acceptable request forwarded as usual (a bare LF, UTF-8 in a value: common from
        // some clients) is counted, and logged at debug only, so it cannot flood the log.
        if a == Action::Forward && r.class() == crate::desync::Class::Acceptable {
            tracing::debug!(
                client = %self.client, class = r.class().label(), reason = r.label(),
                action = a.label(), request = d.seq, "desync: {r}"
            );
        } else {
            tracing::info!(
                client = %self.client, class = r.class().label(), reason = r.label(),
                action = a.label(), request = d.seq, "desync: {r}"
            );
        }
    }

    fn refusal(&self, reason: Reason, head: &[u8]) -> Vec<u8> {
        let ledger = super::refuse::Ledger {
            meter: self.meter.as_deref(),
            ..self.shared.ledger()
        };
        super::refuse::raw(ledger, reason, head)
    }
}

/// Where the guard stands (fieldless, so the check on every read is one compare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Bytes after an upgrade request wait in `held` for its answer.
    Holding,
    /// A head was refused (`refusal`): its answer goes out once the requests before it are
    /// answered.
    Refusing,
    /// A chunked body broke (`refusal.reason`): the read fails.
    Broken,
    /// Nothing more is read (the last request closes the connection).
    Cut,
    /// All is said: the stream ends.
    Done,
    /// Not HTTP/1 (an HTTP/2 connection, a tunnel): bytes pass untouched.
    Off,
}

/// A refused head (or broken body) and its answer as it is written.
#[derive(Debug)]
struct Refusal {
    reason: Reason,
    /// The start of the refused head, for its access-log line.
    head: Vec<u8>,
    answer: Option<Vec<u8>>,
    written: usize,
}

/// A client byte stream behind the desync guard.
#[derive(Debug)]
pub struct Guard<I> {
    inner: I,
    tracker: Tracker,
    state: Arc<ConnState>,
    answers: Answers,
    phase: Phase,
    refusal: Option<Refusal>,
    /// An incomplete head, or bytes sent after an upgrade request: not shown to hyper yet.
    held: Vec<u8>,
    /// How far `held` was searched for the end of its head.
    searched: usize,
    /// Bytes cleared to go on, waiting for room in hyper's buffer.
    out: Vec<u8>,
    out_at: usize,
    /// The last thing done on the write side was a completed flush: whatever hyper wrote is
    /// out (hyper writes its own buffer out before it flushes).
    flushed: bool,
    /// The last write or flush found the socket full: its writability wakes the task.
    blocked: bool,
    max_head: usize,
}

impl<I> Guard<I> {
    pub fn new(inner: I, tracker: Tracker, state: Arc<ConnState>, answers: Answers) -> Self {
        let max_head = answers.shared.config.server.limits.max_header_bytes;
        Self {
            inner,
            tracker,
            state,
            answers,
            phase: Phase::Open,
            refusal: None,
            held: Vec::new(),
            searched: 0,
            out: Vec::new(),
            out_at: 0,
            flushed: true,
            blocked: false,
            max_head,
        }
    }

    /// Follows `data` from the start of a held buffer: what passes is queued for hyper.
    fn take_in(&mut self, mut data: Vec<u8>) {
        let step = self.feed(&data);
        let rest = data.split_off(step.pass);
        self.out = data;
        self.out_at = 0;
        self.stopped(step.stop, rest);
    }

    fn feed(&mut self, data: &[u8]) -> Step {
        let (answers, state) = (&self.answers, &*self.state);
        self.tracker.feed(data, &mut |d| answers.decided(d, state))
    }

    /// Why the tracker stopped, with the bytes from that point on.
    fn stopped(&mut self, stop: Option<Stop>, mut rest: Vec<u8>) {
        match stop {
            None => {}
            Some(Stop::Partial) => {
                self.held = rest;
                self.searched = 0;
            }
            Some(Stop::Hold) => {
                self.held = rest;
                self.phase = Phase::Holding;
            }
            Some(Stop::Refuse(reason)) => {
                rest.truncate(KEEP_FOR_LOG);
                self.refusal = Some(Refusal {
                    reason,
                    head: rest,
                    answer: None,
                    written: 0,
                });
                self.phase = Phase::Refusing;
            }
            Some(Stop::Break(reason)) => {
                self.refusal = Some(Refusal {
                    reason,
                    head: Vec::new(),
                    answer: None,
                    written: 0,
                });
                self.phase = Phase::Broken;
            }
            Some(Stop::Cut) => self.phase = Phase::Cut,
        }
    }

    fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
        self.blocked = r.is_pending();
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.flushed = false;
        }
    }

    /// Whether the held head may be complete now (or has outgrown the limit, which the
    /// classifier refuses): looks only at bytes not searched before.
    fn head_may_end(&mut self) -> bool {
        let from = self.searched.saturating_sub(2);
        self.searched = self.held.len();
        let tail = &self.held[from..];
        self.held.len() > self.max_head
            || tail.windows(2).any(|w| w == b"\n\n")
            || tail.windows(3).any(|w| w == b"\n\r\n")
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Guard<I> {
    /// Writes the refusal once nothing is in flight and hyper's writes are out, then ends
    /// the stream (hyper closes the connection).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.busy() {
            self.state.on_change(cx.waker());
            if self.state.busy() {
                return Poll::Pending;
            }
        }
        if !self.flushed {
            // hyper flushes right after this read returns (or once the socket drains, which
            // wakes the task): look again then.
            if !self.blocked {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        let Some(r) = &mut self.refusal else {
            return Poll::Ready(Ok(()));
        };
        let answers = &self.answers;
        let answer = r
            .answer
            .get_or_insert_with(|| answers.refusal(r.reason, &r.head));
        while r.written < answer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[r.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.phase = Phase::Done;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_at < this.out.len() {
                let n = (this.out.len() - this.out_at).min(buf.remaining());
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    (this.out_at, this.out) = (0, Vec::new());
                }
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Off => return Pin::new(&mut this.inner).poll_read(cx, buf),
                Phase::Open => {}
                Phase::Holding => {
                    if !this.state.is_upgraded() && this.state.busy() {
                        this.state.on_change(cx.waker());
                        if !this.state.is_upgraded() && this.state.busy() {
                            return Poll::Pending;
                        }
                    }
                    let upgraded = this.state.is_upgraded();
                    this.tracker.resume(upgraded);
                    this.phase = Phase::Open;
                    let held = std::mem::take(&mut this.held);
                    if upgraded {
                        this.phase = Phase::Off;
                        this.out = held;
                    } else {
                        this.take_in(held);
                    }
                    continue;
                }
                Phase::Refusing => return this.poll_refuse(cx),
                Phase::Broken => {
                    let r = this.refusal.as_ref().map_or(Reason::BadChunk, |r| r.reason);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, r)));
                }
                Phase::Done => return Poll::Ready(Ok(())),
                Phase::Cut => {
                    // Read on (so the connection's clocks run and a close is seen), keep nothing.
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    if buf.filled().len() == before {
                        return Poll::Ready(Ok(()));
                    }
                    buf.set_filled(before);
                    continue;
                }
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let n = buf.filled().len() - before;
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.state.is_h2() {
                this.phase = Phase::Off;
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                let step = this.feed(&buf.filled()[before..]);
                if step.stop.is_none() {
                    return Poll::Ready(Ok(()));
                }
                let rest = buf.filled()[before + step.pass..].to_vec();
                buf.set_filled(before + step.pass);
                this.stopped(step.stop, rest);
                if step.pass > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.held.extend_from_slice(&buf.filled()[before..]);
            buf.set_filled(before);
            if this.head_may_end() {
                let held = std::mem::take(&mut this.held);
                this.take_in(held);
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.blocked = r.is_pending();
        self.flushed = matches!(r, Poll::Ready(Ok(())));
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
