//! Traces: one OpenTelemetry server span per request, its children where the time went, sent
//! to an OTLP/HTTP endpoint off the request path (`[tracing]`).
//!
//! The handler asks [`Tracer::begin`] first, before any stage: it reads the client's
//! `traceparent` only when `tracing.trust_incoming` allows (else a new trace starts), and
//! decides sampling there (parent-based, `sample_ratio` for new traces). An unsampled request
//! gets ids and a `traceparent` for its cell, nothing else. A sampled one carries a
//! [`Recording`]; its span is built from the access-log [`Record`] when the answer is known
//! ([`Tracer::finish`]) and queued without waiting: a full queue drops it and counts
//! (`cellgate_trace_spans_dropped_total{reason="queue_full"}`). [`export`] batches the queue
//! into OTLP protobuf over the hyper client already in the tree; [`encode`] writes the messages
//! (with [`wire`], a protobuf writer of its own).

pub mod encode;
pub mod export;
pub mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderValue, Version};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::accesslog::Record;
use crate::config::{TracingConfig, TrustIncoming};
use crate::headers::{TRACEPARENT, TRACESTATE};
use crate::metrics::TraceMetrics;
use crate::tracecontext::children::{self, Child};
use crate::tracecontext::{self as tc, SpanId, TraceId};

/// The request path's side of tracing: the sampling rules and the export queue.
#[derive(Debug)]
pub struct Tracer {
    tx: mpsc::Sender<SpanData>,
    ratio: f64,
    trust: TrustIncoming,
    queue_full: Counter,
}

/// A request's place in its trace, decided when it arrived.
#[derive(Debug)]
pub struct Trace {
    pub trace_id: TraceId,
    /// The proxy's server span.
    pub span_id: SpanId,
    /// The caller's span, when its `traceparent` was continued.
    pub parent: Option<SpanId>,
    pub sampled: bool,
    /// The caller's `tracestate`, passed on with a continued `traceparent` (boxed: rare, and
    /// a `Trace` lives in every request's future).
    pub state: Option<Box<HeaderValue>>,
    /// What a sampled request's span needs beyond the access-log record.
    pub recording: Option<Box<Recording>>,
    /// A sampled request's child spans, recorded by the stages ([`children::collect`]).
    pub collector: Option<children::Shared>,
}

/// A sampled request's clocks and addressing.
#[derive(Debug, Clone)]
pub struct Recording {
    pub wall: SystemTime,
    pub mono: Instant,
    pub host: Option<HeaderValue>,
    pub version: Version,
    pub client: IpAddr,
    pub tls: bool,
}

/// What a server span says beyond its access-log record.
#[derive(Debug, Default, Clone)]
pub struct Extra {
    /// How the tenant was identified (`jwt`, `subdomain`, `header`, `api_key`).
    pub source: Option<&'static str>,
    /// The cell's target group (canary arm) and its version.
    pub group: Option<Arc<str>>,
    /// The refusal's error code.
    pub code: Option<&'static str>,
    /// The admit stage's decision: `admitted`, or why not.
    pub limit: Option<&'static str>,
}

/// A finished server span, on its way to the exporter.
#[derive(Debug)]
pub struct SpanData {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub state: Option<HeaderValue>,
    pub recording: Box<Recording>,
    pub record: Record,
    pub extra: Extra,
    pub children: Vec<Child>,
}

/// A routed request's span, waiting for its response body to end.
#[derive(Debug)]
pub struct PendingSpan {
    pub tracer: Arc<Tracer>,
    pub span: Box<SpanData>,
}

impl PendingSpan {
    pub fn finish(mut self, bytes: u64, complete: bool, grpc_status: Option<u16>) {
        let r = &mut self.span.record;
        r.bytes = bytes;
        r.total = self.span.recording.mono.elapsed();
        r.incomplete = !complete;
        r.grpc_status = grpc_status.or(r.grpc_status);
        self.tracer.send(*self.span);
    }
}

impl Tracer {
    /// The tracer for `cfg`, and the exporter to spawn beside the other services.
    #[must_use]
    pub fn new(
        cfg: &TracingConfig,
        metrics: TraceMetrics,
        tls: Arc<rustls::ClientConfig>,
    ) -> (Self, export::Exporter) {
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let tracer = Self {
            tx,
            ratio: cfg.sample_ratio,
            trust: cfg.trust_incoming,
            queue_full: metrics.queue_full.clone(),
        };
        (tracer, export::Exporter::new(cfg, rx, metrics, tls))
    }

    /// The request's trace: the client's continued when `trust_incoming` allows and its
    /// `traceparent` is valid, else a new one; sampled by the parent's flag or the ratio.
    /// `hop`: the client is one of `server.trusted_hops`.
    #[must_use]
    pub fn begin(&self, headers: &HeaderMap, hop: bool, at: Arrived) -> Trace {
        // The handler's own clock starts a moment later; the span's start is this one.
        let trusted = match self.trust {
            TrustIncoming::Never => false,
            TrustIncoming::TrustedHops => hop,
            TrustIncoming::Always => true,
        };
        let parent = if trusted {
            headers.get(TRACEPARENT).and_then(tc::parse_traceparent)
        } else {
            None
        };
        let sampled = tc::sampled(parent.as_ref(), self.ratio, fastrand::f64());
        let trace_id = parent.map_or_else(tc::new_trace_id, |p| p.trace_id);
        let recording = sampled.then(|| {
            Box::new(Recording {
                wall: SystemTime::now(),
                mono: Instant::now(),
                host: headers.get(http::header::HOST).cloned(),
                version: at.version,
                client: at.client,
                tls: at.tls,
            })
        });
        Trace {
            trace_id,
            span_id: tc::new_span_id(),
            parent: parent.map(|p| p.span_id),
            sampled,
            state: parent.and_then(|_| tracestate(headers)).map(Box::new),
            collector: sampled.then(|| children::recorder(trace_id)),
            recording,
        }
    }

    /// Queues a finished span; drops and counts it when the exporter is behind.
    pub fn send(&self, span: SpanData) {
        if let Err(e) = self.tx.try_send(span) {
            let span = match e {
                mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
            };
            self.queue_full.inc_by(1 + span.children.len() as u64);
        }
    }

    /// Builds and queues the span of a request answered now (`record` is its access-log
    /// record).
    pub fn finish(&self, trace: &Trace, record: Record, extra: Extra) {
        if let Some(span) = trace.span(record, extra) {
            self.send(span);
        }
    }
}

/// The caller's `tracestate`, its lines joined with commas when it came on several (W3C Trace
/// Context: they are one list).
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut lines = headers.get_all(TRACESTATE).iter();
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for line in std::iter::once(second).chain(lines) {
        joined.push(b',');
        joined.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// What [`Tracer::begin`] keeps of the request's arrival for a sampled span.
#[derive(Debug, Clone, Copy)]
pub struct Arrived {
    pub version: Version,
    pub client: IpAddr,
    pub tls: bool,
}

impl Trace {
    /// Tells the cell: `traceparent` with the proxy's span as parent (an upstream attempt of a
    /// sampled request names its own span instead), and the caller's `tracestate` only when
    /// its trace was continued.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        headers.insert(
            TRACEPARENT,
            tc::traceparent(self.trace_id, self.span_id, self.sampled),
        );
        match &self.state {
            Some(s) => {
                headers.insert(TRACESTATE, (**s).clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }

    /// The finished span of a sampled request, with the children recorded so far.
    #[must_use]
    pub fn span(&self, record: Record, extra: Extra) -> Option<SpanData> {
        let recording = Box::new((**self.recording.as_ref()?).clone());
        let children = self
            .collector
            .as_ref()
            .map(|c| std::mem::take(&mut c.borrow_mut().children))
            .unwrap_or_default();
        Some(SpanData {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            state: self.state.as_deref().cloned(),
            recording,
            record,
            extra,
            children,
        })
    }

    /// The client's address as the proxy believes it (through trusted hops' `X-Forwarded-For`),
    /// for the span, once the identify stage has read it.
    pub fn client(&mut self, addr: IpAddr) {
        if let Some(r) = &mut self.recording {
            r.client = addr;
        }
    }

    /// For the access log: the trace and span ids, and whether the span is exported.
    #[must_use]
    pub const fn ids(&self) -> (TraceId, SpanId, bool) {
        (self.trace_id, self.span_id, self.sampled)
    }
}

#[cfg(test)]
mod tests;
