//! The call shapes of `echo.Echo` as checks, shared by the tests that call a cell directly and
//! through the proxy (`tests/grpc_calls.rs`): each makes one call with a [`EchoClient`] and
//! asserts what a correct path from client to cell delivers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};

use super::grpc_cell::{EchoReply, EchoRequest};
use super::grpc_client::{EchoClient, msg};

/// How long one reply may take on loopback before the test calls it stuck.
pub const REPLY: Duration = Duration::from_secs(3);

/// A `grpc-timeout` value as a duration (`5000m`, `4999871u`, ...).
pub fn grpc_timeout(v: &str) -> Duration {
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("grpc-timeout {v:?}"));
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => panic!("grpc-timeout {v:?}"),
    }
}

/// The next message of `s`, failing the test if none comes within [`REPLY`].
pub async fn next(s: &mut Streaming<EchoReply>) -> EchoReply {
    tokio::time::timeout(REPLY, s.message())
        .await
        .expect("no message in time")
        .unwrap_or_else(|s| panic!("stream failed: {s:?}"))
        .expect("the stream ended early")
}

pub fn ok<T>(r: Result<T, Status>, what: &str) -> T {
    r.unwrap_or_else(|s| panic!("{what}: {:?}: {}", s.code(), s.message()))
}

/// A unary call with custom metadata and a deadline: the reply names `cell`/`target` and HTTP/2,
/// lists the metadata the cell got, and the answer carries it back with the `x-trailer` trailer.
pub async fn unary_round_trip(c: &mut EchoClient, cell: &str, target: &str) {
    let mut req = Request::new(msg("hello"));
    req.metadata_mut()
        .insert("x-echo-color", "blue".parse().unwrap());
    req.metadata_mut()
        .insert("x-echo-size", "9".parse().unwrap());
    req.set_timeout(Duration::from_secs(5));
    let resp = ok(c.unary(req).await, "unary");
    let meta = resp.metadata().clone();
    let reply = resp.into_inner();
    assert_eq!(reply.message, "hello");
    assert_eq!((reply.cell.as_str(), reply.target.as_str()), (cell, target));
    assert_eq!(reply.version, "HTTP/2.0");
    assert_eq!(reply.metadata, ["x-echo-color=blue", "x-echo-size=9"]);
    let left = grpc_timeout(&reply.grpc_timeout);
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(5),
        "the cell was told {:?}",
        reply.grpc_timeout
    );
    // tonic merges a unary answer's trailers into its metadata.
    assert_eq!(meta.get("x-echo-color").unwrap(), "blue", "{meta:?}");
    assert_eq!(meta.get("x-echo-size").unwrap(), "9", "{meta:?}");
    assert_eq!(meta.get("x-trailer").unwrap(), "Unary", "{meta:?}");
}

/// Five replies in order, then the trailers (read as trailers this time).
pub async fn server_stream(c: &mut EchoClient, cell: &str) {
    let req = EchoRequest {
        count: 5,
        delay_ms: 10,
        ..msg("tick")
    };
    let mut s = ok(c.server_stream(req).await, "server stream").into_inner();
    for i in 0..5 {
        let r = next(&mut s).await;
        assert_eq!(
            (r.index, r.message.as_str()),
            (i, format!("tick {i}").as_str())
        );
        assert_eq!(r.cell, cell);
    }
    assert!(ok(s.message().await, "end of stream").is_none());
    let trailers = ok(s.trailers().await, "trailers").expect("no trailers");
    assert_eq!(trailers.get("x-trailer").unwrap(), "ServerStream");
}

/// Ten messages counted and summed by the cell.
pub async fn client_stream(c: &mut EchoClient, cell: &str) {
    let messages: Vec<EchoRequest> = (1..=10)
        .map(|value| EchoRequest { value, ..msg("n") })
        .collect();
    let resp = ok(
        c.client_stream(tokio_stream::iter(messages)).await,
        "client stream",
    );
    assert_eq!(resp.metadata().get("x-trailer").unwrap(), "ClientStream");
    let r = resp.into_inner();
    assert_eq!((r.index, r.sum), (10, 55));
    assert_eq!(r.cell, cell);
}

/// Ping-pong: each reply is read before the next message is written, so a stream buffered
/// anywhere on the way stalls the exchange (and fails the test) instead of passing.
pub async fn bidi_ping_pong(c: &mut EchoClient, cell: &str) {
    let (tx, rx) = mpsc::channel::<EchoRequest>(1);
    // The first message goes with the call; the rest one by one, each after its reply.
    tx.send(msg("ping 0")).await.unwrap();
    let mut replies = ok(c.bidi(ReceiverStream::new(rx)).await, "bidi").into_inner();
    for i in 0..10u32 {
        if i > 0 {
            tx.send(msg(&format!("ping {i}"))).await.unwrap();
        }
        let r = next(&mut replies).await;
        assert_eq!((r.index, r.message), (i, format!("ping {i}")));
        assert_eq!(r.cell, cell);
    }
    drop(tx);
    let end = tokio::time::timeout(REPLY, replies.message()).await;
    assert!(ok(end.expect("no end in time"), "end of bidi").is_none());
    let trailers = ok(replies.trailers().await, "trailers").expect("no trailers");
    assert_eq!(trailers.get("x-trailer").unwrap(), "Bidi");
}

/// `calls` unary calls from `concurrency` callers; the failures, as `code: message (source)`.
pub async fn load(client: &EchoClient, calls: u32, concurrency: usize) -> Vec<String> {
    let issued = Arc::new(AtomicU32::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let mut c = client.clone();
        let issued = Arc::clone(&issued);
        workers.spawn(async move {
            let mut failed = Vec::new();
            while issued.fetch_add(1, Ordering::SeqCst) < calls {
                if let Err(s) = c.unary(msg("load")).await {
                    let source = std::error::Error::source(&s)
                        .map_or_else(String::new, |e| format!(" ({e:?})"));
                    failed.push(format!("{:?}: {}{source}", s.code(), s.message()));
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(w) = workers.join_next().await {
        failed.extend(w.unwrap());
    }
    failed
}
