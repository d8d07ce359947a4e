//! Requests the proxy refuses or cannot forward are traced too. A 404 for an unknown tenant or
//! a 429 is a server span with `cellgate.error_code` and the status, not an error (a 4xx is the
//! client's); a cell that cannot be reached is a 503 server span with `error.type` and an ERROR
//! status, its failed attempts children with `error.type`, the retry counted; a cell's own 5xx
//! is an ERROR span too, its attempt carrying the status, and each retry tells its cell its
//! own attempt. A streamed answer the client abandons is still exported, as incomplete.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cell::{self, TracedCell};
use crate::common::Harness;
use crate::common::cells::{urls, within};
use crate::common::otlp::{Received, Receiver, bool_attr, hex, int_attr, str_attr};
use crate::common::upstream::Upstream;
use crate::{ARRIVE, HOST, SpanStatus, config, get, proxy, server_span, start, status, tracing};

/// The spans whose parent is `server`, once `n` of them arrived.
async fn children(rx: &Receiver, server: &Received, n: usize) -> Vec<Received> {
    let of = |r: &Received| r.span.parent_span_id == server.span.span_id;
    let spans = rx
        .wait_until(ARRIVE, &format!("{n} children"), |s| {
            s.iter().filter(|r| of(r)).count() >= n
        })
        .await;
    spans.into_iter().filter(of).collect()
}

/// Asserts the refusal's span: `code` as `cellgate.error_code` and outcome, `status`.
fn refused(r: &Received, code: &str, status_code: i64) {
    let s = &r.span;
    assert_eq!(str_attr(s, "cellgate.error_code"), Some(code));
    assert_eq!(int_attr(s, "http.response.status_code"), Some(status_code));
    assert!(!str_attr(s, "cellgate.request_id").unwrap_or("").is_empty());
}

#[tokio::test]
async fn an_unknown_tenant_is_a_span_with_its_error_code() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let h = proxy("", &tracing(&rx.url(), ""), vec![cell.url()]).await;
        let r = get(&h, "nobody.app.test", "/who", &[]).await;
        assert_eq!(r.status, 404, "{}", r.body);
        let server = server_span(&rx, "/who").await;
        refused(&server, "unknown_tenant", 404);
        let s = &server.span;
        assert_eq!(str_attr(s, "cellgate.outcome"), Some("unknown_tenant"));
        assert_eq!(str_attr(s, "cellgate.tenant.source"), Some("subdomain"));
        assert_eq!(str_attr(s, "cell.id"), None);
        assert_eq!(
            str_attr(s, "error.type"),
            None,
            "a 4xx is not the server's error"
        );
        assert_eq!(status(&server), SpanStatus::Unset);
        assert_eq!(
            int_attr(s, "http.response.body.size"),
            Some(r.body.len() as i64)
        );
        // No attempt was made: the server span travels alone.
        let sent = rx.wait_for(1, ARRIVE).await;
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert!(cell.seen().is_empty());
        h.shutdown().await;
    })
    .await;
}

// `cellgate.registry.lookup` is "hit" when the tenant was in the snapshot. A tenant that was
// not, and whose 404 needed no registry read (on-demand lookups off, or a tenant already known
// to be absent), was no hit.
#[tokio::test]
async fn an_unknown_tenant_is_never_a_registry_hit() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        // On-demand lookups off (the file registry's default).
        let h = proxy("", &tracing(&rx.url(), ""), vec![cell.url()]).await;
        assert_eq!(get(&h, "nobody.app.test", "/off", &[]).await.status, 404);
        let s = server_span(&rx, "/off").await.span;
        let lookup = str_attr(&s, "cellgate.registry.lookup");
        assert_ne!(
            lookup,
            Some("hit"),
            "no lookup: the tenant was not in the snapshot"
        );
        h.shutdown().await;
    })
    .await;
}

// The 404 of a tenant read on demand (`registry.lookup_unknown`) has the read as a child;
// a second 404 for it is answered from the negative cache, with no read and no hit.
#[tokio::test]
async fn an_unknown_tenant_read_on_demand_has_a_registry_read_child() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let poll = "poll_interval = \"20ms\"";
        let config = config("", &tracing(&rx.url(), ""))
            .replace(poll, &format!("{poll}\nlookup_unknown = true"));
        assert!(config.contains("lookup_unknown"));
        let h = start(&config, vec![cell.url()]).await;
        assert_eq!(get(&h, "nobody.app.test", "/read", &[]).await.status, 404);
        let server = server_span(&rx, "/read").await;
        refused(&server, "unknown_tenant", 404);
        assert_eq!(
            str_attr(&server.span, "cellgate.registry.lookup"),
            Some("miss")
        );
        let kids = children(&rx, &server, 1).await;
        assert_eq!(kids.len(), 1, "{kids:#?}");
        let read = &kids[0].span;
        assert_eq!(read.name, "registry read");
        assert_eq!(read.trace_id, server.span.trace_id);
        assert_eq!(str_attr(read, "cellgate.registry.read"), Some("miss"));
        assert_eq!(str_attr(read, "cellgate.registry.kind"), Some("tenant"));
        assert_eq!(str_attr(read, "cellgate.registry.outcome"), Some("absent"));

        assert_eq!(get(&h, "nobody.app.test", "/again", &[]).await.status, 404);
        let again = server_span(&rx, "/again").await;
        refused(&again, "unknown_tenant", 404);
        let lookup = str_attr(&again.span, "cellgate.registry.lookup");
        assert_ne!(lookup, Some("hit"), "the negative cache is no snapshot hit");
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_rate_limited_request_is_a_span_with_the_refusal() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let limits = "[limits]\n[limits.tiers.standard]\nrate = 0.001\nburst = 1\n";
        let extra = format!("{limits}\n{}", tracing(&rx.url(), ""));
        let h = proxy("", &extra, vec![cell.url()]).await;
        assert_eq!(get(&h, HOST, "/first", &[]).await.status, 200);
        let r = get(&h, HOST, "/second", &[]).await;
        assert_eq!(r.status, 429, "{}", r.body);
        let first = server_span(&rx, "/first").await;
        assert_eq!(str_attr(&first.span, "cellgate.limit"), Some("admitted"));
        let server = server_span(&rx, "/second").await;
        refused(&server, "rate_limited", 429);
        let s = &server.span;
        assert_eq!(str_attr(s, "cellgate.limit"), Some("rate_limited"));
        assert_eq!(str_attr(s, "tenant.id"), Some("acme"));
        assert_eq!(status(&server), SpanStatus::Unset);
        assert!(
            rx.spans()
                .iter()
                .all(|r| r.span.parent_span_id != s.span_id)
        );
        h.shutdown().await;
    })
    .await;
}

/// The proxy in front of `ups` as the targets of `cell-1`.
async fn in_front_of(rx: &Receiver, ups: &[&Arc<Upstream>]) -> Harness {
    proxy("", &tracing(&rx.url(), ""), urls(ups)).await
}

// Both targets killed: the first attempt's connect is refused, the retry's too; the answer is
// 503 `cell_unreachable`, an ERROR span with two failed attempts under it.
#[tokio::test]
async fn an_unreachable_cell_is_an_error_span_with_failed_attempts() {
    within(async {
        let rx = Receiver::start().await;
        let (a, b) = (
            Upstream::start("cell-1", "a").await,
            Upstream::start("cell-1", "b").await,
        );
        let h = in_front_of(&rx, &[&a, &b]).await;
        a.kill().await;
        b.kill().await;
        let r = get(&h, HOST, "/down", &[]).await;
        assert_eq!(r.status, 503, "{}", r.body);
        let server = server_span(&rx, "/down").await;
        refused(&server, "cell_unreachable", 503);
        let s = &server.span;
        assert!(
            !str_attr(s, "error.type").unwrap_or("").is_empty(),
            "{s:#?}"
        );
        assert_eq!(status(&server), SpanStatus::Error);
        assert_eq!(str_attr(s, "cellgate.limit"), Some("admitted"));
        assert_eq!(str_attr(s, "cell.id"), Some("cell-1"));
        assert_eq!(int_attr(s, "cellgate.retries"), Some(1));

        let attempts = children(&rx, &server, 2).await;
        assert_eq!(attempts.len(), 2, "{attempts:#?}");
        let mut targets = Vec::new();
        for (i, at) in attempts.iter().enumerate() {
            let a = &at.span;
            assert_eq!(a.name, "upstream attempt");
            assert_eq!(str_attr(a, "error.type"), Some("connect"), "{a:#?}");
            assert_eq!(int_attr(a, "http.response.status_code"), None);
            assert_eq!(status(at), SpanStatus::Error);
            let resent = (i > 0).then_some(i as i64);
            assert_eq!(int_attr(a, "http.request.resend_count"), resent, "{a:#?}");
            targets.push(str_attr(a, "url.full").unwrap().to_owned());
        }
        targets.sort();
        let mut want = urls(&[&a, &b]);
        want.sort();
        assert_eq!(targets, want, "one attempt on each target");
        h.shutdown().await;
    })
    .await;
}

// A cell answering 503 itself: the server span is an ERROR with `error.type`, and its attempt
// carries the 503 with an ERROR status.
#[tokio::test]
async fn a_cells_own_5xx_is_an_error_span() {
    within(async {
        let rx = Receiver::start().await;
        let up = Upstream::start("cell-1", "a").await;
        up.set_status(503);
        let h = in_front_of(&rx, &[&up]).await;
        let r = get(&h, HOST, "/sick", &[]).await;
        assert_eq!(r.status, 503, "{}", r.body);
        let server = server_span(&rx, "/sick").await;
        let s = &server.span;
        assert_eq!(int_attr(s, "http.response.status_code"), Some(503));
        assert_eq!(str_attr(s, "cellgate.outcome"), Some("routed"));
        assert!(
            !str_attr(s, "error.type").unwrap_or("").is_empty(),
            "{s:#?}"
        );
        assert_eq!(
            str_attr(s, "cellgate.error_code"),
            None,
            "the cell's answer, no refusal"
        );
        assert_eq!(status(&server), SpanStatus::Error);
        let attempts = children(&rx, &server, 1).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            int_attr(&attempts[0].span, "http.response.status_code"),
            Some(503)
        );
        assert_eq!(status(&attempts[0]), SpanStatus::Error);
        h.shutdown().await;
    })
    .await;
}

// With `upstream.retry.idempotent`, a GET both targets answer 503 is tried on each: two
// attempt spans, the second counted as a resend, and each cell told its own attempt as the
// parent, so the cells' spans hang under the right attempt.
#[tokio::test]
async fn each_retry_tells_its_cell_its_own_attempt() {
    within(async {
        let rx = Receiver::start().await;
        let a = TracedCell::start(Some(rx.url())).await;
        let b = TracedCell::start(Some(rx.url())).await;
        a.set_status(503);
        b.set_status(503);
        let extra = format!(
            "[upstream.retry]\nidempotent = true\n\n{}",
            tracing(&rx.url(), "")
        );
        let h = proxy("", &extra, vec![a.url(), b.url()]).await;
        let r = get(&h, HOST, "/retried", &[]).await;
        assert_eq!(r.status, 503, "{}", r.body);
        let server = server_span(&rx, "/retried").await;
        assert_eq!(int_attr(&server.span, "cellgate.retries"), Some(1));
        assert_eq!(status(&server), SpanStatus::Error);
        let attempts = children(&rx, &server, 2).await;
        assert_eq!(attempts.len(), 2, "{attempts:#?}");
        for (i, at) in attempts.iter().enumerate() {
            assert_eq!(int_attr(&at.span, "http.response.status_code"), Some(503));
            assert_eq!(status(at), SpanStatus::Error);
            let resent = (i > 0).then_some(i as i64);
            assert_eq!(int_attr(&at.span, "http.request.resend_count"), resent);
        }
        let mut told = Vec::new();
        for cell in [&a, &b] {
            let [_, trace, parent, flags] = cell.only("/retried").parts();
            assert_eq!((trace, flags.as_str()), (hex(&server.span.trace_id), "01"));
            told.push(parent);
        }
        told.sort();
        let mut ids: Vec<String> = attempts.iter().map(|at| hex(&at.span.span_id)).collect();
        ids.sort();
        assert_eq!(told, ids, "each cell's parent is its own attempt");
        // The cells' spans, each under the attempt that reached it.
        let cells: Vec<Received> = rx
            .wait_until(ARRIVE, "both cells' spans", |s| {
                s.iter().filter(|r| r.service() == cell::SERVICE).count() >= 2
            })
            .await
            .into_iter()
            .filter(|r| r.service() == cell::SERVICE)
            .collect();
        let mut parents: Vec<String> = cells.iter().map(|r| hex(&r.span.parent_span_id)).collect();
        parents.sort();
        assert_eq!(parents, ids);
        h.shutdown().await;
    })
    .await;
}

// A streamed answer the client walks away from is still exported when the proxy drops it:
// marked `cellgate.incomplete`, with the bytes that were sent.
#[tokio::test]
async fn an_abandoned_response_is_exported_as_incomplete() {
    within(async {
        let rx = Receiver::start().await;
        let up = Upstream::start("cell-1", "a").await;
        let h = in_front_of(&rx, &[&up]).await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let req = Request::get(format!("http://{}/stream?chunks=200&every_ms=20", h.addr))
            .header("host", HOST)
            .body(Full::default())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
        drop(client);
        let s = server_span(&rx, "/stream").await.span;
        assert_eq!(bool_attr(&s, "cellgate.incomplete"), Some(true), "{s:#?}");
        let sent = int_attr(&s, "http.response.body.size").unwrap();
        // Target `a` streams lines "a tick {i}\n"; the whole body was never sent.
        let whole: usize = (0..200).map(|i| format!("a tick {i}\n").len()).sum();
        assert!(sent > 0 && sent < whole as i64, "{sent} of {whole} bytes");
        assert_eq!(int_attr(&s, "http.response.status_code"), Some(200));
        h.shutdown().await;
    })
    .await;
}
