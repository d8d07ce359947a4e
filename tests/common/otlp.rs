//! An OTLP/HTTP trace receiver for the tracing tests (`tests/tracing.rs`): a real HTTP/1.1
//! server on `127.0.0.1:0` that decodes every POST body as an `ExportTraceServiceRequest`,
//! keeps each span with its resource's attributes, and answers 200 with an empty
//! `ExportTraceServiceResponse`, as a collector does. It can be told to answer 503 instead, or
//! to hang (read the request, never answer), and it can be stopped (listener and open
//! connections closed, so a connect is refused). Helpers wait for spans without sleeping, find
//! them by trace, name or kind, and read their attributes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the receiver answers an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// 200 and an empty `ExportTraceServiceResponse`; the spans are kept.
    Accept = 0,
    /// 503; the spans are not kept.
    Unavailable = 1,
    /// The request is read and never answered (until the receiver stops).
    Hang = 2,
}

/// One received span, with what its `ResourceSpans` and `ScopeSpans` said.
#[derive(Debug, Clone)]
pub struct Received {
    pub span: Span,
    pub resource: Vec<KeyValue>,
    pub scope: String,
}

impl Received {
    /// The resource's `service.name`.
    #[must_use]
    pub fn service(&self) -> &str {
        self.resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .and_then(|v| match v {
                Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            })
            .unwrap_or("")
    }
}

/// One export request as it arrived (any mode).
#[derive(Debug, Clone)]
pub struct Post {
    pub path: String,
    pub headers: HeaderMap,
    /// Spans in its body (0 when it did not decode).
    pub spans: usize,
}

#[derive(Debug)]
struct State {
    mode: AtomicU8,
    spans: Mutex<Vec<Received>>,
    posts: Mutex<Vec<Post>>,
    /// Spans kept so far, for waiters.
    kept: watch::Sender<usize>,
    open: AtomicI64,
}

/// A running (or stopped) receiver.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    running: Mutex<Option<(JoinHandle<()>, watch::Sender<bool>)>>,
}

impl Receiver {
    pub async fn start() -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(State {
            mode: AtomicU8::new(Mode::Accept as u8),
            spans: Mutex::default(),
            posts: Mutex::default(),
            kept: watch::channel(0).0,
            open: AtomicI64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        Arc::new(Self {
            addr,
            state,
            running: Mutex::new(Some((task, stop))),
        })
    }

    /// The traces endpoint, for `tracing.otlp_endpoint`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection (hung requests included): from now on
    /// a connect is refused.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((task, stop)) = running {
            let _ = stop.send(true);
            task.abort();
            let _ = task.await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.state.open.load(Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "receiver connections still open after stop"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every span kept so far, in arrival order.
    #[must_use]
    pub fn spans(&self) -> Vec<Received> {
        self.state.spans.lock().unwrap().clone()
    }

    /// How many spans were kept so far.
    #[must_use]
    pub fn count(&self) -> usize {
        *self.state.kept.borrow()
    }

    /// Every export request that arrived, answered or not.
    #[must_use]
    pub fn posts(&self) -> Vec<Post> {
        self.state.posts.lock().unwrap().clone()
    }

    /// Waits until at least `n` spans were kept; all of them. Fails after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        self.wait_until(limit, &format!("{n} spans"), |s| s.len() >= n)
            .await
    }

    /// Waits until the spans kept so far satisfy `done`; all of them. Fails naming `what`
    /// after `limit`.
    pub async fn wait_until<F>(&self, limit: Duration, what: &str, mut done: F) -> Vec<Received>
    where
        F: FnMut(&[Received]) -> bool,
    {
        let mut kept = self.state.kept.subscribe();
        let waited = tokio::time::timeout(limit, async {
            loop {
                kept.borrow_and_update();
                let spans = self.spans();
                if done(&spans) {
                    return spans;
                }
                if kept.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            let names: Vec<String> = self.spans().iter().map(describe).collect();
            panic!("receiver: no {what} within {limit:?}; got {names:#?}")
        })
    }

    /// The spans of trace `trace_id` (16 bytes).
    #[must_use]
    pub fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|r| r.span.trace_id == trace_id)
            .collect()
    }

    /// The spans named `name`.
    #[must_use]
    pub fn named(&self, name: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|r| r.span.name == name)
            .collect()
    }

    /// The proxy's server spans (kind SERVER, instrumentation scope `cellgate`).
    #[must_use]
    pub fn server_spans(&self) -> Vec<Received> {
        self.spans().into_iter().filter(is_proxy_server).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some((task, stop)) = self.running.get_mut().unwrap().take() {
            let _ = stop.send(true);
            task.abort();
        }
    }
}

/// Whether `r` is a server span of the proxy's (not of a test cell).
#[must_use]
pub fn is_proxy_server(r: &Received) -> bool {
    r.scope == "cellgate" && r.span.kind == SpanKind::Server as i32
}

/// A short description of a span, for failure messages.
#[must_use]
pub fn describe(r: &Received) -> String {
    format!(
        "{} {:?} trace={} span={} parent={} ({})",
        r.span.name,
        SpanKind::try_from(r.span.kind).unwrap_or(SpanKind::Unspecified),
        hex(&r.span.trace_id),
        hex(&r.span.span_id),
        hex(&r.span.parent_span_id),
        r.service()
    )
}

/// Attribute `key` of `span`.
#[must_use]
pub fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// String attribute `key` of `span` (`None`: absent or not a string).
#[must_use]
pub fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key)? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Integer attribute `key` of `span` (`None`: absent or not an integer).
#[must_use]
pub fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// Boolean attribute `key` of `span` (`None`: absent or not a boolean).
#[must_use]
pub fn bool_attr(span: &Span, key: &str) -> Option<bool> {
    match attr(span, key)? {
        Value::BoolValue(b) => Some(*b),
        _ => None,
    }
}

/// Lower-case hex of `bytes` (ids as `traceparent` and the access log write them).
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lower-case hex `s`.
#[must_use]
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stopped: watch::Receiver<bool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.open.fetch_add(1, Ordering::SeqCst);
        let (state, mut stopped) = (Arc::clone(&state), stopped.clone());
        tokio::spawn(async move {
            let svc = {
                let state = Arc::clone(&state);
                service_fn(move |req| answer(Arc::clone(&state), req))
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
            state.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn answer(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let decoded = ExportTraceServiceRequest::decode(body).ok();
    let spans = decoded.as_ref().map_or(0, |d| {
        d.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    });
    state.posts.lock().unwrap().push(Post {
        path,
        headers,
        spans,
    });
    let mode = state.mode.load(Ordering::SeqCst);
    if mode == Mode::Hang as u8 {
        // Held until the receiver stops (the connection task drops this future).
        std::future::pending::<()>().await;
    }
    let status = if mode == Mode::Unavailable as u8 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if let Some(d) = decoded {
        keep(&state, d);
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = if status == StatusCode::OK {
        ExportTraceServiceResponse::default().encode_to_vec()
    } else {
        Vec::new()
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-protobuf".parse().unwrap(),
    );
    Ok(resp)
}

fn keep(state: &State, d: ExportTraceServiceRequest) {
    let mut kept = state.spans.lock().unwrap();
    for rs in d.resource_spans {
        let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                kept.push(Received {
                    span,
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    let n = kept.len();
    drop(kept);
    state.kept.send_replace(n);
}
