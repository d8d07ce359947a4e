//! Who the client is, against a running proxy: a PROXY protocol header (v1 and v2) from a
//! trusted hop names the client (its `X-Forwarded-For` at the cell, its per-address connection
//! cap), and is required from that hop; from anyone else it is never read. `X-Forwarded-For`
//! is believed only from a trusted hop with `server.trust_x_forwarded_for`, and then only its
//! right-most untrusted entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Harness;
use common::cells::{metric, one_cell, within};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "acme.app.test";

/// Sends `prefix` then a GET on one connection; the status line and the echoed JSON body.
async fn get_after(h: &Harness, prefix: &[u8], headers: &str) -> (String, Option<Value>) {
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    );
    let _ = s.write_all(&bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok());
    (status, body)
}

fn forwarded(body: Option<&Value>) -> &str {
    body.and_then(|b| b["forwarded_for"].as_str())
        .unwrap_or_default()
}

fn v2(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&ip);
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&443u16.to_be_bytes());
    out
}

#[tokio::test]
async fn a_trusted_hops_proxy_header_names_the_client() {
    within(async {
        let (h, _up) = one_cell(
            "trusted_hops = [\"127.0.0.1/32\"]\nmax_connections_per_ip = 1",
            "proxy_protocol = true",
        )
        .await;
        let (status, body) =
            get_after(&h, b"PROXY TCP4 203.0.113.7 127.0.0.1 50000 443\r\n", "").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(forwarded(body.as_ref()), "203.0.113.7");
        let (status, body) = get_after(&h, &v2([198, 51, 100, 9], 4242), "").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(forwarded(body.as_ref()), "198.51.100.9");

        // The per-address cap counts the client the header names, not the hop.
        let hold = |ip: &'static str| async move {
            let mut s = TcpStream::connect(h.addr).await.unwrap();
            s.write_all(format!("PROXY TCP4 {ip} 127.0.0.1 1 443\r\n").as_bytes())
                .await
                .unwrap();
            s
        };
        let _first = hold("203.0.113.1").await;
        let _other = hold("203.0.113.2").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, _) = get_after(&h, b"PROXY TCP4 203.0.113.3 127.0.0.1 1 443\r\n", "").await;
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "a third address was refused: {status}"
        );
        let (status, _) = get_after(&h, b"PROXY TCP4 203.0.113.1 127.0.0.1 1 443\r\n", "").await;
        assert!(
            status.is_empty(),
            "a second connection for one address was served: {status}"
        );

        // From the trusted hop the header is required.
        let refused = metric(
            &h,
            "cellgate_connections_refused_total",
            &[("reason", "proxy_protocol")],
        )
        .await;
        let (status, _) = get_after(&h, b"", "").await;
        assert!(
            status.is_empty(),
            "a connection without the header was served: {status}"
        );
        common::cells::eventually(Duration::from_secs(2), "refusal counted", || async {
            metric(
                &h,
                "cellgate_connections_refused_total",
                &[("reason", "proxy_protocol")],
            )
            .await
                == refused + 1.0
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn nobody_else_is_believed() {
    within(async {
        // The hop is 10.0.0.0/8; the test connects from 127.0.0.1.
        let (h, up) = one_cell(
            "trusted_hops = [\"10.0.0.0/8\"]\ntrust_x_forwarded_for = true",
            "proxy_protocol = true",
        )
        .await;
        let (status, _) =
            get_after(&h, b"PROXY TCP4 203.0.113.7 127.0.0.1 50000 443\r\n", "").await;
        assert!(
            status.starts_with("HTTP/1.1 400"),
            "an untrusted PROXY header was read: {status}"
        );
        let (status, body) = get_after(&h, b"", "X-Forwarded-For: 203.0.113.7\r\n").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(
            forwarded(body.as_ref()),
            "127.0.0.1",
            "a client chose its own address"
        );
        assert_eq!(up.requests(), 1);
    })
    .await;
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_hop_gives_its_rightmost_untrusted_entry() {
    within(async {
        let (h, _up) = one_cell(
            "trusted_hops = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\ntrust_x_forwarded_for = true",
            "",
        )
        .await;
        let (_, body) = get_after(
            &h,
            b"",
            "X-Forwarded-For: 6.6.6.6, 203.0.113.9, 10.1.2.3\r\n",
        )
        .await;
        assert_eq!(forwarded(body.as_ref()), "203.0.113.9");
        let (_, body) = get_after(&h, b"", "").await;
        assert_eq!(
            forwarded(body.as_ref()),
            "127.0.0.1",
            "no header: the hop's own address"
        );
        // Off by default: the same header is replaced by the socket's address.
        let (h, _up) = one_cell("trusted_hops = [\"127.0.0.1/32\"]", "").await;
        let (_, body) = get_after(&h, b"", "X-Forwarded-For: 203.0.113.9\r\n").await;
        assert_eq!(forwarded(body.as_ref()), "127.0.0.1");
    })
    .await;
}
