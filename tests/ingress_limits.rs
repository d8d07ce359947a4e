//! The ingress limits against a running proxy, spoken as raw bytes over TCP: oversized heads get
//! 431, long targets 414, large bodies 413 (declared or streamed), slow bodies 408; a client
//! trickling a head is cut at the head deadline while others are served; a quiet keep-alive
//! connection outlives that deadline and is closed at the idle timeout; connections beyond the
//! caps are closed at once. Each refusal is counted by reason and none reaches the cell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use common::cells::{eventually, metric, one_cell, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "acme.app.test";

/// Reads until the proxy closes the connection or `limit` passes: the bytes, and whether it
/// closed.
async fn read_all(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

async fn exchange(h: &Harness, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // The proxy may answer and close before all of a large head is written.
    let _ = s.write_all(bytes).await;
    read_all(&mut s, Duration::from_secs(3)).await
}

async fn rejected(h: &Harness, reason: &str) -> f64 {
    metric(h, "cellgate_requests_rejected_total", &[("reason", reason)]).await
}

async fn counted(h: &Harness, reason: &str, before: f64) {
    eventually(Duration::from_secs(2), reason, || async {
        rejected(h, reason).await == before + 1.0
    })
    .await;
}

#[tokio::test]
async fn each_size_limit_gets_its_status_and_never_reaches_the_cell() {
    within(async {
        let (h, up) =
            one_cell("max_header_bytes = 8192\nmax_uri_bytes = 256\nmax_body_bytes = 1024", "").await;
        let big_header = format!(
            "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9000)
        );
        let mut many = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n");
        for i in 0..101 {
            many.push_str(&format!("X-F{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", "a".repeat(300));
        let declared = format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2000\r\n\r\n{}",
            "b".repeat(2000)
        );
        // (request, status, reason label, JSON error code): the desync guard answers the head
        // limits before hyper reads the head, in the same JSON shape as every refusal.
        let cases: Vec<(String, &str, &str, Option<&str>)> = vec![
            (big_header, "431", "header_too_large", Some("header_too_large")),
            (many, "431", "too_many_headers", Some("too_many_headers")),
            (long_uri, "414", "uri_too_long", Some("uri_too_long")),
            (declared, "413", "body_too_large", Some("body_too_large")),
        ];
        for (req, status, reason, code) in &cases {
            let before = rejected(&h, reason).await;
            let (answer, closed) = exchange(&h, req.as_bytes()).await;
            let line = answer.lines().next().unwrap_or_default();
            assert!(line.starts_with(&format!("HTTP/1.1 {status}")), "{reason}: {line}");
            assert!(closed, "{reason}: the connection stayed open");
            if let Some(code) = code {
                assert!(answer.contains(&format!("\"error\":\"{code}\"")), "{answer}");
                assert!(answer.to_ascii_lowercase().contains("x-request-id:"), "{answer}");
            }
            counted(&h, reason, before).await;
        }
        assert_eq!(up.requests(), 0, "a refused request reached the cell");

        // A body with no declared length is counted as it streams: 413 once it passes 1 KiB.
        let before = rejected(&h, "body_too_large").await;
        let mut chunked = format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n");
        for _ in 0..3 {
            chunked.push_str(&format!("258\r\n{}\r\n", "c".repeat(600)));
        }
        chunked.push_str("0\r\n\r\n");
        let (answer, _) = exchange(&h, chunked.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"error\":\"body_too_large\""), "{answer}");
        counted(&h, "body_too_large", before).await;

        // At the limit, all is well.
        let ok = format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{}",
            "d".repeat(1024)
        );
        let (answer, _) = exchange(&h, ok.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"request_bytes\":1024"), "{answer}");
    })
    .await;
}

#[tokio::test]
async fn a_body_slower_than_the_request_timeout_gets_408() {
    within(async {
        let (h, _up) = one_cell("request_timeout = \"500ms\"", "").await;
        let before = rejected(&h, "request_timeout").await;
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\nhello")
                .as_bytes(),
        )
        .await
        .unwrap();
        let (answer, _) = read_all(&mut s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
        counted(&h, "request_timeout", before).await;
    })
    .await;
}

#[tokio::test]
async fn a_slow_head_is_cut_at_the_deadline_while_others_are_served() {
    within(async {
        let (h, up) = one_cell("header_timeout = \"1s\"", "").await;
        let before = rejected(&h, "header_timeout").await;
        let addr = h.addr;
        // One byte every 100 ms: every read makes progress, the head never ends.
        let slow = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            let head = format!(
                "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: {}",
                "z".repeat(200)
            );
            for b in head.bytes() {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut probe = [0u8; 64];
                let probe =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await;
                if let Ok(Ok(0) | Err(_)) = probe {
                    break;
                }
            }
            start.elapsed()
        });
        // Meanwhile ordinary requests keep being answered.
        let mut served = 0;
        while !slow.is_finished() {
            assert_eq!(h.get(HOST, "/").await.status, 200);
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cut_after = slow.await.unwrap();
        assert!(
            cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(4),
            "the slow head was cut after {cut_after:?}, not at the 1 s deadline"
        );
        assert!(served >= 5, "only {served} requests served meanwhile");
        counted(&h, "header_timeout", before).await;
        assert_eq!(up.requests(), served);
    })
    .await;
}

#[tokio::test]
async fn a_quiet_keep_alive_connection_outlives_the_head_deadline_and_closes_at_idle() {
    within(async {
        let (h, _up) = one_cell("header_timeout = \"500ms\"\nidle_timeout = \"2s\"", "").await;
        let idle_before = metric(&h, "cellgate_connections_idle_closed_total", &[]).await;
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        for _ in 0..2 {
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            // Quiet for three head deadlines: the connection stays (its deadline counts from
            // a head's first byte, not from the last answer).
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let quiet = Instant::now();
        let (rest, closed) = read_all(&mut s, Duration::from_secs(5)).await;
        assert!(closed && rest.is_empty(), "{rest:?}");
        let after = quiet.elapsed();
        assert!(
            after < Duration::from_secs(3),
            "idle connection closed after {after:?} more"
        );
        eventually(Duration::from_secs(2), "idle close counted", || async {
            metric(&h, "cellgate_connections_idle_closed_total", &[]).await >= idle_before + 1.0
        })
        .await;
    })
    .await;
}

/// Whether the proxy closes `s` within a moment, without answering.
async fn closed_at_once(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn served_on(s: &mut TcpStream) -> bool {
    let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 8192];
    matches!(s.read(&mut buf).await, Ok(n) if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"))
}

#[tokio::test]
async fn connections_beyond_the_caps_are_closed_at_once() {
    within(async {
        // Per client address: all of the test's connections come from 127.0.0.1.
        let (h, _up) = one_cell("max_connections_per_ip = 2", "").await;
        let refused = || {
            metric(
                &h,
                "cellgate_connections_refused_total",
                &[("reason", "max_connections_per_ip")],
            )
        };
        let before = refused().await;
        let mut a = TcpStream::connect(h.addr).await.unwrap();
        let mut b = TcpStream::connect(h.addr).await.unwrap();
        assert!(served_on(&mut a).await && served_on(&mut b).await);
        let mut c = TcpStream::connect(h.addr).await.unwrap();
        assert!(
            closed_at_once(&mut c).await,
            "a third connection from one address was kept"
        );
        assert_eq!(refused().await, before + 1.0);
        drop(a);
        eventually(
            Duration::from_secs(2),
            "a freed place is reused",
            || async {
                let mut d = TcpStream::connect(h.addr).await.unwrap();
                served_on(&mut d).await
            },
        )
        .await;
        assert!(
            served_on(&mut b).await,
            "an admitted connection was disturbed"
        );

        // In all.
        let (h, _up) = one_cell("max_connections = 2\nmax_connections_per_ip = 0", "").await;
        let mut a = TcpStream::connect(h.addr).await.unwrap();
        let mut b = TcpStream::connect(h.addr).await.unwrap();
        assert!(served_on(&mut a).await && served_on(&mut b).await);
        let mut c = TcpStream::connect(h.addr).await.unwrap();
        assert!(
            closed_at_once(&mut c).await,
            "a connection over max_connections was kept"
        );
        assert_eq!(
            metric(
                &h,
                "cellgate_connections_refused_total",
                &[("reason", "max_connections")]
            )
            .await,
            1.0
        );
    })
    .await;
}
