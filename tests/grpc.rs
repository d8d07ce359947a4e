//! gRPC calls at the edge (HTTP/2, `content-type: application/grpc…`).
//!
//! Refusals in gRPC's own terms: a call that cellgate refuses gets HTTP 200 with no body,
//! `grpc-status` the status that means the same as the HTTP refusal, and `grpc-message` naming
//! the error code and the request id (also in `x-request-id`), so a stock gRPC client reports
//! the refusal instead of a protocol error. HTTP/1.1 clients, and HTTP/2 requests that are not
//! gRPC, keep the JSON. Deadlines: a call's `grpc-timeout` bounds the wait for the cell (a
//! slow cell answers DEADLINE_EXCEEDED at the client's deadline, not at the proxy's read
//! timeout), and the cell is told what is left, never more than the proxy waits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::cells::one_cell;
use common::limits::{start, tenant, within};
use common::{Harness, token};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

/// A unary call's request head (the body is one empty gRPC frame).
fn call(host: &str) -> http::request::Builder {
    Request::post(format!("http://{host}/echo.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
}

fn frame() -> Full<Bytes> {
    Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
}

/// Sends over one HTTP/2 connection: status, headers, body.
async fn send(h: &Harness, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut sender = h.h2().await;
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// Asserts a gRPC refusal with `status` whose message starts with `code`.
fn refused(got: &(StatusCode, http::HeaderMap, Bytes), status: &str, code: &str) {
    let (http, h, body) = got;
    assert_eq!(*http, StatusCode::OK, "{h:?}");
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["grpc-status"], status, "{h:?}");
    let message = h["grpc-message"].to_str().unwrap();
    let id = h["x-request-id"].to_str().unwrap();
    assert!(message.starts_with(code), "{message}");
    assert!(
        message.ends_with(&format!("(request id {id})")),
        "{message}"
    );
    assert!(body.is_empty(), "a trailers-only answer has no body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_grpc_calls_are_grpc_statuses() {
    within(async {
        let limits = "[limits]\n[limits.tiers.standard]\nrate = 0.1\nburst = 1\n";
        let h = start(
            limits,
            &[],
            &[],
            &[tenant("acme", "cell-1", Some("standard"))],
        )
        .await;

        // An unknown tenant: NOT_FOUND.
        let got = send(&h, call("nobody.app.test").body(frame()).unwrap()).await;
        refused(&got, "5", "unknown_tenant");

        // A token that does not verify: UNAUTHENTICATED.
        let bad = format!("{}x", token("RS256", "acme"));
        let req = call("acme.app.test")
            .header("authorization", format!("Bearer {bad}"))
            .body(frame())
            .unwrap();
        refused(&send(&h, req).await, "16", "invalid_token");

        // Over the tenant's rate: the first call reaches the cell, the next is RESOURCE_EXHAUSTED.
        let first = send(&h, call("acme.app.test").body(frame()).unwrap()).await;
        assert_eq!(first.0, StatusCode::OK);
        assert!(!first.1.contains_key("grpc-status"), "the cell's answer");
        let got = send(&h, call("acme.app.test").body(frame()).unwrap()).await;
        refused(&got, "8", "rate_limited");
        assert!(got.1.contains_key("retry-after"), "a quota's headers stay");

        // A client's own request id is the one the message names.
        let req = call("nobody.app.test")
            .header("x-request-id", "grpc-test-1")
            .body(frame())
            .unwrap();
        let got = send(&h, req).await;
        assert_eq!(got.1["x-request-id"], "grpc-test-1");
        refused(&got, "5", "unknown_tenant");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_keep_the_json_refusals() {
    within(async {
        let h = start("", &[], &[], &[tenant("acme", "cell-1", None)]).await;
        // HTTP/2 but not gRPC (gRPC-Web is another protocol, answered as HTTP).
        for ct in [
            "application/json",
            "application/grpc-web",
            "application/grpcx",
        ] {
            let req = Request::post("http://nobody.app.test/x")
                .header("content-type", ct)
                .body(Full::default())
                .unwrap();
            let (status, headers, body) = send(&h, req).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{ct}");
            assert_eq!(headers["content-type"], "application/json");
            assert!(!headers.contains_key("grpc-status"));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"], "unknown_tenant");
        }
        // HTTP/1.1 with a gRPC content type: gRPC needs HTTP/2, so this is not a call.
        let req = h
            .request("nobody.app.test", "/echo.Echo/Unary")
            .method("POST")
            .header("content-type", "application/grpc")
            .body(Full::default())
            .unwrap();
        let r = h.send(req).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json()["error"], "unknown_tenant");
    })
    .await;
}

// A slow cell: the call's deadline (300 ms) ends the wait long before the cell answers (3 s)
// or the proxy's read timeout (5 s) would: DEADLINE_EXCEEDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_deadline_bounds_the_wait_for_the_cell() {
    within(async {
        let (h, up) = one_cell("", "").await;
        up.set_delay(std::time::Duration::from_secs(3));
        let req = call("acme.app.test")
            .header("grpc-timeout", "300m")
            .body(frame())
            .unwrap();
        refused(&send(&h, req).await, "4", "cell_timeout");
        // Without a deadline the call waits for the cell.
        up.set_delay(std::time::Duration::from_millis(200));
        let got = send(&h, call("acme.app.test").body(frame()).unwrap()).await;
        assert_eq!(got.0, StatusCode::OK);
        assert!(!got.1.contains_key("grpc-status"));
    })
    .await;
}

// The cell is told what is left of the call's deadline, and never more than the proxy's own
// total timeout (10 s in the tests' config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cell_is_told_what_is_left_of_the_deadline() {
    within(async {
        let h = start("", &[], &[], &[tenant("acme", "cell-1", None)]).await;
        let seen = |got: &(StatusCode, http::HeaderMap, Bytes)| -> String {
            assert_eq!(got.0, StatusCode::OK);
            let v: serde_json::Value = serde_json::from_slice(&got.2).unwrap();
            v["headers"]["grpc-timeout"].as_str().unwrap().to_owned()
        };
        let ms = |v: &str| -> u64 { v.strip_suffix('m').unwrap().parse().unwrap() };
        for (asked, at_most) in [("5S", 5_000), ("1H", 10_000)] {
            let req = call("acme.app.test")
                .header("grpc-timeout", asked)
                .body(frame())
                .unwrap();
            let left = ms(&seen(&send(&h, req).await));
            assert!(left > 0 && left <= at_most, "{asked}: the cell saw {left}m");
        }
        let req = call("acme.app.test")
            .header("grpc-timeout", "whenever")
            .body(frame())
            .unwrap();
        assert_eq!(
            seen(&send(&h, req).await),
            "whenever",
            "malformed: as it came"
        );
    })
    .await;
}
