//! Refusals: a request the proxy refuses, or could not forward, gets its status, a small JSON
//! body naming the code, the request id and (when it is about the cell) the cell (a gRPC call
//! gets the same as a gRPC status instead), the
//! `RateLimit` headers of a 429, its metrics and access-log line, and its tenant's usage.
//!
//! [`crate::error`] decides what each refusal means; this module writes the answer ([`raw`]:
//! as bytes, for the heads the desync guard refuses before hyper reads them).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, Version};

use super::ProxyBody;
use super::arrival::Arrival;
use crate::accesslog::AccessLog;
use crate::desync::Reason;
use crate::error::{GrpcStatus, ProxyError, error_body, grpc_message};
use crate::headers::{GRPC_MESSAGE, GRPC_STATUS, RATELIMIT, RATELIMIT_POLICY, X_REQUEST_ID};
use crate::hygiene::Violation;
use crate::metering::answer::{bytes_in, unix_secs};
use crate::metering::{Meter, Sample};
use crate::metrics::{CellMetrics, Metrics};
use crate::otel::Tracer;
use crate::placement::Cell;
use crate::ratelimit::Limited;
use crate::tenant::TenantId;

/// Where answers are recorded: the metrics, the access log, and the handles of requests that
/// reached no cell.
#[derive(Debug, Clone, Copy)]
pub struct Ledger<'a> {
    pub metrics: &'a Metrics,
    pub access_log: &'a AccessLog,
    pub none_cell: &'a Arc<CellMetrics>,
    /// The worker's usage meter, when metering is on.
    pub meter: Option<&'a Meter>,
    /// Where a sampled request's span goes (`[tracing]`).
    pub tracer: Option<&'a Tracer>,
}

/// A head the hygiene stage refused: 400 (or 413/414/431), and an HTTP/1 connection closed,
/// since where its next request starts is no longer certain.
pub fn hygiene(
    ledger: Ledger<'_>,
    a: &Arrival,
    v: Violation,
    client: std::net::IpAddr,
    version: Version,
) -> Response<ProxyBody> {
    tracing::debug!(client = %client, reason = v.reason(), "request refused: {v}");
    ledger.metrics.request_rejected(v.reason());
    let mut resp = refuse(ledger, a, v.into(), None, None);
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A head the desync guard refused before hyper read it: counted (`requests_rejected_total`
/// by the reason), logged and answered like any refusal, returned as the whole HTTP/1.1
/// answer in bytes (the guard writes it; `Connection: close`).
pub fn raw(ledger: Ledger<'_>, reason: Reason, head: &[u8]) -> Vec<u8> {
    ledger.metrics.request_rejected(reason.label());
    let a = Arrival::raw(head);
    let (parts, body) = refuse(ledger, &a, reason.into(), None, None).into_parts();
    let body = body.into_full().unwrap_or_default();
    let status = parts.status;
    let mut out = Vec::with_capacity(192 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    // An answer to HEAD has no body (RFC 9110 §9.3.2); its length is the one GET would get.
    if a.method != http::Method::HEAD {
        out.extend_from_slice(&body);
    }
    out
}

/// A refusal as a gRPC client reads one: HTTP 200, no body (a trailers-only response), the
/// status in `grpc-status` ([`GrpcStatus::of`] the HTTP status) and the code, cell and request
/// id in `grpc-message`. The metrics, the log and usage keep the HTTP status the refusal means.
fn grpc_refusal(
    status: http::StatusCode,
    code: &str,
    request_id: &str,
    cell: Option<&str>,
    entitlement: Option<&str>,
) -> (Response<ProxyBody>, u64) {
    let mut resp = Response::new(ProxyBody::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS, GrpcStatus::of(status).header());
    let message = grpc_message(code, request_id, cell, entitlement);
    if let Ok(v) = HeaderValue::try_from(message) {
        h.insert(GRPC_MESSAGE, v);
    }
    (resp, 0)
}

/// Answers a request the proxy refuses or could not forward: status, JSON body (or a gRPC
/// status for a gRPC call), metrics, log.
pub fn refuse(
    ledger: Ledger<'_>,
    a: &Arrival,
    err: ProxyError,
    tenant: Option<TenantId>,
    cell: Option<&Cell>,
) -> Response<ProxyBody> {
    let r = err.response();
    let metrics = ledger.metrics;
    if let Some(reason) = err.auth_label() {
        metrics.auth_rejection(reason);
    }
    if let Some(reason) = err.key_label() {
        metrics.api_key_rejection(reason);
    }
    let missing = err.not_entitled();
    if let Some(e) = missing {
        metrics.not_entitled(e.by.as_str());
    }
    let cell_id = cell.map(|c| &c.id).or_else(|| match &err {
        ProxyError::Route(e) => e.cell(),
        _ => None,
    });
    // A tenant's own limit is not about its cell: the body does not name the cell.
    let tenant_limit = matches!(
        &err,
        ProxyError::Limit(Limited::Rate { .. } | Limited::Concurrency { .. })
    );
    let (request_id, shown_cell) = (
        a.request_id.to_str().unwrap_or(""),
        cell_id.filter(|_| !tenant_limit).map(|c| &**c),
    );
    let entitlement = missing.map(|e| &*e.entitlement);
    let (mut resp, len) = if a.grpc {
        grpc_refusal(r.status, r.code, request_id, shown_cell, entitlement)
    } else {
        let body = error_body(r.code, request_id, shown_cell, entitlement);
        let len = body.len() as u64;
        let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
        *resp.status_mut() = r.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        (resp, len)
    };
    let h = resp.headers_mut();
    h.insert(X_REQUEST_ID, a.request_id.clone());
    if let Some(v) = r.www_authenticate {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
    }
    if let Some(d) = r.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs()));
    }
    let cm = match cell {
        Some(c) => c.metrics(metrics),
        None => ledger.none_cell,
    };
    if let ProxyError::Limit(l) = &err {
        if let Limited::Rate { policy, wait, .. } = l {
            h.insert(RATELIMIT_POLICY, policy.policy_header());
            h.insert(RATELIMIT, policy.state_header(*wait));
        }
        if let Some((tier, kind)) = l.tier() {
            metrics.rate_limited(cm, tier.index, &tier.name, kind);
        }
    }
    if let Some(kind) = r.upstream_kind {
        metrics.record_upstream_error(cm, kind);
    }
    let status = r.status.as_u16();
    metrics.record_request(cm, status, r.outcome, a.start.elapsed());
    let grpc_status = a.grpc.then(|| u16::from(GrpcStatus::of(r.status).0));
    if a.grpc {
        cm.grpc_answered(grpc_status);
    }
    // A refusal counts for its tenant, once it is one the registry holds.
    if let (Some(meter), Some(tenant)) = (ledger.meter, tenant)
        && err.metered()
    {
        let sample = Sample {
            tenant,
            cell: cell_id,
            route: a.route,
            status,
            bytes_in: bytes_in(&a.bytes_in),
            bytes_out: len,
            upstream: None,
        };
        meter.record(&sample, unix_secs());
    }
    let traced = ledger.tracer.filter(|_| a.traced());
    let logged = ledger.access_log.wants(r.outcome, status);
    if traced.is_some() || logged {
        let mut rec = a.record(tenant, cell_id, None, status, None, r.outcome);
        rec.bytes = len;
        rec.grpc_status = grpc_status;
        if let (Some(tracer), Some(trace)) = (traced, &a.trace) {
            // The admit stage's answer: this refusal, or (for a failure after it) admitted.
            let limit = match &err {
                ProxyError::Limit(_) => Some(r.code),
                ProxyError::BodyLimit(_) => Some("admitted"),
                _ if r.upstream_kind.is_some() => Some("admitted"),
                _ => None,
            };
            tracer.finish(trace, rec.clone(), a.extra(Some(r.code), limit));
        }
        if logged {
            ledger.access_log.log(rec);
        }
    }
    resp
}
