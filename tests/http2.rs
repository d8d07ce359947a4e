//! HTTP/2 limits against a running proxy, spoken by a raw frame-level client
//! (`common::h2raw`): the advertised stream limit holds (a stream beyond it is refused and
//! never reaches the cell), a rapid-reset flood ends the connection with
//! `ENHANCE_YOUR_CALM`, and a header block that never ends (a CONTINUATION flood) is cut at the
//! header-list limit. After each, the proxy serves new connections as before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use common::cells::{one_cell, within};
use common::h2raw::{self, Conn, frame};
use common::upstream::Upstream;

const HOST: &str = "acme.app.test";

async fn proxy(http2: &str) -> (Harness, Arc<Upstream>) {
    one_cell(&format!("\n[server.http2]\n{http2}"), "").await
}

/// A request on a fresh raw connection is answered 200: the proxy is still fine.
async fn still_serves(h: &Harness) {
    let mut c = Conn::open(h.addr).await;
    c.send(&frame(
        h2raw::HEADERS,
        h2raw::END_STREAM | h2raw::END_HEADERS,
        1,
        &h2raw::get_block(HOST, "/"),
    ))
    .await;
    loop {
        let f = c
            .next(Duration::from_secs(3))
            .await
            .expect("no answer on a fresh connection");
        if f.kind == h2raw::HEADERS && f.stream == 1 {
            // :status 200 is static-table index 8.
            assert_eq!(f.payload.first(), Some(&0x88), "{f:?}");
            return;
        }
    }
}

#[tokio::test]
async fn a_stream_beyond_the_advertised_limit_is_refused() {
    within(async {
        let (h, up) = proxy("max_concurrent_streams = 10").await;
        up.set_delay(Duration::from_millis(1500));
        let mut c = Conn::open(h.addr).await;
        assert!(
            c.server_settings
                .contains(&(h2raw::SETTINGS_MAX_CONCURRENT_STREAMS, 10)),
            "{:?}",
            c.server_settings
        );
        let mut burst = Vec::new();
        for i in 0..11u32 {
            burst.extend(frame(
                h2raw::HEADERS,
                h2raw::END_STREAM | h2raw::END_HEADERS,
                1 + 2 * i,
                &h2raw::get_block(HOST, "/"),
            ));
        }
        c.send(&burst).await;
        let frames = c.drain(Duration::from_secs(4)).await;
        let refused: Vec<u32> = frames
            .iter()
            .filter(|f| {
                f.kind == h2raw::RST_STREAM && f.error_code() == Some(h2raw::REFUSED_STREAM)
            })
            .map(|f| f.stream)
            .collect();
        assert_eq!(refused, vec![21], "{frames:?}");
        let answered = frames.iter().filter(|f| f.kind == h2raw::HEADERS).count();
        assert_eq!(answered, 10, "the streams within the limit are answered");
        assert_eq!(up.requests(), 10, "the refused stream reached the cell");
        still_serves(&h).await;
    })
    .await;
}

#[tokio::test]
async fn a_rapid_reset_flood_ends_the_connection_with_enhance_your_calm() {
    within(async {
        let (h, up) = proxy("max_pending_resets = 20").await;
        up.set_delay(Duration::from_millis(200));
        let mut c = Conn::open(h.addr).await;
        // Each stream is opened and cancelled at once, all in one write (CVE-2023-44487).
        let mut flood = Vec::new();
        for i in 0..2000u32 {
            let id = 1 + 2 * i;
            flood.extend(frame(
                h2raw::HEADERS,
                h2raw::END_STREAM | h2raw::END_HEADERS,
                id,
                &h2raw::get_block(HOST, "/"),
            ));
            flood.extend(frame(
                h2raw::RST_STREAM,
                0,
                id,
                &h2raw::CANCEL.to_be_bytes(),
            ));
        }
        c.send(&flood).await;
        let frames = c.drain(Duration::from_secs(5)).await;
        let goaway = frames.iter().find(|f| f.kind == h2raw::GOAWAY);
        assert_eq!(
            goaway.and_then(h2raw::Frame::error_code),
            Some(h2raw::ENHANCE_YOUR_CALM),
            "{:?}",
            frames
                .iter()
                .map(|f| (f.kind, f.stream, f.error_code()))
                .collect::<Vec<_>>()
        );
        assert!(up.requests() < 2000, "every reset stream reached the cell");
        still_serves(&h).await;
    })
    .await;
}

#[tokio::test]
async fn a_header_block_that_never_ends_is_cut_at_the_header_list_limit() {
    within(async {
        let (h, up) = proxy("").await;
        let mut c = Conn::open(h.addr).await;
        let mut first = h2raw::get_block(HOST, "/");
        h2raw::literal(&mut first, "x-pad", &"p".repeat(1000));
        let mut sent = frame(h2raw::HEADERS, h2raw::END_STREAM, 1, &first).len();
        assert!(
            c.send(&frame(h2raw::HEADERS, h2raw::END_STREAM, 1, &first))
                .await
        );
        // CONTINUATION frames of 8 KiB of fields each, never END_HEADERS: 64 MiB if let be.
        let mut block = Vec::new();
        for i in 0..8 {
            h2raw::literal(&mut block, &format!("x-flood-{i}"), &"f".repeat(1000));
        }
        let cont = frame(h2raw::CONTINUATION, 0, 1, &block);
        let mut cut = false;
        for _ in 0..8192 {
            if !c.send(&cont).await {
                cut = true;
                break;
            }
            sent += cont.len();
        }
        let frames = c.drain(Duration::from_secs(5)).await;
        let ended = cut
            || frames
                .iter()
                .any(|f| f.kind == h2raw::GOAWAY || f.kind == h2raw::RST_STREAM);
        assert!(
            ended,
            "the flood was taken whole ({sent} bytes): {frames:?}"
        );
        assert!(
            sent < 16 * 1024 * 1024,
            "{sent} bytes were accepted before the cut"
        );
        assert_eq!(up.requests(), 0);
        still_serves(&h).await;
    })
    .await;
}
