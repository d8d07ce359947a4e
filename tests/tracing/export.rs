//! The exporter when the OTLP endpoint misbehaves, and at shutdown. Requests never wait for
//! it and never fail on its account: with the endpoint's port closed each answer comes at
//! once and the spans are counted as `export_failed`; a hanging endpoint with a tiny queue
//! makes the request path drop spans as `queue_full`, and `export_timeout` gives up on each
//! batch it holds; a 503 is a failed export, and the next accepted one recovers. Every span is
//! counted once, exported or dropped. Spans still queued when the proxy stops are flushed, and
//! no export carries more spans than `batch_size`.

use std::time::{Duration, Instant};

use crate::cell::TracedCell;
use crate::common::Harness;
use crate::common::cells::{eventually, metric, within};
use crate::common::otlp::{Mode, Receiver};
use crate::{ARRIVE, DROPPED, EXPORTED, EXPORTS, HOST, get, proxy, tracing};

/// Far more than a request takes on loopback, far less than `export_timeout` (5 s).
const NO_WAIT: Duration = Duration::from_secs(1);

/// The proxy in front of a traced cell (not exporting), sending spans to `endpoint`.
async fn start(endpoint: &str, more: &str) -> (Harness, TracedCell) {
    let cell = TracedCell::start(None).await;
    let more = format!("export_timeout = \"5s\"\n{more}");
    let h = proxy("", &tracing(endpoint, &more), vec![cell.url()]).await;
    (h, cell)
}

/// `n` requests, one after another: each answered 200 well within [`NO_WAIT`].
async fn requests_unhindered(h: &Harness, n: usize) {
    for i in 0..n {
        let started = Instant::now();
        let r = get(h, HOST, &format!("/x/{i}"), &[]).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert!(took < NO_WAIT, "request {i} took {took:?}");
    }
}

/// What became of the spans so far: (exported, queue_full, export_failed).
async fn fates(h: &Harness) -> (f64, f64, f64) {
    (
        metric(h, EXPORTED, &[]).await,
        metric(h, DROPPED, &[("reason", "queue_full")]).await,
        metric(h, DROPPED, &[("reason", "export_failed")]).await,
    )
}

#[tokio::test]
async fn a_closed_endpoint_costs_requests_nothing() {
    within(async {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (h, _cell) = start(&format!("http://127.0.0.1:{port}/v1/traces"), "").await;
        requests_unhindered(&h, 50).await;
        // A server span and an attempt each: 100 spans, all lost to the failed exports.
        eventually(ARRIVE, "every span counted as export_failed", || async {
            fates(&h).await == (0.0, 0.0, 100.0)
        })
        .await;
        assert!(metric(&h, EXPORTS, &[("result", "error")]).await >= 1.0);
        assert_eq!(metric(&h, EXPORTS, &[("result", "ok")]).await, 0.0);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hanging_endpoint_fills_a_tiny_queue_and_requests_go_on() {
    within(async {
        let rx = Receiver::start().await;
        rx.set_mode(Mode::Hang);
        let (h, _cell) = start(&rx.url(), "batch_size = 1\nqueue_size = 2").await;
        requests_unhindered(&h, 30).await;
        // One batch hangs at the receiver, two requests' spans wait in the queue, the rest
        // were dropped on the request path.
        eventually(ARRIVE, "an export reached the receiver", || async {
            !rx.posts().is_empty()
        })
        .await;
        let (exported, full, failed) = fates(&h).await;
        assert_eq!((exported, failed), (0.0, 0.0));
        assert!(full >= 2.0 * 20.0, "queue_full {full}");
        // The receiver goes away: the hung export fails, and so does everything queued.
        rx.stop().await;
        eventually(
            Duration::from_secs(10),
            "every span counted once",
            || async {
                let (exported, full, failed) = fates(&h).await;
                exported == 0.0 && full + failed == 60.0
            },
        )
        .await;
        h.shutdown().await;
    })
    .await;
}

// `export_timeout` bounds each export: against an endpoint that never answers, every batch
// is given up after it and counted, and the request path never notices.
#[tokio::test]
async fn a_hanging_endpoint_times_each_export_out() {
    within(async {
        let rx = Receiver::start().await;
        rx.set_mode(Mode::Hang);
        let cell = TracedCell::start(None).await;
        let more = "export_timeout = \"100ms\"";
        let h = proxy("", &tracing(&rx.url(), more), vec![cell.url()]).await;
        requests_unhindered(&h, 10).await;
        eventually(ARRIVE, "every span counted as export_failed", || async {
            fates(&h).await == (0.0, 0.0, 20.0)
        })
        .await;
        assert!(metric(&h, EXPORTS, &[("result", "error")]).await >= 1.0);
        assert!(!rx.posts().is_empty(), "the exports reached the endpoint");
        rx.stop().await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_refusing_endpoint_is_a_failed_export_and_the_next_one_recovers() {
    within(async {
        let rx = Receiver::start().await;
        rx.set_mode(Mode::Unavailable);
        let (h, _cell) = start(&rx.url(), "").await;
        requests_unhindered(&h, 5).await;
        eventually(ARRIVE, "the refused spans counted", || async {
            fates(&h).await == (0.0, 0.0, 10.0)
        })
        .await;
        assert!(metric(&h, EXPORTS, &[("result", "error")]).await >= 1.0);
        assert_eq!(rx.count(), 0);

        rx.set_mode(Mode::Accept);
        requests_unhindered(&h, 5).await;
        rx.wait_for(10, ARRIVE).await;
        eventually(ARRIVE, "the accepted spans counted", || async {
            fates(&h).await == (10.0, 0.0, 10.0)
        })
        .await;
        assert!(metric(&h, EXPORTS, &[("result", "ok")]).await >= 1.0);
        h.shutdown().await;
    })
    .await;
}

// With an export interval far longer than the test, spans only leave when the proxy stops.
#[tokio::test]
async fn queued_spans_are_flushed_when_the_proxy_stops() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let extra = tracing(&rx.url(), "").replace("\"20ms\"", "\"5m\"");
        let h = proxy("", &extra, vec![cell.url()]).await;
        for i in 0..3 {
            assert_eq!(get(&h, HOST, &format!("/q/{i}"), &[]).await.status, 200);
        }
        assert_eq!(rx.count(), 0, "exported before the interval");
        h.shutdown().await;
        let spans = rx.wait_for(6, ARRIVE).await;
        assert_eq!(spans.len(), 6);
    })
    .await;
}

// `tracing.batch_size` is "spans per export request": with room for two, two requests (a
// server span and an attempt each, four spans) are not sent as one export.
#[tokio::test]
async fn no_export_carries_more_spans_than_batch_size() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        // Only full batches leave: the interval is longer than the test.
        let extra = tracing(&rx.url(), "batch_size = 2").replace("\"20ms\"", "\"5m\"");
        let h = proxy("", &extra, vec![cell.url()]).await;
        for i in 0..2 {
            assert_eq!(get(&h, HOST, &format!("/b/{i}"), &[]).await.status, 200);
        }
        rx.wait_for(4, ARRIVE).await;
        let sizes: Vec<usize> = rx.posts().iter().map(|p| p.spans).collect();
        assert!(
            sizes.iter().all(|n| *n <= 2),
            "spans per export request: {sizes:?}"
        );
        h.shutdown().await;
    })
    .await;
}
