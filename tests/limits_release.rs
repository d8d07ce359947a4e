//! End-to-end behaviour of an in-flight limit, over real sockets in front of real echo cells:
//! it refuses the request over it with a 429 `concurrency_limited` and gives its places back
//! when a response completes, when the cell fails, when the client goes away (waiting for the
//! cell or mid-body, over HTTP/1.1 or by resetting an HTTP/2 stream), and when a chunked body
//! reaches its end; a WebSocket holds its place while open, and an `h2c` upgrade is never
//! passed on. The other limits of the *admit* stage are in `tests/limits.rs`; the helpers
//! both share are in `tests/common/limits.rs`.
//!
//! Nothing asserts on latency: waits are bounded polls on the cell's in-flight gauge, and a
//! request held at a cell sleeps seconds longer than any poll that must see its place given back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Harness;
use common::limits::{
    from_cell, get, header, in_flight, metrics, refusal, start, start_one_in_flight, sum, tenant,
    wait_in_flight, within,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// 3. Property: with `concurrency = 2`, a third request while two are in flight is refused with
// 429 `concurrency_limited` and Retry-After 1; places are given back when responses complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_refuses_the_third_and_releases_on_completion() {
    within(async {
        let limits = "[limits]\n[limits.tiers.standard]\nconcurrency = 2\n";
        let h = start(
            limits,
            &[],
            &[],
            &[
                tenant("busy", "cell-1", Some("standard")),
                tenant("calm", "cell-1", Some("standard")),
            ],
        )
        .await;

        let (a, b, third) = tokio::join!(
            get(&h, "busy", "/?sleep_ms=3000"),
            get(&h, "busy", "/?sleep_ms=3000"),
            async {
                wait_in_flight(&h, "cell-1", 2.0, Duration::from_secs(2)).await;
                let third = get(&h, "busy", "/").await;
                // Another tenant of the same tier in the same cell has its own places.
                let calm = get(&h, "calm", "/").await;
                from_cell(&calm, "calm", "cell-1");
                third
            }
        );
        from_cell(&a, "busy", "cell-1");
        from_cell(&b, "busy", "cell-1");
        let retry = refusal(
            &third,
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency_limited",
            None,
        );
        assert_eq!(retry, 1);
        // No rate is involved: no rate headers.
        assert!(header(&third, "ratelimit-policy").is_none());
        assert!(header(&third, "ratelimit").is_none());

        // Both completed: both places are back, at once (no waiting, no retry).
        assert_eq!(in_flight(&h, "cell-1").await, 0.0);
        let (c, d) = tokio::join!(
            get(&h, "busy", "/?sleep_ms=200"),
            get(&h, "busy", "/?sleep_ms=200")
        );
        from_cell(&c, "busy", "cell-1");
        from_cell(&d, "busy", "cell-1");
        // Sequentially, many more: every completion gives its place back.
        for _ in 0..10 {
            from_cell(&get(&h, "busy", "/").await, "busy", "cell-1");
        }
        let m = metrics(&h).await;
        assert_eq!(
            sum(
                &m,
                "cellgate_ratelimit_rejections_total",
                &[
                    ("tier", "standard"),
                    ("cell", "cell-1"),
                    ("limit", "concurrency")
                ]
            ),
            1.0,
            "{m}"
        );
        assert_eq!(
            sum(&m, "cellgate_cell_in_flight", &[("cell", "cell-1")]),
            0.0
        );
        h.shutdown().await;
    })
    .await;
}

// 4. Property: a request that fails upstream (connect refused: 503; or a cell's 500) gives its
// in-flight place back: with `concurrency = 1` the next request is admitted, and the cell's
// in-flight gauge returns to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_gives_the_place_back() {
    within(async {
        let limits = "[limits]\n[limits.tiers.standard]\nconcurrency = 1\n";
        // Port 1 on loopback: nothing listens there, so connecting is refused at once.
        let h = start(
            limits,
            &[("cell-dead", "http://127.0.0.1:1")],
            &[],
            &[
                tenant("broken", "cell-dead", Some("standard")),
                tenant("flaky", "cell-1", Some("standard")),
            ],
        )
        .await;

        for _ in 0..3 {
            let r = get(&h, "broken", "/").await;
            // cell_unreachable, never concurrency_limited: the failed request's place is back.
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
            assert_eq!(r.json()["error"], "cell_unreachable", "{}", r.body);
            assert_eq!(r.json()["cell"], "cell-dead");
        }
        assert_eq!(in_flight(&h, "cell-dead").await, 0.0);

        for _ in 0..3 {
            let r = get(&h, "flaky", "/?status=500").await;
            assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
            assert_eq!(r.json()["cell"], "cell-1", "the cell's own 500: {}", r.body);
        }
        from_cell(&get(&h, "flaky", "/").await, "flaky", "cell-1");
        assert_eq!(in_flight(&h, "cell-1").await, 0.0);

        let m = metrics(&h).await;
        assert_eq!(
            sum(
                &m,
                "cellgate_ratelimit_rejections_total",
                &[("limit", "concurrency")]
            ),
            0.0,
            "{m}"
        );
        assert_eq!(
            sum(
                &m,
                "cellgate_upstream_errors_total",
                &[("cell", "cell-dead"), ("kind", "connect")]
            ),
            3.0
        );
        h.shutdown().await;
    })
    .await;
}

/// Polls until the cell's in-flight gauge is 0 and then a request for `tenant` is admitted;
/// returns how long that took. Fails after `limit`.
async fn wait_released(h: &Harness, tenant: &str, cell: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if in_flight(h, cell).await == 0.0 {
            let r = get(h, tenant, "/").await;
            if r.status == StatusCode::OK {
                from_cell(&r, tenant, cell);
                return started.elapsed();
            }
            refusal(
                &r,
                StatusCode::TOO_MANY_REQUESTS,
                "concurrency_limited",
                None,
            );
        }
        assert!(
            started.elapsed() < limit,
            "{tenant}'s in-flight place not given back within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// 5a. Property: a client that goes away while the cell is still working gives its place back
// at once, not when the cell eventually answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_while_waiting_gives_the_place_back() {
    within(async {
        let h = start_one_in_flight("gone").await;

        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(b"GET /?sleep_ms=6000 HTTP/1.1\r\nHost: gone.app.test\r\n\r\n")
            .await
            .unwrap();
        wait_in_flight(&h, "cell-1", 1.0, Duration::from_secs(2)).await;
        // Held: the tenant's one place is taken.
        let r = get(&h, "gone", "/").await;
        refusal(
            &r,
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency_limited",
            None,
        );

        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(s);
        let dropped = Instant::now();
        // The cell answers only 6 s after the request: admitted within 3 s of the drop means
        // the place was given back on disconnect.
        let took = wait_released(&h, "gone", "cell-1", Duration::from_secs(3)).await;
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "released after {took:?}"
        );
        h.shutdown().await;
    })
    .await;
}

// 5b. Property: a client that stops reading and goes away in the middle of a large body gives
// its place back; while it is still connected, the place stays taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_body_gives_the_place_back() {
    within(async {
        let h = start_one_in_flight("reader").await;

        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(b"GET /?bytes=8000000 HTTP/1.1\r\nHost: reader.app.test\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < 16 * 1024 {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got[..64])
        );
        // Mid-body, the response still holds the tenant's one place.
        assert_eq!(in_flight(&h, "cell-1").await, 1.0);
        let r = get(&h, "reader", "/").await;
        refusal(
            &r,
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency_limited",
            None,
        );

        drop(s);
        wait_released(&h, "reader", "cell-1", Duration::from_secs(3)).await;
        assert_eq!(in_flight(&h, "cell-1").await, 0.0);
        h.shutdown().await;
    })
    .await;
}

// 5c. Property: over HTTP/2, a stream the client resets (while the cell is working, or in the
// middle of a large body) gives its place back, while the connection itself stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_reset_gives_the_place_back() {
    within(async {
        let h = start_one_in_flight("multi").await;
        let mut sender = h.h2().await;
        let req = |path: &str| {
            Request::get(format!("http://multi.app.test{path}"))
                .body(Full::<Bytes>::default())
                .unwrap()
        };

        // Waiting for the cell: dropping the response future resets the stream.
        let waiting = tokio::spawn(sender.send_request(req("/?sleep_ms=6000")));
        wait_in_flight(&h, "cell-1", 1.0, Duration::from_secs(2)).await;
        let r = get(&h, "multi", "/").await;
        refusal(
            &r,
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency_limited",
            None,
        );
        waiting.abort();
        wait_released(&h, "multi", "cell-1", Duration::from_secs(3)).await;

        // Mid-body: read one frame of a large body, then drop the body.
        let resp = sender.send_request(req("/?bytes=8000000")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert!(frame.data_ref().is_some_and(|d| !d.is_empty()));
        assert_eq!(
            in_flight(&h, "cell-1").await,
            1.0,
            "held while the body streams"
        );
        drop(body);
        wait_released(&h, "multi", "cell-1", Duration::from_secs(3)).await;

        // The same connection still serves the tenant.
        let resp = sender.send_request(req("/")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.shutdown().await;
    })
    .await;
}

const CHUNKED_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
    transfer-encoding: chunked\r\n\r\n6\r\nchunk \r\n4\r\ndone\r\n0\r\n\r\n";

/// A cell target that answers every request (GET, no body) with a chunked body: no
/// `Content-Length`, so the proxy learns that the body ended only by reading it to its end.
async fn spawn_chunked_target() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(CHUNKED_RESPONSE).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

// 5d. Property: a body whose end is known only by reading it (chunked) gives its place back
// when it ends: with `concurrency = 1`, back-to-back requests are all admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_gives_the_place_back_when_it_ends() {
    within(async {
        let limits = "[limits]\n[limits.tiers.standard]\nconcurrency = 1\n";
        let target = spawn_chunked_target().await;
        let h = start(
            limits,
            &[("cell-chunked", &target)],
            &[],
            &[tenant("streamer", "cell-chunked", Some("standard"))],
        )
        .await;
        for i in 0..5 {
            let r = get(&h, "streamer", "/").await;
            assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.body);
            assert_eq!(r.body, "chunk done");
        }
        assert_eq!(in_flight(&h, "cell-chunked").await, 0.0);
        h.shutdown().await;
    })
    .await;
}

// 5e. Property: a WebSocket holds its in-flight place for as long as it is open (against its
// tenant's `concurrency` and its cell's gauge), and gives it back when it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_holds_its_place_until_it_closes() {
    within(async {
        let h = start_one_in_flight("chatty").await;
        let (mut ws, head) = h.websocket("chatty.app.test").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        ws.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        ws.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
        assert_eq!(
            in_flight(&h, "cell-1").await,
            1.0,
            "the open tunnel is in flight"
        );
        let refused = get(&h, "chatty", "/").await;
        refusal(
            &refused,
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency_limited",
            None,
        );
        drop(ws);
        wait_in_flight(&h, "cell-1", 0.0, Duration::from_secs(3)).await;
        from_cell(&get(&h, "chatty", "/").await, "chatty", "cell-1");
        h.shutdown().await;
    })
    .await;
}

// 5f. Property: an `Upgrade: h2c` is never passed on: the request reaches the cell as plain
// HTTP/1.1 (no upgrade headers), so no HTTP/2 tunnel can carry requests past the limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_reaches_the_cell_as_plain_http() {
    within(async {
        let h = start("", &[], &[], &[tenant("sly", "cell-1", None)]).await;
        let req = Request::get(format!("http://{}/", h.addr))
            .header("host", "sly.app.test")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "h2c")
            .header("http2-settings", "AAMAAABkAAQAAP__")
            .body(Full::<Bytes>::default())
            .unwrap();
        let r = h.send(req).await;
        from_cell(&r, "sly", "cell-1");
        let seen = &r.json()["headers"];
        for name in ["upgrade", "http2-settings", "connection"] {
            assert!(seen.get(name).is_none(), "{name} reached the cell: {seen}");
        }
        h.shutdown().await;
    })
    .await;
}
