//! A traced test cell: a small HTTP/1.1 server on `127.0.0.1:0`, registered as a cell target,
//! that records the `traceparent` and `tracestate` of every request it receives and, when
//! given an OTLP endpoint, exports its own SERVER span for each sampled one (parent: the
//! received parent-id) before it answers, as an instrumented service behind the proxy would.
//! Its answer is a fixed body, so the proxy's `http.response.body.size` can be checked, with
//! status 200 unless told otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::otlp::unhex;

/// What every request to the cell gets.
pub const BODY: &str = "hello from the traced cell\n";
/// The `service.name` of the cell's spans.
pub const SERVICE: &str = "test-cell";

/// What one request brought (a field sent on several lines: its lines joined by commas).
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl Seen {
    /// The `traceparent`'s fields: version, trace id, parent id, flags.
    #[must_use]
    pub fn parts(&self) -> [String; 4] {
        let tp = self
            .traceparent
            .as_deref()
            .unwrap_or_else(|| panic!("no traceparent: {self:?}"));
        let p: Vec<&str> = tp.split('-').collect();
        assert_eq!(p.len(), 4, "not a version 00 traceparent: {tp}");
        [p[0], p[1], p[2], p[3]].map(str::to_owned)
    }
}

#[derive(Debug)]
struct State {
    export: Option<String>,
    status: AtomicU16,
    seen: Mutex<Vec<Seen>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A running traced cell; stops when dropped.
#[derive(Debug)]
pub struct TracedCell {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl TracedCell {
    /// A cell that exports its spans to `export` (an OTLP/HTTP traces URL), if given.
    pub async fn start(export: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            export,
            status: AtomicU16::new(200),
            seen: Mutex::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&serving);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The status every request gets from now on.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Every request received so far, in arrival order.
    #[must_use]
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The one request received on `path`.
    #[must_use]
    pub fn only(&self, path: &str) -> Seen {
        let all: Vec<Seen> = self.seen().into_iter().filter(|s| s.path == path).collect();
        assert_eq!(all.len(), 1, "requests on {path}: {all:?}");
        all.into_iter().next().unwrap()
    }
}

impl Drop for TracedCell {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = now();
    // Every line of the field, combined as a recipient may (RFC 9110 §5.3).
    let h = |name: &str| {
        let lines: Vec<String> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!lines.is_empty()).then(|| lines.join(","))
    };
    let seen = Seen {
        path: req.uri().path().to_owned(),
        traceparent: h("traceparent"),
        tracestate: h("tracestate"),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let _ = req.into_body().collect().await;
    if let (Some(url), Some(tp)) = (&state.export, &seen.traceparent) {
        let p: Vec<&str> = tp.split('-').collect();
        // Parent-based, as an SDK behind the proxy would be: only a sampled parent is recorded.
        if p.len() == 4 && p[3] == "01" {
            export(&state.client, url, p[1], p[2], &seen.path, start).await;
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
    Ok(resp)
}

/// Sends the cell's span: trace `trace`, parent `parent` (hex), started at `start`.
async fn export(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    trace: &str,
    parent: &str,
    path: &str,
    start: u64,
) {
    let s = |v: &str| AnyValue {
        value: Some(Value::StringValue(v.to_owned())),
    };
    let span = Span {
        trace_id: unhex(trace),
        span_id: fastrand::u64(1..).to_be_bytes().to_vec(),
        parent_span_id: unhex(parent),
        name: format!("cell GET {path}"),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: now(),
        attributes: vec![KeyValue {
            key: "url.path".into(),
            value: Some(s(path)),
            ..KeyValue::default()
        }],
        ..Span::default()
    };
    let msg = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(s(SERVICE)),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SERVICE.into(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let req = Request::post(url)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(msg.encode_to_vec())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert!(
        resp.status().is_success(),
        "the receiver refused the cell's span"
    );
}

fn now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(d.as_nanos()).unwrap()
}
