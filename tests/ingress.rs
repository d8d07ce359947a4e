//! Hostile request heads, spoken as raw bytes over TCP to a running proxy: each smuggling shape
//! gets 400 and a closed connection, is counted by reason, and never reaches the cell; header
//! names with underscores are refused, or dropped when configured so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::cells::{metric, start, urls, within};
use common::upstream::Upstream;
use common::{Harness, base_config, registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "acme.app.test";

/// Writes `head` on a fresh connection and reads until the proxy closes it (or 3 s pass).
/// Returns the status line, the rest of the answer, and whether the connection was closed.
async fn raw(h: &Harness, head: &str) -> (String, String, bool) {
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&out).into_owned();
    let (status, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    (status.to_owned(), rest.to_owned(), closed)
}

#[tokio::test]
async fn each_smuggling_shape_gets_400_and_close_and_never_reaches_the_cell() {
    within(async {
        let up = Upstream::start("a", "a-1").await;
        let h = start("", &[("a", urls(&[&up]))], &[("acme", "a", "ACTIVE"), ("globex", "a", "ACTIVE")]).await;
        // (request head, reason label, error code)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("POST / HTTP/1.1\r\nHost: acme.app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
             "transfer_encoding", Some("invalid_framing")),
            ("POST / HTTP/1.1\r\nHost: acme.app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             "transfer_encoding", Some("invalid_framing")),
            ("GET / HTTP/1.1\r\nHost: acme.app.test\r\nHost: globex.app.test\r\n\r\n", "several_hosts", Some("invalid_host")),
            ("GET http://globex.app.test/ HTTP/1.1\r\nHost: acme.app.test\r\n\r\n", "host_mismatch", Some("invalid_host")),
            ("GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", "host_missing", Some("invalid_host")),
            ("GET / HTTP/1.1\r\nHost: acme.app.test\r\nX_Tenant_Id: globex\r\n\r\n", "underscore_header", Some("invalid_header_name")),
            // Heads hyper could not parse: the desync guard answers them before hyper sees them,
            // in the same JSON shape (tests/desync.rs has the whole corpus).
            ("GET / HTTP/1.1\r\nHost: acme.app.test\r\nX-A: 1\r\n  folded\r\n\r\n", "obs_fold", Some("malformed_header")),
            ("GET / HTTP/1.1\r\nHost: acme.app.test\r\nX-A: a\x00b\r\n\r\n", "bad_header_value", Some("malformed_header")),
            ("POST / HTTP/1.1\r\nHost: acme.app.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "different_content_lengths", Some("invalid_framing")),
        ];
        for (head, reason, code) in cases {
            let before = metric(&h, "cellgate_requests_rejected_total", &[("reason", reason)]).await;
            let (status, rest, closed) = raw(&h, head).await;
            assert!(status.starts_with("HTTP/1.1 400"), "{head:?}: {status}");
            assert!(closed, "{head:?}: the connection stayed open");
            if let Some(code) = code {
                assert!(rest.contains(&format!("\"error\":\"{code}\"")), "{head:?}: {rest}");
                assert!(rest.to_ascii_lowercase().contains("x-request-id:"), "{rest}");
            }
            common::cells::eventually(Duration::from_secs(2), reason, || async {
                metric(&h, "cellgate_requests_rejected_total", &[("reason", reason)]).await == before + 1.0
            })
            .await;
        }
        assert_eq!(up.requests(), 0, "a refused request reached the cell");
        // The same proxy forwards an ordinary request: the refusals were not a broken setup.
        let (status, _, _) = raw(&h, &format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(up.requests(), 1);
    })
    .await;
}

/// Content-Length with Transfer-Encoding is ambiguous: in the default `defensive` mode the
/// desync guard lets it through and closes both connections after it; hyper frames it as
/// chunked and removes the length (RFC 9112 §6.3, as nginx and HAProxy do). The cell sees one
/// chunked body and no length; nothing after it is read from the client.
#[tokio::test]
async fn content_length_with_chunked_is_forwarded_without_the_length_and_closed() {
    within(async {
        let up = Upstream::start("a", "a-1").await;
        let h = start("", &[("a", urls(&[&up]))], &[("acme", "a", "ACTIVE")]).await;
        let smuggled = "GET /admin HTTP/1.1\r\nHost: acme.app.test\r\n\r\n";
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        );
        let (status, rest, closed) = raw(&h, &head).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(closed, "the connection stayed open after CL + TE");
        assert_eq!(rest.matches("HTTP/1.1").count(), 0, "a second answer came back: {rest}");
        let body = rest.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let echo: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
        let names = echo["header_names"].as_array().unwrap();
        assert!(!names.iter().any(|n| n == "content-length"), "{names:?}");
        assert_eq!(echo["request_bytes"], 0);
        assert_eq!(up.requests(), 1, "the smuggled request reached the cell");
    })
    .await;
}

#[tokio::test]
async fn underscored_header_names_can_be_dropped_instead() {
    within(async {
        let up = Upstream::start("a", "a-1").await;
        let config = base_config("").replace(
            "shutdown_grace = \"5s\"",
            "shutdown_grace = \"5s\"\nheaders_with_underscores = \"drop\"",
        );
        let cells = vec![("a".to_owned(), urls(&[&up]))];
        let h = Harness::start_raw(
            &config,
            &registry(&cells, &[("acme", "a", "ACTIVE")]),
            Vec::new(),
        )
        .await;
        let (status, rest, _) = raw(
            &h,
            &format!(
                "GET / HTTP/1.1\r\nHost: {HOST}\r\nX_Tenant_Id: globex\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status} {rest}");
        assert_eq!(up.requests(), 1);
        let body = rest.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let names: serde_json::Value =
            serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
        let names = names["header_names"].as_array().unwrap();
        assert!(names.iter().any(|n| n == "x-tenant-id"), "{names:?}");
        assert!(
            !names.iter().any(|n| n == "x_tenant_id"),
            "the underscored header reached the cell: {names:?}"
        );
    })
    .await;
}

/// A refused head behind a good one on the same connection (pipelined): the good one is
/// answered first, then the refusal, then the connection closes; the cell sees only the first.
#[tokio::test]
async fn a_refused_head_behind_a_pipelined_request_is_answered_after_it() {
    within(async {
        let up = Upstream::start("a", "a-1").await;
        let h = start("", &[("a", urls(&[&up]))], &[("acme", "a", "ACTIVE")]).await;
        let head = format!(
            "GET /first HTTP/1.1\r\nHost: {HOST}\r\n\r\nGET /second HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\x00b\r\n\r\n"
        );
        let (status, rest, closed) = raw(&h, &head).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let second = rest.find("HTTP/1.1 ").map(|i| &rest[i..]).unwrap_or_default();
        assert!(second.starts_with("HTTP/1.1 400"), "no refusal after the first answer: {rest}");
        assert!(second.contains("\"error\":\"malformed_header\""), "{second}");
        assert!(closed, "the connection stayed open");
        assert_eq!(up.requests(), 1, "the refused request reached the cell");
    })
    .await;
}
