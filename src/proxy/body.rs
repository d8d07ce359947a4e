//! The response body type the engine serves: a cell's streamed body, or a small body the proxy
//! wrote itself (error JSON). An enum rather than a boxed trait object, so no allocation.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::moves::Watch;
use crate::ratelimit::Permit;
use crate::upstream::{BodyError, UpstreamBody};

pin_project! {
    /// A cell's body carries the request's [`Permit`]: its in-flight places are given back
    /// when the body ends, fails, or is dropped (the client went away). A streamed body (no
    /// length) also carries a [`Watch`], and ends early if its tenant leaves the cell.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream { #[pin] body: UpstreamBody, permit: Option<Permit>, watch: Option<Watch> },
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

    #[must_use]
    pub const fn upstream(body: UpstreamBody, permit: Permit, watch: Option<Watch>) -> Self {
        Self::Upstream {
            body,
            permit: Some(permit),
            watch,
        }
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
                body,
                permit,
                watch,
            } => {
                let frame = if watch.as_ref().is_some_and(|w| w.poll_closed(cx).is_ready()) {
                    // The tenant left this cell: end the stream cleanly (the client reconnects
                    // and is routed anew); the upstream connection goes with the unfinished body.
                    watch.take();
                    Poll::Ready(None)
                } else {
                    body.poll_frame(cx)
                };
                if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
                    permit.take();
                }
                frame
            }
            ProxyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
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
