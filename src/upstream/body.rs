//! The bodies of a forwarded exchange: the request body sent to a cell ([`RequestBody`]: the
//! client's, or empty for a replayed retry) and the response body streamed back.
//!
//! The response body enforces the read timeout between chunks and the total deadline of the exchange, and it
//! hands its connection back to the worker's pool when (and only when) the body was read to
//! the end; a body dropped half-way (client went away) takes its connection down with it, as
//! its state is unknown.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::pool::Lease;
use super::{Endpoint, Pool};

pin_project! {
    /// What a forwarded request carries: the client's body, or nothing (a retry of a bodiless
    /// idempotent request, rebuilt from its head). The client's body is held to
    /// `server.max_body_bytes` as it streams (a declared length was checked up front) and
    /// must end by the request deadline (`server.request_timeout`): a slow or endless upload
    /// cannot hold a cell's connection open.
    #[project = RequestBodyProj]
    pub enum RequestBody {
        Client {
            #[pin] body: Incoming,
            left: u64,
            deadline: Instant,
            timer: Option<Pin<Box<Sleep>>>,
            received: Received,
        },
        Empty,
    }
}

/// Bytes of the client's body received so far, shared with whoever counts them (usage
/// metering); only a request that has a body and is metered carries one.
pub type Received = crate::metering::answer::BytesIn;

/// A limit the client's request body ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyLimit {
    #[error("request body longer than server.max_body_bytes")]
    TooLarge,
    #[error("request body not complete within server.request_timeout")]
    Timeout,
    /// The desync guard found the chunked framing broken mid-body.
    #[error("request body framing broken: {0}")]
    Framing(crate::desync::Reason),
}

impl BodyLimit {
    /// The limit a failed exchange ran into, if its cause was the client's body.
    #[must_use]
    pub fn of(error: &super::UpstreamError) -> Option<Self> {
        let super::UpstreamError::Protocol { source, .. } = error else {
            return None;
        };
        let mut cause = std::error::Error::source(source);
        while let Some(e) = cause {
            if let Some(RequestBodyError::Limit(l)) = e.downcast_ref::<RequestBodyError>() {
                return Some(*l);
            }
            cause = e.source();
        }
        None
    }

    /// The `reason` label of `cellgate_requests_rejected_total`.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "body_too_large",
            Self::Timeout => "request_timeout",
            Self::Framing(r) => r.label(),
        }
    }
}

/// Why the client's request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error(transparent)]
    Limit(BodyLimit),
    #[error("reading the request body: {0}")]
    Client(#[from] hyper::Error),
}

/// A read error of the client's body: broken framing when the desync guard broke the body (it
/// ends the read with its reason inside an I/O error) or hyper's chunked decoder refused it
/// (`server.desync_mitigation = "monitor"` leaves that to hyper), else hyper's error as it is
/// (the client went away).
fn client_error(e: hyper::Error) -> RequestBodyError {
    use std::io::ErrorKind;
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            // An I/O error's `source` skips the error it wraps: look inside it.
            let guard = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<crate::desync::Reason>());
            let reason = match (guard, io.kind()) {
                (Some(r), _) => Some(*r),
                (None, ErrorKind::InvalidData | ErrorKind::InvalidInput) => {
                    Some(crate::desync::Reason::BadChunk)
                }
                _ => None,
            };
            if let Some(r) = reason {
                return RequestBodyError::Limit(BodyLimit::Framing(r));
            }
        }
        cause = c.source();
    }
    RequestBodyError::Client(e)
}

impl RequestBody {
    /// The client's body, at most `max_bytes` long and complete by `deadline`.
    #[must_use]
    pub const fn client(
        body: Incoming,
        max_bytes: u64,
        deadline: Instant,
        received: Received,
    ) -> Self {
        Self::Client {
            body,
            left: max_bytes,
            deadline,
            timer: None,
            received,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.project() {
            RequestBodyProj::Client {
                body,
                left,
                deadline,
                timer,
                received,
            } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if n > *left {
                        return Poll::Ready(Some(Err(RequestBodyError::Limit(
                            BodyLimit::TooLarge,
                        ))));
                    }
                    *left -= n;
                    if let Some(r) = received {
                        r.set(r.get() + n);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(client_error(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    // The timer exists only for bodies that have to wait.
                    let t =
                        timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*deadline)));
                    match t.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            Poll::Ready(Some(Err(RequestBodyError::Limit(BodyLimit::Timeout))))
                        }
                        Poll::Pending => Poll::Pending,
                    }
                }
            },
            RequestBodyProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Client { body, .. } => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Client { body, .. } => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream body: {0}")]
    Upstream(#[from] hyper::Error),
    #[error("upstream body timed out")]
    Timeout,
}

/// Where a finished body's connection goes back to: an HTTP/1.1 one to the pool (when the
/// body was read to the end), an HTTP/2 stream to its connection's count (whatever happened).
pub struct Reuse {
    pub pool: Rc<Pool>,
    pub endpoint: Arc<Endpoint>,
    pub lease: Lease,
}

pin_project! {
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        // Made the first time the body has to wait: a small response that arrives with its
        // head never touches the timer wheel. Re-armed lazily after each chunk.
        #[pin]
        timer: Option<Sleep>,
        read_timeout: Duration,
        deadline: Instant,
        rearm: bool,
        done: bool,
        reuse: Option<Reuse>,
    }

    impl PinnedDrop for UpstreamBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let complete = *this.done || this.inner.is_end_stream();
            if complete
                && let Some(Reuse {
                    pool,
                    endpoint,
                    lease: Lease::Http1(sender),
                }) = this.reuse.take()
            {
                pool.checkin(&endpoint, sender);
            }
        }
    }
}

impl UpstreamBody {
    #[must_use]
    pub fn new(
        inner: Incoming,
        read_timeout: Duration,
        deadline: Instant,
        reuse: Option<Reuse>,
    ) -> Self {
        Self {
            inner,
            timer: None,
            read_timeout,
            deadline,
            rearm: true,
            done: false,
            reuse,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                *this.rearm = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.reuse.take();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                if *this.rearm {
                    *this.rearm = false;
                    let next = (Instant::now() + *this.read_timeout).min(*this.deadline);
                    match this.timer.as_mut().as_pin_mut() {
                        Some(timer) => timer.reset(next),
                        None => this.timer.set(Some(tokio::time::sleep_until(next))),
                    }
                }
                let Some(timer) = this.timer.as_pin_mut() else {
                    return Poll::Pending;
                };
                match timer.poll(cx) {
                    Poll::Ready(()) => {
                        this.reuse.take();
                        Poll::Ready(Some(Err(BodyError::Timeout)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
