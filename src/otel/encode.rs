//! Finished spans as OTLP protobuf (`ExportTraceServiceRequest`), written with [`Writer`]:
//! the server span with the HTTP semantic-convention attributes and cellgate's own, its
//! children, and the resource that names this process. Runs on the exporter task, never on the
//! request path.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use super::SpanData;
use super::wire::Writer;
use crate::tracecontext::children::{ATTEMPT, Child, Kind, REGISTRY_READ, Value};

/// Span flags: the W3C "sampled" bit, and "whether the parent is remote" known (bit 8) and
/// set (bit 9).
const SAMPLED: u32 = 0x01;
const REMOTE_KNOWN: u32 = 0x100;
const REMOTE: u32 = 0x200;

/// OTLP's `SpanKind` and `StatusCode` values.
const SERVER: u64 = 2;
const INTERNAL: u64 = 1;
const CLIENT: u64 = 3;
const STATUS_ERROR: u64 = 2;

/// The resource every span of this process shares, as the fields of a `Resource` message.
#[must_use]
pub fn resource(service_name: &str) -> Vec<u8> {
    let mut w = Writer::with_capacity(256);
    kv(&mut w, 1, "service.name", Attr::Str(service_name));
    kv(
        &mut w,
        1,
        "service.version",
        Attr::Str(env!("CARGO_PKG_VERSION")),
    );
    kv(
        &mut w,
        1,
        "process.pid",
        Attr::Int(i64::from(std::process::id())),
    );
    kv(&mut w, 1, "telemetry.sdk.name", Attr::Str("cellgate"));
    kv(&mut w, 1, "telemetry.sdk.language", Attr::Str("rust"));
    w.finish()
}

/// One export request for `spans` (each server span followed by its children), and how many
/// spans it holds.
#[must_use]
pub fn request(resource: &[u8], spans: impl IntoIterator<Item = SpanData>) -> (Vec<u8>, u64) {
    let mut w = Writer::with_capacity(16 * 1024);
    let mut n = 0;
    w.begin(1); // ResourceSpans
    w.message(1, resource);
    w.begin(2); // ScopeSpans
    w.begin(1); // InstrumentationScope
    w.string(1, "cellgate");
    w.string(2, env!("CARGO_PKG_VERSION"));
    w.end();
    for d in spans {
        n += 1 + d.children.len() as u64;
        server_span(&mut w, &d);
    }
    w.end();
    w.end();
    (w.finish(), n)
}

/// A span attribute's value, borrowed.
enum Attr<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

/// A `KeyValue` as field `field` of the message being written.
fn kv(w: &mut Writer, field: u32, key: &str, value: Attr<'_>) {
    w.begin(field);
    w.string(1, key);
    w.begin(2); // AnyValue
    match value {
        Attr::Str(s) => w.string(1, s),
        Attr::Bool(b) => w.boolean(2, b),
        Attr::Int(i) => w.int64(3, i),
    }
    w.end();
    w.end();
}

/// A span's attribute (field 9 of `Span`).
fn attr(w: &mut Writer, key: &str, value: Attr<'_>) {
    kv(w, 9, key, value);
}

fn status(w: &mut Writer, error: Option<&str>) {
    if let Some(e) = error {
        w.begin(15);
        w.string(2, e);
        w.uint(3, STATUS_ERROR);
        w.end();
    }
}

/// The server span and its children, as `spans` of the open `ScopeSpans`.
fn server_span(w: &mut Writer, d: &SpanData) {
    let r = &d.record;
    let rec = &d.recording;
    let start = nanos(rec.wall);
    let end = start + as_nanos(r.total);
    w.begin(2);
    w.bytes(1, &d.trace_id.0);
    w.bytes(2, &d.span_id.0);
    if let Some(state) = d.state.as_ref().and_then(|v| v.to_str().ok()) {
        w.string(3, state);
    }
    if let Some(p) = &d.parent {
        w.bytes(4, &p.0);
    }
    w.string(5, r.method.as_str());
    w.uint(6, SERVER);
    w.fixed64(7, start);
    w.fixed64(8, end);
    attr(w, "http.request.method", Attr::Str(r.method.as_str()));
    attr(w, "url.path", Attr::Str(r.uri.path()));
    attr(
        w,
        "url.scheme",
        Attr::Str(if rec.tls { "https" } else { "http" }),
    );
    if let Some(host) = rec
        .host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .or_else(|| r.uri.host())
    {
        let (name, port) = split_host(host);
        attr(w, "server.address", Attr::Str(name));
        if let Some(p) = port {
            attr(w, "server.port", Attr::Int(i64::from(p)));
        }
    }
    attr(w, "network.protocol.name", Attr::Str("http"));
    attr(
        w,
        "network.protocol.version",
        Attr::Str(version(rec.version)),
    );
    attr(w, "client.address", Attr::Str(&ip(rec.client)));
    attr(
        w,
        "http.response.status_code",
        Attr::Int(i64::from(r.status)),
    );
    attr(w, "http.response.body.size", Attr::Int(to_i64(r.bytes)));
    if let Ok(id) = r.request_id.to_str() {
        attr(w, "cellgate.request_id", Attr::Str(id));
    }
    if let Some(t) = &r.tenant {
        attr(w, "tenant.id", Attr::Str(t.as_str()));
    }
    if let Some(src) = d.extra.source {
        attr(w, "cellgate.tenant.source", Attr::Str(src));
    }
    if let Some(c) = &r.cell {
        attr(w, "cell.id", Attr::Str(c));
    }
    if let Some(g) = &d.extra.group {
        attr(w, "cellgate.target_group", Attr::Str(g));
    }
    if let Some(t) = &r.target {
        attr(w, "cellgate.upstream.target", Attr::Str(t));
    }
    let attempts = d.children.iter().filter(|c| c.name == ATTEMPT).count();
    let retries = i64::try_from(attempts.saturating_sub(1)).unwrap_or(i64::MAX);
    attr(w, "cellgate.retries", Attr::Int(retries));
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
        attr(w, "cellgate.registry.lookup", Attr::Str(l));
    }
    if let Some(l) = d.extra.limit {
        attr(w, "cellgate.limit", Attr::Str(l));
    }
    attr(w, "cellgate.outcome", Attr::Str(r.outcome.as_str()));
    if let Some(code) = d.extra.code {
        attr(w, "cellgate.error_code", Attr::Str(code));
    }
    if let Some(g) = r.grpc_status {
        attr(w, "rpc.grpc.status_code", Attr::Int(i64::from(g)));
    }
    if r.incomplete {
        attr(w, "cellgate.incomplete", Attr::Bool(true));
    }
    // A server span is an error for a 5xx only (semantic conventions: a 4xx is the client's).
    let error = (r.status >= 500).then(|| d.extra.code.unwrap_or("upstream_error"));
    if let Some(e) = error {
        attr(w, "error.type", Attr::Str(e));
    }
    status(w, error);
    let remote = d.parent.map_or(0, |_| REMOTE);
    w.fixed32(16, SAMPLED | REMOTE_KNOWN | remote);
    w.end();
    for c in &d.children {
        child(w, c, d, (rec.wall, rec.mono));
    }
}

fn child(w: &mut Writer, c: &Child, d: &SpanData, anchor: (SystemTime, Instant)) {
    let at = |t: Instant| {
        let base = nanos(anchor.0);
        match t.checked_duration_since(anchor.1) {
            Some(d) => base + as_nanos(d),
            None => base.saturating_sub(as_nanos(anchor.1.duration_since(t))),
        }
    };
    w.begin(2);
    w.bytes(1, &d.trace_id.0);
    w.bytes(2, &c.span_id.0);
    w.bytes(4, &d.span_id.0);
    w.string(5, c.name);
    w.uint(
        6,
        match c.kind {
            Kind::Client => CLIENT,
            Kind::Internal => INTERNAL,
        },
    );
    w.fixed64(7, at(c.start));
    w.fixed64(8, at(c.end));
    for (k, v) in &c.attributes {
        let v = match v {
            Value::Str(x) => Attr::Str(x),
            Value::Static(x) => Attr::Str(x),
            Value::Int(i) => Attr::Int(*i),
            Value::Bool(b) => Attr::Bool(*b),
            Value::Ip(a) => {
                attr(w, k, Attr::Str(&ip(*a)));
                continue;
            }
        };
        attr(w, k, v);
    }
    status(w, c.error);
    w.fixed32(16, SAMPLED | REMOTE_KNOWN);
    w.end();
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
