//! Finished spans as OTLP messages (the `opentelemetry-proto` types): the server span with the
//! HTTP semantic-convention attributes and cellgate's own, its children, and the resource that
//! names this process. Runs on the exporter task, never on the request path.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use super::SpanData;
use crate::tracecontext::children::{ATTEMPT, Child, Kind, REGISTRY_READ, Value};

/// Span flags: the W3C "sampled" bit, and "whether the parent is remote" known (bit 8) and
/// set (bit 9).
const SAMPLED: u32 = 0x01;
const REMOTE_KNOWN: u32 = 0x100;
const REMOTE: u32 = 0x200;

/// The resource every span of this process shares.
#[must_use]
pub fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s(service_name)),
            kv("service.version", s(env!("CARGO_PKG_VERSION"))),
            kv("process.pid", int(i64::from(std::process::id()))),
            kv("telemetry.sdk.name", s("cellgate")),
            kv("telemetry.sdk.language", s("rust")),
        ],
        ..Resource::default()
    }
}

/// One export request for `spans` (each server span followed by its children).
#[must_use]
pub fn request(resource: &Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "cellgate".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The server span and its children, appended to `out`.
pub fn spans(d: SpanData, out: &mut Vec<Span>) {
    let r = &d.record;
    let rec = &d.recording;
    let start = nanos(rec.wall);
    let end = start + as_nanos(r.total);
    let mut a = Vec::with_capacity(24);
    a.push(kv("http.request.method", s(r.method.as_str())));
    a.push(kv("url.path", s(r.uri.path())));
    a.push(kv("url.scheme", s(if rec.tls { "https" } else { "http" })));
    if let Some(host) = rec
        .host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .or_else(|| r.uri.host())
    {
        let (name, port) = split_host(host);
        a.push(kv("server.address", s(name)));
        if let Some(p) = port {
            a.push(kv("server.port", int(i64::from(p))));
        }
    }
    a.push(kv("network.protocol.name", s("http")));
    a.push(kv("network.protocol.version", s(version(rec.version))));
    a.push(kv("client.address", s(&ip(rec.client))));
    a.push(kv("http.response.status_code", int(i64::from(r.status))));
    a.push(kv("http.response.body.size", int(to_i64(r.bytes))));
    if let Ok(id) = r.request_id.to_str() {
        a.push(kv("cellgate.request_id", s(id)));
    }
    if let Some(t) = &r.tenant {
        a.push(kv("tenant.id", s(t.as_str())));
    }
    if let Some(src) = d.extra.source {
        a.push(kv("cellgate.tenant.source", s(src)));
    }
    if let Some(c) = &r.cell {
        a.push(kv("cell.id", s(c)));
    }
    if let Some(g) = &d.extra.group {
        a.push(kv("cellgate.target_group", s(g)));
    }
    if let Some(t) = &r.target {
        a.push(kv("cellgate.upstream.target", s(t)));
    }
    let attempts = d.children.iter().filter(|c| c.name == ATTEMPT).count();
    a.push(kv(
        "cellgate.retries",
        int(to_i64(attempts.saturating_sub(1) as u64)),
    ));
    let lookup = d
        .children
        .iter()
        .find(|c| c.name == REGISTRY_READ)
        .and_then(|c| {
            c.attributes
                .iter()
                .find(|(k, _)| *k == "cellgate.registry.read")
        })
        .and_then(|(_, v)| match v {
            Value::Static(s) => Some(*s),
            _ => None,
        })
        // No read, and placed: the snapshot had the tenant.
        .or_else(|| r.cell.is_some().then_some("hit"));
    if let Some(l) = lookup {
        a.push(kv("cellgate.registry.lookup", s(l)));
    }
    if let Some(l) = d.extra.limit {
        a.push(kv("cellgate.limit", s(l)));
    }
    a.push(kv("cellgate.outcome", s(r.outcome.as_str())));
    if let Some(code) = d.extra.code {
        a.push(kv("cellgate.error_code", s(code)));
    }
    if let Some(g) = r.grpc_status {
        a.push(kv("rpc.grpc.status_code", int(i64::from(g))));
    }
    if r.incomplete {
        a.push(kv(
            "cellgate.incomplete",
            AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            },
        ));
    }
    // A server span is an error for a 5xx only (semantic conventions: a 4xx is the client's).
    let error = (r.status >= 500).then(|| d.extra.code.unwrap_or("upstream_error"));
    if let Some(e) = error {
        a.push(kv("error.type", s(e)));
    }
    let trace_id = d.trace_id.0.to_vec();
    let remote = d.parent.map_or(0, |_| REMOTE);
    out.push(Span {
        trace_id: trace_id.clone(),
        span_id: d.span_id.0.to_vec(),
        trace_state: d
            .state
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        parent_span_id: d.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: SAMPLED | REMOTE_KNOWN | remote,
        name: r.method.as_str().to_owned(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: a,
        status: Some(status_of(error)),
        ..Span::default()
    });
    for c in d.children {
        out.push(child(c, &trace_id, d.span_id.0, (rec.wall, rec.mono)));
    }
}

fn child(c: Child, trace_id: &[u8], parent: [u8; 8], anchor: (SystemTime, Instant)) -> Span {
    let at = |t: Instant| {
        let base = nanos(anchor.0);
        match t.checked_duration_since(anchor.1) {
            Some(d) => base + as_nanos(d),
            None => base.saturating_sub(as_nanos(anchor.1.duration_since(t))),
        }
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: c.span_id.0.to_vec(),
        parent_span_id: parent.to_vec(),
        flags: SAMPLED | REMOTE_KNOWN,
        name: c.name.to_owned(),
        kind: match c.kind {
            Kind::Client => span::SpanKind::Client,
            Kind::Internal => span::SpanKind::Internal,
        } as i32,
        start_time_unix_nano: at(c.start),
        end_time_unix_nano: at(c.end),
        attributes: c
            .attributes
            .into_iter()
            .map(|(k, v)| kv(k, value(v)))
            .collect(),
        status: Some(status_of(c.error)),
        ..Span::default()
    }
}

fn status_of(error: Option<&str>) -> Status {
    match error {
        Some(e) => Status {
            message: e.to_owned(),
            code: status::StatusCode::Error as i32,
        },
        None => Status::default(),
    }
}

fn value(v: Value) -> AnyValue {
    AnyValue {
        value: Some(match v {
            Value::Str(x) => any_value::Value::StringValue(x.to_string()),
            Value::Static(x) => any_value::Value::StringValue(x.to_owned()),
            Value::Int(i) => any_value::Value::IntValue(i),
            Value::Bool(b) => any_value::Value::BoolValue(b),
        }),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..KeyValue::default()
    }
}

fn s(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_owned())),
    }
}

const fn int(v: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn as_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, as_nanos)
}

fn ip(a: IpAddr) -> String {
    match a {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

const fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `host[:port]` (or `[v6]:port`) split into the name and the port.
fn split_host(h: &str) -> (&str, Option<u16>) {
    if let Some(rest) = h.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (addr, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (h, None),
    }
}
