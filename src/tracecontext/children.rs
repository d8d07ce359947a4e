//! The child spans of a traced request: recorded by the stages where its time goes (each
//! upstream attempt, an on-demand registry read, a JWKS fetch), collected for the request's
//! server span.
//!
//! The collector is a thread-local set while a *sampled* request's future is polled
//! ([`Collect`], which wraps the request's handler where the engine calls it): the stages that
//! record sit in `auth`, `placement` and `proxy`, and the rare cold paths among them (a JWKS
//! refetch, a registry read) would otherwise need a recorder threaded through every call
//! between the handler and them. An unsampled request's poll pays one branch, and one
//! thread-local read where a child could start ([`recording`]). `Collect` wraps the handler's
//! future rather than nesting a second future inside it: a nested future is built and then moved
//! into its parent's state, a copy of several kilobytes per request. Plain values only: a leaf.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;

use super::{SpanId, TraceId};

/// The span name of an upstream attempt (one per try, retries included).
pub const ATTEMPT: &str = "upstream attempt";
/// The span name of an on-demand registry read (its `cellgate.registry.read`: `miss` when
/// this request asked, `coalesced` when it joined another's read).
pub const REGISTRY_READ: &str = "registry read";
/// The span name of a wait for an issuer's JWKS (an unknown `kid`).
pub const JWKS_FETCH: &str = "jwks fetch";

/// What a span attribute holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Arc<str>),
    Static(&'static str),
    Int(i64),
    Bool(bool),
    /// An address, formatted only when exported.
    Ip(std::net::IpAddr),
}

/// The span kind a child is (OTLP's `SpanKind`): a call out, or work inside the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Client,
    Internal,
}

/// One child span, timed on the monotonic clock (the exporter places it on the wall clock
/// beside its parent).
#[derive(Debug, Clone)]
pub struct Child {
    pub name: &'static str,
    pub kind: Kind,
    pub span_id: SpanId,
    pub start: Instant,
    pub end: Instant,
    /// Why it failed, when it did (the span's error status).
    pub error: Option<&'static str>,
    pub attributes: Vec<(&'static str, Value)>,
}

impl Child {
    /// A child that started at `start` and ends now.
    #[must_use]
    pub fn ended(name: &'static str, kind: Kind, start: Instant) -> Self {
        Self {
            name,
            kind,
            span_id: super::new_span_id(),
            start,
            end: Instant::now(),
            error: None,
            attributes: Vec::with_capacity(6),
        }
    }

    /// Adds an attribute.
    #[must_use]
    pub fn with(mut self, key: &'static str, value: Value) -> Self {
        self.attributes.push((key, value));
        self
    }

    /// Adds the peer's address as `network.peer.address` and `network.peer.port`.
    #[must_use]
    pub fn peer(self, addr: SocketAddr) -> Self {
        self.with("network.peer.address", Value::Ip(addr.ip()))
            .with("network.peer.port", Value::Int(i64::from(addr.port())))
    }
}

/// A traced request's collector: its trace, and the children recorded so far.
#[derive(Debug)]
pub struct Recorder {
    pub trace_id: TraceId,
    pub children: Vec<Child>,
}

/// Shared between the handler (which reads the children when the span ends) and the scope.
pub type Shared = Rc<RefCell<Recorder>>;

/// A collector for a request of `trace_id`.
#[must_use]
pub fn recorder(trace_id: TraceId) -> Shared {
    Rc::new(RefCell::new(Recorder {
        trace_id,
        children: Vec::new(),
    }))
}

thread_local! {
    /// The collector of the sampled request being polled on this thread.
    static CURRENT: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

pin_project! {
    /// A request's future, polled with its collector current when it is sampled.
    pub struct Collect<F> {
        recorder: Option<Shared>,
        #[pin]
        inner: F,
    }
}

impl<F> Collect<F> {
    /// `inner` with its children collected into `recorder` (`None`: not sampled).
    pub const fn new(recorder: Option<Shared>, inner: F) -> Self {
        Self { recorder, inner }
    }
}

impl<F: Future> Future for Collect<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(r) = this.recorder else {
            return this.inner.poll(cx);
        };
        let previous = CURRENT.with(|c| c.replace(Some(Rc::clone(r))));
        // Put back what was current even if the poll panics.
        let _restore = Restore(previous);
        this.inner.poll(cx)
    }
}

struct Restore(Option<Shared>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The trace of the request being served, when it is sampled (and so records children).
#[must_use]
pub fn recording() -> Option<TraceId> {
    CURRENT.with(|c| c.borrow().as_ref().map(|r| r.borrow().trace_id))
}

/// Records a child of the request being served; nothing when it is not sampled.
pub fn record(child: Child) {
    CURRENT.with(|c| {
        if let Some(r) = c.borrow().as_ref() {
            r.borrow_mut().children.push(child);
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn children_are_collected_inside_the_scope_only() {
        record(Child::ended("outside", Kind::Internal, Instant::now()));
        assert_eq!(recording(), None);
        let trace = super::super::new_trace_id();
        let rec = recorder(trace);
        Collect::new(Some(Rc::clone(&rec)), async {
            assert_eq!(recording(), Some(trace));
            tokio::task::yield_now().await;
            record(
                Child::ended("inside", Kind::Client, Instant::now())
                    .with("k", Value::Int(1))
                    .peer("127.0.0.1:80".parse().unwrap()),
            );
        })
        .await;
        assert_eq!(recording(), None, "nothing current after the poll");
        let none = Collect::new(None, async { recording() }).await;
        assert_eq!(none, None);
        let rec = rec.borrow();
        assert_eq!(rec.children.len(), 1);
        assert_eq!(rec.children[0].name, "inside");
        assert_eq!(rec.children[0].attributes.len(), 3);
    }
}
