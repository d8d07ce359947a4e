//! OpenTelemetry traces (`[tracing]`), end to end: a real cellgate in-process in front of a
//! traced test cell, both exporting OTLP/HTTP to a test receiver. A routed request is one
//! trace from the client's span through the proxy's server span and its upstream attempt to
//! the cell's span, with the attributes the proxy promises; without `[tracing]` the trace
//! headers pass through untouched; the admin listener is never traced. The submodules cover
//! whose `traceparent` is believed ([`trust`]), how the request and its client are named
//! ([`identity`]), the sample ratio ([`sampling`]), an endpoint that is down, slow or refusing
//! ([`export`]), refused and failed requests ([`refusals`]), and the ids in the access log of
//! the real binary ([`access_log`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "tracing/access_log.rs"]
mod access_log;
#[path = "tracing/cell.rs"]
mod cell;
mod common;
#[path = "tracing/export.rs"]
mod export;
#[path = "tracing/identity.rs"]
mod identity;
#[path = "tracing/refusals.rs"]
mod refusals;
#[path = "tracing/sampling.rs"]
mod sampling;
#[path = "tracing/trust.rs"]
mod trust;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use cell::TracedCell;
use common::cells::{eventually, metric, within};
use common::otlp::{Received, Receiver, hex, int_attr, is_proxy_server, str_attr, unhex};
use common::{Harness, Reply, base_config, registry};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;

const HOST: &str = "acme.app.test";
/// The client's own trace and span, in the `traceparent`s the tests send.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const CLIENT_STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
/// `[server]` keys that make every loopback client a trusted hop.
const LOOPBACK_HOPS: &str = "trusted_hops = [\"127.0.0.0/8\"]";
/// How long spans may take to reach the receiver (the tests export every 20 ms).
const ARRIVE: Duration = Duration::from_secs(5);

const EXPORTED: &str = "cellgate_trace_spans_exported_total";
const DROPPED: &str = "cellgate_trace_spans_dropped_total";
const EXPORTS: &str = "cellgate_trace_exports_total";

/// A `[tracing]` section sending to `endpoint` every 20 ms, with `more` keys (and tables)
/// after it.
fn tracing(endpoint: &str, more: &str) -> String {
    format!("[tracing]\notlp_endpoint = \"{endpoint}\"\nexport_interval = \"20ms\"\n{more}\n")
}

/// The proxy with `server` keys added to `[server]` and `extra` appended to the base config,
/// in front of one cell `cell-1` (targets `targets`) holding tenant `acme`.
async fn proxy(server: &str, extra: &str, targets: Vec<String>) -> Harness {
    start(&config(server, extra), targets).await
}

/// The base config with `server` keys added to `[server]` and `extra` appended.
fn config(server: &str, extra: &str) -> String {
    base_config(extra).replace(
        "shutdown_grace = \"5s\"",
        &format!("shutdown_grace = \"5s\"\n{server}"),
    )
}

/// The proxy with `config`, in front of one cell `cell-1` (targets `targets`) holding tenant
/// `acme`.
async fn start(config: &str, targets: Vec<String>) -> Harness {
    Harness::start_raw(config, &one_cell(targets), Vec::new()).await
}

/// Registry text: cell `cell-1` with `targets`, tenant `acme` in it.
fn one_cell(targets: Vec<String>) -> String {
    registry(
        &[("cell-1".to_owned(), targets)],
        &[("acme", "cell-1", "ACTIVE")],
    )
}

/// A version 00 `traceparent`.
fn traceparent(trace: &str, span: &str, flags: &str) -> String {
    format!("00-{trace}-{span}-{flags}")
}

/// GET `path` on `host` with `headers`.
async fn get(h: &Harness, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = h.request(host, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    h.send(b.body(Full::default()).unwrap()).await
}

/// GET `path` on `host` with `headers` from the proxy at `addr` (a subprocess, say).
async fn get_at(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = Request::get(format!("http://{addr}{path}")).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::default()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The one span of `spans` that `pick` chooses.
fn one<'a>(spans: &'a [Received], what: &str, pick: impl Fn(&Received) -> bool) -> &'a Received {
    let found: Vec<&Received> = spans.iter().filter(|r| pick(r)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}");
    found[0]
}

/// The proxy's server span of the request on `path`, once it arrived.
async fn server_span(rx: &Receiver, path: &str) -> Received {
    let spans = rx
        .wait_until(ARRIVE, &format!("server span of {path}"), |s| {
            s.iter()
                .any(|r| is_proxy_server(r) && str_attr(&r.span, "url.path") == Some(path))
        })
        .await;
    one(&spans, path, |r| {
        is_proxy_server(r) && str_attr(&r.span, "url.path") == Some(path)
    })
    .clone()
}

/// The span's status code (unset when it has none).
fn status(r: &Received) -> SpanStatus {
    let code = r.span.status.as_ref().map_or(0, |s| s.code);
    SpanStatus::try_from(code).unwrap()
}

// A client span → the proxy's server span → its upstream attempt → the cell's span: one trace,
// each the parent of the next; the server span carries the request's attributes (never the
// query), the attempt its target; the export is protobuf to the configured path with the
// configured headers and service name.
#[tokio::test]
async fn a_routed_request_is_one_trace_from_the_client_through_the_proxy_to_the_cell() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(Some(rx.url())).await;
        let more = "service_name = \"edge-test\"\n[tracing.headers]\nx-collector-key = \"k-123\"";
        let h = proxy(LOOPBACK_HOPS, &tracing(&rx.url(), more), vec![cell.url()]).await;
        let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "01");
        let r = get(&h, HOST, "/orders/7?secret=s3cr3t", &[("traceparent", &tp)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, cell::BODY);

        let trace = unhex(CLIENT_TRACE);
        let spans = rx
            .wait_until(ARRIVE, "three spans of the client's trace", |s| {
                s.iter().filter(|r| r.span.trace_id == trace).count() >= 3
            })
            .await;
        assert_eq!(spans.len(), 3, "{spans:#?}");
        let server = one(&spans, "server span", is_proxy_server);
        let attempt = one(&spans, "attempt", |r| r.span.name == "upstream attempt");
        let cell_span = one(&spans, "cell span", |r| r.service() == cell::SERVICE);

        // The tree.
        assert!(spans.iter().all(|r| r.span.trace_id == trace));
        assert_eq!(hex(&server.span.parent_span_id), CLIENT_SPAN);
        assert_eq!(attempt.span.parent_span_id, server.span.span_id);
        assert_eq!(cell_span.span.parent_span_id, attempt.span.span_id);
        let seen = cell.only("/orders/7");
        let attempt_id = hex(&attempt.span.span_id);
        assert_eq!(
            seen.traceparent.as_deref(),
            Some(traceparent(CLIENT_TRACE, &attempt_id, "01").as_str())
        );
        let ids = [
            &server.span.span_id,
            &attempt.span.span_id,
            &cell_span.span.span_id,
        ];
        assert!(ids.iter().all(|id| id.len() == 8 && **id != [0; 8]));

        // The server span.
        let s = &server.span;
        assert_eq!((s.name.as_str(), s.kind), ("GET", SpanKind::Server as i32));
        assert_eq!(server.service(), "edge-test");
        for (key, want) in [
            ("http.request.method", "GET"),
            ("url.path", "/orders/7"),
            ("url.scheme", "http"),
            ("server.address", HOST),
            ("network.protocol.version", "1.1"),
            ("client.address", "127.0.0.1"),
            ("tenant.id", "acme"),
            ("cellgate.tenant.source", "subdomain"),
            ("cell.id", "cell-1"),
            ("cellgate.target_group", "stable"),
            ("cellgate.registry.lookup", "hit"),
            ("cellgate.limit", "admitted"),
            ("cellgate.outcome", "routed"),
        ] {
            assert_eq!(str_attr(s, key), Some(want), "{key}");
        }
        let request_id = r.headers["x-request-id"].to_str().unwrap();
        assert_eq!(str_attr(s, "cellgate.request_id"), Some(request_id));
        assert_eq!(
            str_attr(s, "cellgate.upstream.target"),
            Some(cell.url().as_str())
        );
        assert_eq!(int_attr(s, "http.response.status_code"), Some(200));
        assert_eq!(
            int_attr(s, "http.response.body.size"),
            Some(r.body.len() as i64)
        );
        assert_eq!(int_attr(s, "cellgate.retries"), Some(0));
        for key in ["server.port", "cellgate.error_code", "error.type"] {
            assert!(
                str_attr(s, key).is_none() && int_attr(s, key).is_none(),
                "{key}"
            );
        }
        assert_eq!(status(server), SpanStatus::Unset);
        let everything = format!("{spans:?}");
        assert!(
            !everything.contains("s3cr3t"),
            "the query leaked into a span"
        );

        // Its upstream attempt.
        let a = &attempt.span;
        assert_eq!(a.kind, SpanKind::Client as i32);
        assert_eq!(str_attr(a, "url.full"), Some(cell.url().as_str()));
        assert_eq!(str_attr(a, "network.peer.address"), Some("127.0.0.1"));
        assert_eq!(
            int_attr(a, "network.peer.port"),
            Some(i64::from(cell.addr.port()))
        );
        assert_eq!(int_attr(a, "http.response.status_code"), Some(200));
        assert_eq!(int_attr(a, "http.request.resend_count"), None);
        assert_eq!(status(attempt), SpanStatus::Unset);
        assert!(s.start_time_unix_nano <= a.start_time_unix_nano);
        assert!(a.start_time_unix_nano <= a.end_time_unix_nano);
        assert!(a.end_time_unix_nano <= s.end_time_unix_nano);

        // The export requests: protobuf, to the endpoint's path, with the extra header.
        let posts: Vec<_> = rx
            .posts()
            .into_iter()
            .filter(|p| {
                p.headers
                    .get("user-agent")
                    .is_some_and(|v| v.to_str().unwrap().starts_with("cellgate/"))
            })
            .collect();
        assert!(!posts.is_empty());
        for p in &posts {
            assert_eq!(p.path, "/v1/traces");
            assert_eq!(p.headers["content-type"], "application/x-protobuf");
            assert_eq!(p.headers["x-collector-key"], "k-123");
        }
        eventually(ARRIVE, "exported spans counted", || async {
            metric(&h, EXPORTED, &[]).await == 2.0
        })
        .await;
        h.shutdown().await;
    })
    .await;
}

// Without `[tracing]` the proxy is transparent to trace context: the client's `traceparent`
// and `tracestate` reach the cell as sent (even a malformed one), none is made up, and
// nothing is exported.
#[tokio::test]
async fn without_tracing_the_trace_headers_pass_through_untouched() {
    within(async {
        let cell = TracedCell::start(None).await;
        let h = proxy(LOOPBACK_HOPS, "", vec![cell.url()]).await;
        let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "01");
        // The tracestate on two lines: both reach the cell.
        let (first, second) = CLIENT_STATE.split_once(',').unwrap();
        let sent = [
            ("traceparent", tp.as_str()),
            ("tracestate", first),
            ("tracestate", second),
        ];
        assert_eq!(get(&h, HOST, "/valid", &sent).await.status, 200);
        let odd = "00-NOT-A-TRACEPARENT";
        let sent = [("traceparent", odd), ("tracestate", "x=y")];
        assert_eq!(get(&h, HOST, "/malformed", &sent).await.status, 200);
        assert_eq!(get(&h, HOST, "/none", &[]).await.status, 200);

        let seen = cell.only("/valid");
        assert_eq!(seen.traceparent.as_deref(), Some(tp.as_str()));
        assert_eq!(seen.tracestate.as_deref(), Some(CLIENT_STATE));
        let seen = cell.only("/malformed");
        assert_eq!(seen.traceparent.as_deref(), Some(odd));
        assert_eq!(seen.tracestate.as_deref(), Some("x=y"));
        let seen = cell.only("/none");
        assert_eq!((seen.traceparent, seen.tracestate), (None, None));
        for name in [EXPORTED, DROPPED, EXPORTS] {
            assert_eq!(metric(&h, name, &[]).await, 0.0, "{name}");
        }
        h.shutdown().await;
    })
    .await;
}

// The admin listener's requests are never traced, even at ratio 1: after several, one proxied
// request's spans are the only ones exported (spans leave in order, so an admin span queued
// before them would have arrived first).
#[tokio::test]
async fn the_admin_listener_is_never_traced() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let h = proxy(
            "",
            &tracing(&rx.url(), "sample_ratio = 1.0"),
            vec![cell.url()],
        )
        .await;
        for path in [
            "/metrics",
            "/readyz",
            "/healthz",
            "/admin/cells",
            "/no-such-admin-path",
        ] {
            let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "01");
            let req = http::Request::get(format!("http://{}{path}", h.admin))
                .header("traceparent", tp)
                .body(Full::default())
                .unwrap();
            let _ = h.send(req).await;
        }
        assert_eq!(get(&h, HOST, "/after-admin", &[]).await.status, 200);
        server_span(&rx, "/after-admin").await;
        let spans = rx.wait_for(2, ARRIVE).await;
        assert_eq!(spans.len(), 2, "{spans:#?}");
        assert_eq!(rx.server_spans().len(), 1);
        assert_eq!(
            rx.server_spans()[0].service(),
            "cellgate",
            "the default service.name"
        );
        assert!(rx.trace(&unhex(CLIENT_TRACE)).is_empty());
        // Reading /metrics again is not traced either.
        eventually(ARRIVE, "both spans counted as exported", || async {
            metric(&h, EXPORTED, &[]).await == 2.0
        })
        .await;
        assert_eq!(get(&h, HOST, "/last", &[]).await.status, 200);
        server_span(&rx, "/last").await;
        assert_eq!(rx.count(), 4);
        h.shutdown().await;
    })
    .await;
}
