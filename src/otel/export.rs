//! The exporter: a task beside the other background services that takes finished spans from
//! the bounded queue, batches them (`tracing.batch_size`, or whatever waited
//! `tracing.export_interval`), and POSTs each batch as OTLP protobuf to `tracing.otlp_endpoint`
//! over one kept-alive HTTP/1.1 connection (hyper, and rustls for `https`).
//!
//! It never holds up a request: the request path only `try_send`s into the queue. A batch the
//! endpoint refuses, or that does not complete within `tracing.export_timeout`, is dropped and
//! counted (`cellgate_trace_spans_dropped_total{reason="export_failed"}`); meanwhile new spans
//! queue up to `tracing.queue_size` and are dropped past it. The first failure after a success
//! is logged at warn, the recovery at info: a collector that is down costs one line, not one a
//! batch. Extra export headers (`tracing.headers`) are never logged.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::{SpanData, encode};
use crate::config::{OtlpEndpoint, TracingConfig};
use crate::metrics::TraceMetrics;
use crate::shutdown::{Stop, stopped};

/// The most of an endpoint's answer read (a partial-success message is far smaller).
const MAX_ANSWER: usize = 64 * 1024;
/// How often the queue is drained (or `tracing.export_interval`, if shorter).
const POLL: Duration = Duration::from_millis(25);
/// The final flush when the proxy stops gets at most this long.
const FLUSH_ON_STOP: Duration = Duration::from_secs(2);

/// The exporter task's state; [`Exporter::run`] is spawned by the composition root.
pub struct Exporter {
    rx: mpsc::Receiver<SpanData>,
    endpoint: OtlpEndpoint,
    authority: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    batch_size: usize,
    interval: Duration,
    timeout: Duration,
    /// The `Resource` message, encoded once.
    resource: Vec<u8>,
    metrics: TraceMetrics,
    tls: TlsConnector,
    sender: Option<SendRequest<Full<Bytes>>>,
    failing: bool,
}

/// Requests' spans waiting for the next export, and how many spans they are.
#[derive(Debug, Default)]
struct Batch {
    spans: Vec<SpanData>,
    count: usize,
    /// When its first span was taken from the queue.
    first: Option<Instant>,
}

/// Why one export failed (logged; the spans are counted as dropped).
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the request could not be built: {0}")]
    Build(#[from] http::Error),
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("endpoint", &self.endpoint.uri)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    pub(super) fn new(
        cfg: &TracingConfig,
        rx: mpsc::Receiver<SpanData>,
        metrics: TraceMetrics,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Self {
        let e = &cfg.endpoint;
        let authority = e
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("localhost"));
        Self {
            rx,
            endpoint: e.clone(),
            authority,
            headers: cfg.headers.clone(),
            batch_size: cfg.batch_size,
            interval: cfg.export_interval,
            timeout: cfg.export_timeout,
            resource: encode::resource(&cfg.service_name),
            metrics,
            tls: TlsConnector::from(tls),
            sender: None,
            failing: false,
        }
    }

    /// Exports until the stop signal, then flushes what is queued (within a short deadline).
    ///
    /// The queue is drained every [`POLL`] rather than awaited span by span: a receiver that
    /// waits is woken by every send, a wake-up across threads (a futex call) per traced
    /// request; polled, a send only puts the span in the queue.
    pub async fn run(mut self, mut stop: Stop) {
        tracing::info!(endpoint = %self.endpoint.uri, "exporting traces over OTLP/HTTP");
        let mut batch = Batch::default();
        let mut poll = tokio::time::interval(POLL.min(self.interval));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                () = stopped(&mut stop) => break,
            }
            while let Ok(span) = self.rx.try_recv() {
                self.add(&mut batch, span).await;
            }
            if batch.first.is_some_and(|t| t.elapsed() >= self.interval) {
                self.export(&mut batch).await;
            }
        }
        self.rx.close();
        self.timeout = self.timeout.min(FLUSH_ON_STOP);
        while let Ok(span) = self.rx.try_recv() {
            self.add(&mut batch, span).await;
        }
        if !batch.spans.is_empty() {
            self.export(&mut batch).await;
        }
    }

    /// Adds a request's spans (its server span and children, never split) to the batch,
    /// exporting first if they would take it past `batch_size` spans, and after if it is full.
    async fn add(&mut self, batch: &mut Batch, span: SpanData) {
        let n = 1 + span.children.len();
        if !batch.spans.is_empty() && batch.count + n > self.batch_size {
            self.export(batch).await;
        }
        batch.count += n;
        batch.first.get_or_insert_with(Instant::now);
        batch.spans.push(span);
        if batch.count >= self.batch_size {
            self.export(batch).await;
        }
    }

    /// Sends `batch` (emptied either way) and counts what became of its spans.
    async fn export(&mut self, batch: &mut Batch) {
        batch.count = 0;
        batch.first = None;
        let (body, n) = encode::request(&self.resource, batch.spans.drain(..));
        let sent = match tokio::time::timeout(self.timeout, self.post(body)).await {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                Err(ExportError::Timeout(self.timeout))
            }
        };
        match sent {
            Ok(rejected) => {
                self.metrics.exports_ok.inc();
                let rejected = rejected.min(n);
                self.metrics.exported.inc_by(n - rejected);
                self.metrics.export_failed.inc_by(rejected);
                if self.failing {
                    self.failing = false;
                    tracing::info!(endpoint = %self.endpoint.uri, "trace export recovered");
                }
            }
            Err(e) => {
                self.metrics.exports_failed.inc();
                self.metrics.export_failed.inc_by(n);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(endpoint = %self.endpoint.uri, error = %e, spans = n,
                        "trace export failing; spans are dropped until it recovers");
                } else {
                    tracing::debug!(endpoint = %self.endpoint.uri, error = %e, spans = n, "trace export failed");
                }
            }
        }
    }

    /// POSTs one export request; the spans the endpoint says it rejected (partial success).
    async fn post(&mut self, body: Vec<u8>) -> Result<u64, ExportError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let path = self
            .endpoint
            .uri
            .path_and_query()
            .map_or("/v1/traces", |p| p.as_str());
        let mut req = Request::post(path)
            .header(header::HOST, self.authority.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("cellgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))?;
        for (name, value) in &self.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        let answer = sender.send_request(req).await?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), MAX_ANSWER).collect().await;
        // The connection is kept only when its answer was read whole.
        if body.is_ok() {
            self.sender = Some(sender);
        }
        if !status.is_success() {
            return Err(ExportError::Status(status));
        }
        let rejected = body
            .ok()
            .and_then(|b| ExportTraceServiceResponse::decode(b.to_bytes()).ok())
            .and_then(|r| r.partial_success)
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
        Ok(rejected)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ExportError> {
        let e = &self.endpoint;
        let tcp = TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(ExportError::Connect)?;
        tcp.set_nodelay(true).map_err(ExportError::Connect)?;
        if e.tls {
            let name = rustls_pki_types::ServerName::try_from(e.host.clone())
                .map_err(|err| ExportError::Tls(std::io::Error::other(err)))?;
            let stream = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(ExportError::Tls)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move { drop(conn.await) });
            Ok(sender)
        } else {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(async move { drop(conn.await) });
            Ok(sender)
        }
    }
}
