//! Real gRPC stacks through the proxy: a stock tonic client (`common::grpc_client`) calling a
//! tonic-served cell (`common::grpc_cell`; the call shapes as checks in `common::grpc_checks`)
//! whose cell has `protocol = "http2"` (h2c by prior knowledge) or `"auto"` (ALPN over TLS).
//!
//! What holds, one test each:
//! - unary: request metadata reaches the cell, response metadata and trailers reach the client,
//!   and the reply names the cell, target and HTTP version (2) that answered;
//! - server streaming and client streaming, messages in order, trailers at the end;
//! - bidi ping-pong: each reply arrives before the next message is sent, so a stream buffered
//!   anywhere on the way stalls (and fails) instead of passing;
//! - a call's deadline against a slow method: DEADLINE_EXCEEDED at the deadline;
//! - a cell that sends GOAWAY every 25 streams under 16 concurrent callers: no call fails, and
//!   the cell saw more than one connection. A stock client alone can lose calls there (the
//!   streams it sent past the final GOAWAY's last stream id are refused, unserved), so the
//!   proxy has to replay those on a fresh connection;
//! - a plain HTTP/2-only target (not gRPC) is reached with `protocol = "http2"`;
//! - `auto` over TLS speaks HTTP/2 when ALPN settles `h2`, and HTTP/1.1 when the target offers
//!   only `http/1.1`;
//! - the proxy's refusals read by tonic as statuses: NOT_FOUND, RESOURCE_EXHAUSTED;
//! - a tenant moved to another cell: its server stream ends, its neighbour's goes on.
//!
//! The first test checks the harness itself: the same client calling the cells directly, the
//! four call shapes over h2c and over TLS, the GOAWAY mode, and the HTTP/2-only echo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::grpc_cell::{EchoRequest, GrpcCell};
use common::grpc_checks::{
    REPLY, bidi_ping_pong, client_stream, load, next, ok, server_stream, unary_round_trip,
};
use common::grpc_client::{EchoClient, msg};
use common::h2_echo::H2Echo;
use common::{CellSpec, Harness, base_config, registry_with_protocols, within};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tonic::{Code, Request};

const ACME: &str = "acme.app.test";

fn cell<'a>(id: &'a str, protocol: &'a str, url: String) -> CellSpec<'a> {
    CellSpec {
        id,
        protocol: Some(protocol),
        targets: vec![url],
    }
}

/// The proxy with `extra` appended to the base config, in front of `cells`.
async fn proxy(extra: &str, cells: &[CellSpec<'_>], tenants: &[(&str, &str, &str)]) -> Harness {
    let text = registry_with_protocols(cells, tenants);
    Harness::start_raw(&base_config(extra), &text, Vec::new()).await
}

/// The proxy in front of one cell, `cell-1`, of one target `url` spoken to with `protocol`,
/// holding tenant `acme`.
async fn in_front_of(url: &str, protocol: &str) -> Harness {
    let cells = [cell("cell-1", protocol, url.to_owned())];
    proxy("", &cells, &[("acme", "cell-1", "ACTIVE")]).await
}

/// The proxy trusting the test CA for https targets.
async fn tls_proxy(cells: &[CellSpec<'_>], tenants: &[(&str, &str, &str)]) -> Harness {
    let ca = format!("{}/tests/fixtures/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    let config =
        base_config("").replace("[upstream]\n", &format!("[upstream]\nca_file = \"{ca}\"\n"));
    let text = registry_with_protocols(cells, tenants);
    Harness::start_raw(&config, &text, Vec::new()).await
}

// The harness itself: a tonic client calling the cells directly, every call shape, h2c and
// TLS; the plain HTTP/2 echo answers HTTP/2 and refuses HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_cells_answer_a_tonic_client_directly() {
    within(async {
        let cell = GrpcCell::h2c("cell-1", "t-1").await;
        let mut c = EchoClient::new(cell.addr, ACME);
        unary_round_trip(&mut c, "cell-1", "t-1").await;
        server_stream(&mut c, "cell-1").await;
        client_stream(&mut c, "cell-1").await;
        bidi_ping_pong(&mut c, "cell-1").await;
        let reply = ok(c.unary(msg("who")).await, "unary").into_inner();
        assert_eq!(reply.authority, ACME, "the call names its tenant");
        assert_eq!(cell.calls(), 5);
        assert_eq!(cell.connections(), 1, "one pooled HTTP/2 connection");

        // Over TLS, ALPN h2.
        let tls = GrpcCell::tls("cell-1", "t-tls", &[b"h2", b"http/1.1"]).await;
        let (mut c, alpn) = EchoClient::tls(tls.addr, ACME).await;
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        unary_round_trip(&mut c, "cell-1", "t-tls").await;
        bidi_ping_pong(&mut c, "cell-1").await;

        // The plain echo: HTTP/2 by prior knowledge, and nothing for HTTP/1.1.
        let plain = H2Echo::h2c("cell-1", "p-1").await;
        let tcp = tokio::net::TcpStream::connect(plain.addr).await.unwrap();
        let (mut h2, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(format!("http://{ACME}/x"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["version"], "HTTP/2.0");
        let tcp = tokio::net::TcpStream::connect(plain.addr).await.unwrap();
        let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/x")
            .header("host", ACME)
            .body(Full::<Bytes>::default())
            .unwrap();
        assert!(
            h1.send_request(req).await.is_err(),
            "the HTTP/2-only echo answered HTTP/1.1"
        );
        assert_eq!(plain.requests(), 1);

        // GOAWAY after 25 streams, gracefully: 25 calls one after another are all served, then
        // the cell closes that connection, and the listener takes a new one.
        let g = GrpcCell::goaway_every("cell-1", "g-1", 25).await;
        let (mut c, conn) = EchoClient::one_connection(g.addr, ACME).await;
        for i in 0..25 {
            ok(
                c.unary(msg("before")).await,
                &format!("call {i} before GOAWAY"),
            );
        }
        tokio::time::timeout(REPLY, conn)
            .await
            .expect("the connection still open after its 25 streams")
            .unwrap();
        let mut c = EchoClient::new(g.addr, ACME);
        ok(c.unary(msg("after")).await, "the call after GOAWAY");
        assert_eq!((g.calls(), g.connections()), (26, 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_carries_metadata_and_trailers_through_the_proxy() {
    within(async {
        let c1 = GrpcCell::h2c("cell-1", "t-1").await;
        let h = in_front_of(&c1.url(), "http2").await;
        let mut c = EchoClient::new(h.addr, ACME);
        unary_round_trip(&mut c, "cell-1", "t-1").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_goes_through_the_proxy() {
    within(async {
        let c1 = GrpcCell::h2c("cell-1", "t-1").await;
        let h = in_front_of(&c1.url(), "http2").await;
        server_stream(&mut EchoClient::new(h.addr, ACME), "cell-1").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_goes_through_the_proxy() {
    within(async {
        let c1 = GrpcCell::h2c("cell-1", "t-1").await;
        let h = in_front_of(&c1.url(), "http2").await;
        client_stream(&mut EchoClient::new(h.addr, ACME), "cell-1").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidi_ping_pong_is_not_buffered_by_the_proxy() {
    within(async {
        let c1 = GrpcCell::h2c("cell-1", "t-1").await;
        let h = in_front_of(&c1.url(), "http2").await;
        bidi_ping_pong(&mut EchoClient::new(h.addr, ACME), "cell-1").await;
        h.shutdown().await;
    })
    .await;
}

// The cell sleeps 3 s and never enforces a deadline itself; the call's 300 ms deadline
// (`grpc-timeout`, all a tonic client sends) ends it at the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_deadline_ends_a_slow_call_with_deadline_exceeded() {
    within(async {
        let c1 = GrpcCell::h2c("cell-1", "t-1").await;
        let h = in_front_of(&c1.url(), "http2").await;
        let mut c = EchoClient::new(h.addr, ACME);
        let mut req = Request::new(EchoRequest {
            delay_ms: 3_000,
            ..msg("slow")
        });
        req.set_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(5), c.slow(req))
            .await
            .expect("no answer within 5 s");
        let status = got.expect_err("the slow call succeeded");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().starts_with("cell_timeout"), "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered after {:?}",
            started.elapsed()
        );
        assert_eq!(c1.calls(), 1, "the call reached the cell");
        h.shutdown().await;
    })
    .await;
}

// 400 unary calls, 16 at a time, to a cell that sends GOAWAY on each connection after 25
// streams: every call succeeds, over more than one connection to the cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_from_the_cell_under_load_fails_no_call() {
    within(async {
        const CALLS: u32 = 400;
        let c1 = GrpcCell::goaway_every("cell-1", "g-1", 25).await;
        let h = in_front_of(&c1.url(), "http2").await;
        let failed = load(&EchoClient::new(h.addr, ACME), CALLS, 16).await;
        assert!(
            failed.is_empty(),
            "{} of {CALLS} calls failed, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(
            c1.calls() >= u64::from(CALLS),
            "{} calls reached the cell",
            c1.calls()
        );
        assert!(
            c1.connections() > 1,
            "the cell saw {} connection(s)",
            c1.connections()
        );
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_only_target_is_reached_with_protocol_http2() {
    within(async {
        let t = H2Echo::h2c("cell-1", "h2-only").await;
        let h = in_front_of(&t.url(), "http2").await;
        // The client speaks HTTP/1.1 to the proxy; the proxy speaks HTTP/2 to the target.
        let r = h.get(ACME, "/plain").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v = r.json();
        assert_eq!(v["version"], "HTTP/2.0", "{v}");
        assert_eq!(
            (v["cell"].as_str(), v["path"].as_str()),
            (Some("cell-1"), Some("/plain"))
        );
        assert_eq!(t.requests(), 1);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_over_tls_speaks_http2_when_alpn_settles_h2() {
    within(async {
        let t = GrpcCell::tls("cell-1", "tls-1", &[b"h2", b"http/1.1"]).await;
        let h = tls_proxy(
            &[cell("cell-1", "auto", t.url())],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;
        unary_round_trip(&mut EchoClient::new(h.addr, ACME), "cell-1", "tls-1").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_over_tls_falls_back_to_http1_when_the_target_offers_only_http1() {
    within(async {
        let t = H2Echo::tls("cell-1", "tls-h1", &[b"http/1.1"]).await;
        let h = tls_proxy(
            &[cell("cell-1", "auto", t.url())],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;
        let r = h.get(ACME, "/plain").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v = r.json();
        assert_eq!(
            (v["version"].as_str(), v["alpn"].as_str()),
            (Some("HTTP/1.1"), Some("http/1.1")),
            "{v}"
        );
        h.shutdown().await;
    })
    .await;
}

// The proxy's refusals as a stock client reads them: `Status::code()` and the message naming
// the error. With one tier configured, every tenant is on it (the default tier): 1 call, then
// 0.1 per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_client_reads_the_proxys_refusals_as_statuses() {
    within(async {
        let c1 = GrpcCell::h2c("cell-1", "t-1").await;
        let limits = "[limits]\n[limits.tiers.standard]\nrate = 0.1\nburst = 1\n";
        let h = proxy(
            limits,
            &[cell("cell-1", "http2", c1.url())],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;

        let status = EchoClient::new(h.addr, "nobody.app.test")
            .unary(msg("hi"))
            .await
            .expect_err("an unknown tenant's call succeeded");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().starts_with("unknown_tenant"), "{status:?}");

        let mut c = EchoClient::new(h.addr, ACME);
        let first = c.unary(msg("first")).await;
        let status = c
            .unary(msg("second"))
            .await
            .expect_err("a call over the rate succeeded");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().starts_with("rate_limited"), "{status:?}");
        assert!(c1.calls() <= 1, "a refused call reached the cell");
        // Checked last, so the refusals above are judged even while this one fails.
        assert_eq!(
            ok(first, "the call within the rate").into_inner().cell,
            "cell-1"
        );
        // Each answer counted by its grpc-status: the cell's OK, the proxy's refusals.
        let m = h.admin_get("/metrics").await.unwrap().body;
        let grpc = |cell: &str, status: &str| {
            common::limits::sum(
                &m,
                "cellgate_grpc_responses_total",
                &[("cell", cell), ("grpc_status", status)],
            )
        };
        assert_eq!(grpc("none", "NOT_FOUND"), 1.0, "{m}");
        assert_eq!(grpc("cell-1", "RESOURCE_EXHAUSTED"), 1.0, "{m}");
        assert_eq!(grpc("cell-1", "OK"), 1.0, "{m}");
        h.shutdown().await;
    })
    .await;
}

// Two tenants' long server streams from one cell; the mover is moved to cell-2 in the
// registry: its stream ends within seconds, the stayer's goes on from cell-1, and the mover's
// next call reaches cell-2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tenants_stream_ends_and_its_neighbours_goes_on() {
    within(async {
        let c1 = GrpcCell::h2c("cell-1", "t-1").await;
        let c2 = GrpcCell::h2c("cell-2", "t-2").await;
        let cells = |c1: &GrpcCell, c2: &GrpcCell| {
            vec![
                cell("cell-1", "http2", c1.url()),
                cell("cell-2", "http2", c2.url()),
            ]
        };
        let h = proxy(
            "",
            &cells(&c1, &c2),
            &[
                ("mover", "cell-1", "ACTIVE"),
                ("stayer", "cell-1", "ACTIVE"),
            ],
        )
        .await;
        let long = EchoRequest {
            count: 200,
            delay_ms: 50,
            ..msg("tick")
        };
        let mut mover_client = EchoClient::new(h.addr, "mover.app.test");
        let mut mover = ok(mover_client.server_stream(long.clone()).await, "mover").into_inner();
        let mut stayer = ok(
            EchoClient::new(h.addr, "stayer.app.test")
                .server_stream(long)
                .await,
            "stayer",
        )
        .into_inner();
        assert_eq!(next(&mut mover).await.cell, "cell-1");
        assert_eq!(next(&mut stayer).await.cell, "cell-1");

        h.write_registry(&registry_with_protocols(
            &cells(&c1, &c2),
            &[
                ("mover", "cell-2", "ACTIVE"),
                ("stayer", "cell-1", "ACTIVE"),
            ],
        ));
        // Unmoved, it would run ten more seconds. Cut short, it must not read as a success.
        let (after, end) = tokio::time::timeout(Duration::from_secs(3), async {
            let mut after = 0;
            loop {
                match mover.message().await {
                    Ok(Some(_)) => after += 1,
                    Ok(None) => return (after, None),
                    Err(s) => return (after, Some(s)),
                }
            }
        })
        .await
        .expect("the moved tenant's stream still open 3 s after the move");
        let status = end.expect("the moved tenant's stream ended with status OK");
        assert!(after < 60, "{after} messages after the move ({status:?})");
        // Ended between two messages with a status clients retry, naming why.
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().starts_with("tenant_moved"), "{status:?}");
        for _ in 0..3 {
            assert_eq!(
                next(&mut stayer).await.cell,
                "cell-1",
                "the neighbour's stream"
            );
        }
        let again = ok(
            mover_client.unary(msg("again")).await,
            "the mover's next call",
        );
        assert_eq!(again.into_inner().cell, "cell-2");
        drop(stayer);
        h.shutdown().await;
    })
    .await;
}
