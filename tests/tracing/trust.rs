//! `tracing.trust_incoming`: whose `traceparent` the proxy continues. With `never`, or with
//! `trusted_hops` (the default) and a client that is not one, the client's trace is ignored: a
//! new trace, a root span, the cell told the new trace and never the client's `tracestate`.
//! From a trusted hop (or with `always`) the trace is continued: same trace id, the client's
//! span as parent, its `tracestate` passed on (all of it, when it came on several lines), and
//! its sampled flag obeyed whatever the ratio: no at `sample_ratio = 1.0`, yes at `0.0`.

use crate::cell::TracedCell;
use crate::common::cells::within;
use crate::common::otlp::{Receiver, hex, unhex};
use crate::{
    CLIENT_SPAN, CLIENT_STATE, CLIENT_TRACE, HOST, LOOPBACK_HOPS, get, proxy, server_span,
    traceparent, tracing,
};

/// Sends a sampled client `traceparent` and a `tracestate` to a proxy with `server` keys and
/// `trust` (a `trust_incoming = ...` line, or nothing for the default); checks they were
/// ignored.
async fn ignored(server: &str, trust: &str) {
    let rx = Receiver::start().await;
    let cell = TracedCell::start(Some(rx.url())).await;
    let h = proxy(server, &tracing(&rx.url(), trust), vec![cell.url()]).await;
    let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "01");
    let sent = [("traceparent", tp.as_str()), ("tracestate", CLIENT_STATE)];
    assert_eq!(get(&h, HOST, "/ignored", &sent).await.status, 200);

    let server = server_span(&rx, "/ignored").await;
    let s = &server.span;
    assert_ne!(
        hex(&s.trace_id),
        CLIENT_TRACE,
        "{trust}: the client's trace was continued"
    );
    assert!(
        s.parent_span_id.is_empty(),
        "{trust}: a new trace has no parent"
    );
    assert!(s.trace_state.is_empty(), "{trust}: {}", s.trace_state);
    let seen = cell.only("/ignored");
    let [version, trace, _, flags] = seen.parts();
    assert_eq!((version.as_str(), flags.as_str()), ("00", "01"));
    assert_eq!(
        trace,
        hex(&s.trace_id),
        "{trust}: the cell is told the new trace"
    );
    assert_eq!(
        seen.tracestate, None,
        "{trust}: the client's tracestate reached the cell"
    );
    assert!(rx.trace(&unhex(CLIENT_TRACE)).is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn never_ignores_even_a_trusted_hops_traceparent() {
    within(ignored(LOOPBACK_HOPS, "trust_incoming = \"never\"")).await;
}

#[tokio::test]
async fn trusted_hops_by_default_ignores_a_client_that_is_not_a_hop() {
    within(ignored("", "")).await;
    within(ignored(
        "trusted_hops = [\"10.0.0.0/8\"]",
        "trust_incoming = \"trusted_hops\"",
    ))
    .await;
}

/// Sends a sampled client `traceparent` and a `tracestate`; checks they were continued.
async fn continued(server: &str, trust: &str) {
    let rx = Receiver::start().await;
    let cell = TracedCell::start(Some(rx.url())).await;
    let h = proxy(server, &tracing(&rx.url(), trust), vec![cell.url()]).await;
    let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "01");
    let sent = [("traceparent", tp.as_str()), ("tracestate", CLIENT_STATE)];
    assert_eq!(get(&h, HOST, "/continued", &sent).await.status, 200);

    let server = server_span(&rx, "/continued").await;
    let s = &server.span;
    assert_eq!(hex(&s.trace_id), CLIENT_TRACE, "{trust}");
    assert_eq!(hex(&s.parent_span_id), CLIENT_SPAN, "{trust}");
    assert_eq!(s.trace_state, CLIENT_STATE);
    let seen = cell.only("/continued");
    let [_, trace, parent, flags] = seen.parts();
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "01"));
    assert_ne!(
        parent, CLIENT_SPAN,
        "the cell's parent is the proxy's attempt"
    );
    assert_eq!(seen.tracestate.as_deref(), Some(CLIENT_STATE));
    h.shutdown().await;
}

#[tokio::test]
async fn a_trusted_hops_trace_is_continued_with_its_tracestate() {
    within(continued(LOOPBACK_HOPS, "")).await;
}

#[tokio::test]
async fn always_continues_anyones_trace() {
    within(continued("", "trust_incoming = \"always\"")).await;
}

// A continued parent that is not sampled wins over `sample_ratio = 1.0`: nothing is exported
// for its trace, yet the cell still learns the trace (flags 00, the proxy's span as parent)
// and its `tracestate`. A sampled request sent after it is exported, so its absence is not
// a matter of waiting longer.
#[tokio::test]
async fn an_unsampled_parent_is_not_recorded_even_at_ratio_one() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(Some(rx.url())).await;
        let extra = tracing(&rx.url(), "sample_ratio = 1.0");
        let h = proxy(LOOPBACK_HOPS, &extra, vec![cell.url()]).await;
        let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "00");
        let sent = [("traceparent", tp.as_str()), ("tracestate", CLIENT_STATE)];
        let r = get(&h, HOST, "/unsampled", &sent).await;
        assert_eq!(r.status, 200);
        let seen = cell.only("/unsampled");
        let [version, trace, parent, flags] = seen.parts();
        assert_eq!(
            (version.as_str(), trace.as_str(), flags.as_str()),
            ("00", CLIENT_TRACE, "00")
        );
        assert_ne!(parent, CLIENT_SPAN);
        assert_eq!(parent.len(), 16);
        assert_eq!(seen.tracestate.as_deref(), Some(CLIENT_STATE));

        let other = "0af7651916cd43dd8448eb211c80319c";
        let tp = traceparent(other, CLIENT_SPAN, "01");
        assert_eq!(
            get(&h, HOST, "/sampled", &[("traceparent", &tp)])
                .await
                .status,
            200
        );
        server_span(&rx, "/sampled").await;
        assert!(
            rx.trace(&unhex(CLIENT_TRACE)).is_empty(),
            "{:#?}",
            rx.spans()
        );
        assert_eq!(rx.server_spans().len(), 1);
        h.shutdown().await;
    })
    .await;
}

// A `traceparent` that is not valid (upper-case hex) from a trusted hop starts a new trace,
// and the `tracestate` that came with it is dropped.
#[tokio::test]
async fn an_invalid_traceparent_from_a_hop_starts_a_new_trace() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(Some(rx.url())).await;
        let h = proxy(LOOPBACK_HOPS, &tracing(&rx.url(), ""), vec![cell.url()]).await;
        let upper = traceparent(&CLIENT_TRACE.to_uppercase(), CLIENT_SPAN, "01");
        let sent = [
            ("traceparent", upper.as_str()),
            ("tracestate", CLIENT_STATE),
        ];
        assert_eq!(get(&h, HOST, "/invalid", &sent).await.status, 200);
        let s = server_span(&rx, "/invalid").await.span;
        assert_ne!(hex(&s.trace_id), CLIENT_TRACE);
        assert!(s.parent_span_id.is_empty());
        let seen = cell.only("/invalid");
        assert_eq!(seen.parts()[1], hex(&s.trace_id));
        assert_eq!(seen.tracestate, None);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_sampled_parent_is_recorded_even_at_ratio_zero() {
    within(continued(LOOPBACK_HOPS, "sample_ratio = 0.0")).await;
}

// W3C Trace Context lets `tracestate` arrive split over several header lines, to be combined
// (RFC 9110 §5.3): a continued trace passes all of its entries on, not the first line's.
#[tokio::test]
async fn a_tracestate_split_over_two_lines_is_passed_on_whole() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let h = proxy(LOOPBACK_HOPS, &tracing(&rx.url(), ""), vec![cell.url()]).await;
        let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "01");
        let (first, second) = CLIENT_STATE.split_once(',').unwrap();
        let sent = [
            ("traceparent", tp.as_str()),
            ("tracestate", first),
            ("tracestate", second),
        ];
        assert_eq!(get(&h, HOST, "/split", &sent).await.status, 200);
        let seen = cell.only("/split");
        assert_eq!(seen.parts()[1], CLIENT_TRACE);
        assert_eq!(
            seen.tracestate.as_deref(),
            Some(CLIENT_STATE),
            "the cell's tracestate"
        );
        let s = server_span(&rx, "/split").await.span;
        assert_eq!(s.trace_state, CLIENT_STATE, "the span's trace_state");
        h.shutdown().await;
    })
    .await;
}
