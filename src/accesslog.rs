//! The access log: one JSON line per request, written off the request path.
//!
//! The *log* stage hands a [`Record`] (owned, cheap-to-clone fields; no formatting) to a
//! bounded channel; a dedicated thread formats and writes the lines to stdout. When the channel
//! is full the line is dropped and counted (`cellgate_access_log_dropped_total`), never waited
//! for. Lines carry the path without its query string, and never a header value other than the
//! request id, so tokens cannot leak into them; an API key shows as its public id only. Routed requests are sampled; refusals and
//! upstream errors are always logged.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::apikey::KeyId;
use crate::config::AccessLogConfig;
use crate::metrics::Outcome;
use crate::tenant::TenantId;
use crate::tracecontext::{SpanId, TraceId};

/// Everything one line says, captured without formatting.
#[derive(Debug, Clone)]
pub struct Record {
    pub time: SystemTime,
    pub request_id: HeaderValue,
    pub tenant: Option<TenantId>,
    /// The API key that identified the request (its public id).
    pub api_key: Option<KeyId>,
    pub cell: Option<Arc<str>>,
    pub target: Option<Arc<str>>,
    pub method: Method,
    pub uri: Uri,
    pub status: u16,
    pub bytes: u64,
    pub upstream: Option<Duration>,
    pub total: Duration,
    pub outcome: Outcome,
    /// The body did not reach its end (client gone, upstream broke or timed out).
    pub incomplete: bool,
    /// A gRPC call's `grpc-status` (the cell's, or the one the proxy answered with).
    pub grpc_status: Option<u16>,
    /// The request's trace and the proxy's span, and whether it was sampled (`[tracing]`).
    pub trace: Option<(TraceId, SpanId, bool)>,
}

/// The sending side, shared by all workers.
#[derive(Debug)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<Record>>,
    sample: f64,
    dropped: Counter,
}

impl AccessLog {
    /// A log that writes nothing.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            tx: None,
            sample: 0.0,
            dropped: Counter::default(),
        }
    }

    /// Starts the writer thread (when enabled) and returns the sending side.
    pub fn start(cfg: &AccessLogConfig, dropped: Counter) -> std::io::Result<Self> {
        if !cfg.enabled {
            return Ok(Self::disabled());
        }
        let (tx, rx) = mpsc::channel(cfg.buffer);
        std::thread::Builder::new()
            .name("cellgate-access-log".to_owned())
            .spawn(move || write_loop(rx))?;
        Ok(Self {
            tx: Some(tx),
            sample: cfg.sample,
            dropped,
        })
    }

    /// Whether a request with this outcome and status should be logged (sampling).
    #[must_use]
    pub fn wants(&self, outcome: Outcome, status: u16) -> bool {
        self.tx.is_some()
            && (outcome != Outcome::routed
                || status >= 500
                || self.sample >= 1.0
                || fastrand::f64() < self.sample)
    }

    /// Queues a line; drops and counts it if the writer is behind.
    pub fn log(&self, record: Record) {
        if let Some(tx) = &self.tx
            && tx.try_send(record).is_err()
        {
            self.dropped.inc();
        }
    }
}

/// A record waiting for its response body to finish (bytes and total time are known then).
#[derive(Debug)]
pub struct PendingLog {
    pub log: Arc<AccessLog>,
    pub record: Record,
    pub start: tokio::time::Instant,
}

impl PendingLog {
    pub fn finish(mut self, bytes: u64, complete: bool) {
        self.record.bytes = bytes;
        self.record.total = self.start.elapsed();
        self.record.incomplete = !complete;
        self.log.log(self.record);
    }
}

fn write_loop(mut rx: mpsc::Receiver<Record>) {
    // Not `stdout().lock()`: holding the lock while idle would block every other stdout writer.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let mut line = String::with_capacity(512);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(r) = next {
            line.clear();
            format_line(&r, &mut line);
            // A closed stdout is not worth crashing the proxy for.
            let _ = out.write_all(line.as_bytes());
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// Formats one record as a JSON line (with trailing newline).
pub fn format_line(r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    let time = humantime::format_rfc3339_millis(r.time);
    let _ = write!(out, "{{\"time\":\"{time}\",\"request_id\":");
    json_str(out, r.request_id.to_str().unwrap_or(""));
    out.push_str(",\"tenant\":");
    opt_str(out, r.tenant.as_ref().map(TenantId::as_str));
    if let Some(k) = &r.api_key {
        out.push_str(",\"api_key\":");
        json_str(out, k.as_str());
    }
    out.push_str(",\"cell\":");
    opt_str(out, r.cell.as_deref());
    out.push_str(",\"target\":");
    opt_str(out, r.target.as_deref());
    out.push_str(",\"method\":");
    json_str(out, r.method.as_str());
    out.push_str(",\"path\":");
    json_str(out, r.uri.path());
    let _ = write!(out, ",\"status\":{},\"bytes\":{}", r.status, r.bytes);
    out.push_str(",\"upstream_ms\":");
    match r.upstream {
        Some(d) => {
            let _ = write!(out, "{:.3}", d.as_secs_f64() * 1e3);
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"total_ms\":{:.3},\"outcome\":\"{}\"",
        r.total.as_secs_f64() * 1e3,
        r.outcome.as_str()
    );
    if let Some(g) = r.grpc_status {
        let _ = write!(out, ",\"grpc_status\":{g}");
    }
    if r.incomplete {
        out.push_str(",\"incomplete\":true");
    }
    if let Some((trace, span, sampled)) = r.trace {
        let _ = write!(
            out,
            ",\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",\"trace_sampled\":{sampled}"
        );
    }
    out.push_str("}\n");
}

fn opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

fn json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_line_without_the_query() {
        let r = Record {
            time: SystemTime::UNIX_EPOCH,
            request_id: HeaderValue::from_static("abc"),
            tenant: Some(TenantId::parse("acme").unwrap()),
            api_key: crate::apikey::parse("cgk_abcdefghijkl_abcdefghijklmnopqrstuvwxyz")
                .ok()
                .map(|k| KeyId::of(&k)),
            cell: Some(Arc::from("cell-1")),
            target: None,
            method: Method::GET,
            uri: "/a\"b?token=secret"
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/a?token=secret")),
            status: 200,
            bytes: 12,
            upstream: Some(Duration::from_micros(1500)),
            total: Duration::from_millis(2),
            outcome: Outcome::routed,
            incomplete: false,
            grpc_status: Some(0),
            trace: crate::tracecontext::parse_traceparent(&HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ))
            .map(|p| (p.trace_id, p.span_id, true)),
        };
        let mut s = String::new();
        format_line(&r, &mut s);
        assert!(!s.contains("secret"), "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["api_key"], "abcdefghijkl");
        assert!(!s.contains("mnopqrstuvwxyz"), "never the secret: {s}");
        assert_eq!(v["cell"], "cell-1");
        assert_eq!(v["target"], serde_json::Value::Null);
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream_ms"], 1.5);
        assert_eq!(v["outcome"], "routed");
        assert_eq!(v["grpc_status"], 0);
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["trace_sampled"], true);
        assert!(s.ends_with("}\n"));
    }
}
