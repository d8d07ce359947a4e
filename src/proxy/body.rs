//! The response body type the engine serves: a cell's streamed body, or a small body the proxy
//! wrote itself (error JSON). An enum rather than a boxed trait object, so no allocation.
//!
//! A cell's body also finishes the request's access-log line and its usage count when it
//! ends: with the bytes sent, and marked incomplete when it failed or the client went away
//! first.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::grpc::Call;
use super::moves::Watch;
use crate::accesslog::PendingLog;
use crate::metering::answer::Pending;
use crate::otel::PendingSpan;
use crate::ratelimit::Permit;
use crate::upstream::{BodyError, UpstreamBody};

pin_project! {
    /// A cell's body carries the request's [`Permit`]: its in-flight places are given back
    /// when the body ends, fails, or is dropped (the client went away). A streamed body (no
    /// length) also carries a [`Watch`], and ends early if its tenant leaves the cell.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream {
            #[pin] body: UpstreamBody,
            permit: Option<Permit>,
            watch: Option<Watch>,
            log: BodyLog,
            // Ended by the proxy (a gRPC call's tenant moved): nothing more to send.
            ended: bool,
        },
        Full { data: Option<Bytes> },
    }
}

impl ProxyBody {
    #[must_use]
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        Self::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    #[must_use]
    pub const fn empty() -> Self {
        Self::Full { data: None }
    }

    /// The bytes of a body the proxy wrote itself (`None` for a cell's body).
    #[must_use]
    pub fn into_full(self) -> Option<Bytes> {
        match self {
            Self::Full { data } => Some(data.unwrap_or_default()),
            Self::Upstream { .. } => None,
        }
    }

    #[must_use]
    pub const fn upstream(
        body: UpstreamBody,
        permit: Permit,
        watch: Option<Watch>,
        log: BodyLog,
    ) -> Self {
        Self::Upstream {
            body,
            permit: Some(permit),
            watch,
            log,
            ended: false,
        }
    }
}

/// The access-log line, the usage count and the span of a routed request while its body
/// streams: the bytes sent so far, and all written once, when the body ends (complete) or is
/// dropped before (incomplete).
#[derive(Debug)]
pub struct BodyLog {
    pub pending: Option<PendingLog>,
    pub meter: Option<Pending>,
    pub grpc: Option<Call>,
    pub span: Option<PendingSpan>,
    /// Body bytes sent so far.
    pub bytes: u64,
}

impl BodyLog {
    fn finish(&mut self, complete: bool) {
        // A gRPC call's status (`Some(None)`: the call ended without one).
        let grpc = self.grpc.take().map(Call::finish);
        if let (Some(status), Some(p)) = (grpc, &mut self.pending) {
            p.record.grpc_status = status;
        }
        if let Some(s) = self.span.take() {
            s.finish(self.bytes, complete, grpc.flatten());
        }
        if let Some(p) = self.pending.take() {
            p.finish(self.bytes, complete);
        }
        if let Some(m) = self.meter.take() {
            m.finish(self.bytes);
        }
    }
}

impl Drop for BodyLog {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            ProxyBodyProj::Upstream {
                mut body,
                permit,
                watch,
                log,
                ended,
            } => {
                if *ended {
                    return Poll::Ready(None);
                }
                if watch.as_ref().is_some_and(|w| w.poll_closed(cx).is_ready()) {
                    // The tenant left this cell: end the stream cleanly (the client reconnects
                    // and is routed anew); the upstream connection goes with the unfinished
                    // body. A gRPC call ends at its next message boundary, with a status.
                    watch.take();
                    match log.grpc.as_mut() {
                        Some(g) => g.moved = true,
                        None => {
                            log.finish(false);
                            return Poll::Ready(None);
                        }
                    }
                }
                if let Some(g) = log.grpc.as_mut()
                    && g.moved
                    && g.at_boundary()
                {
                    let trailers = g.end_moved();
                    *ended = true;
                    permit.take();
                    log.finish(false);
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                let frame = body.as_mut().poll_frame(cx);
                match &frame {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(data) = f.data_ref() {
                            log.bytes += data.len() as u64;
                            if let Some(g) = log.grpc.as_mut() {
                                g.data(data);
                            }
                        } else if let (Some(t), Some(g)) = (f.trailers_ref(), log.grpc.as_mut()) {
                            g.trailers(t);
                        }
                        // A sized body may never be polled past its last frame.
                        if body.is_end_stream() {
                            log.finish(true);
                        }
                    }
                    Poll::Ready(None) => {
                        permit.take();
                        log.finish(true);
                    }
                    Poll::Ready(Some(Err(_))) => {
                        permit.take();
                        log.finish(false);
                    }
                    Poll::Pending => {}
                }
                frame
            }
            ProxyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { ended: true, .. } => true,
            Self::Upstream { body, .. } => body.is_end_stream(),
            Self::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { body, .. } => body.size_hint(),
            Self::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
