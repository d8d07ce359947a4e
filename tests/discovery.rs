//! DNS re-resolution end to end: a cell whose target is named by a host name, resolved through a
//! real (tiny, in-test) authoritative DNS server on loopback (`tests/common/dns.rs`), in front
//! of upstreams on `127.0.0.2` and `127.0.0.3` (one port; Linux routes all of 127/8 to lo).
//!
//! Properties, in one timeline (each step starts from the state the one before left):
//! 1. The name resolves to .2: every request goes there; `/admin/cells` lists the address and
//!    the DNS status.
//! 2. The record changes to .3: within about `max_ttl` (the record's TTL is far longer) every
//!    request goes to .3; .2 gets nothing more, its pooled connections are closed and its
//!    series dropped; a client sending all along sees no failure. A TTL of 0 is asked again
//!    every `min_ttl`, not in a loop.
//! 3. The DNS server answers SERVFAIL, then nothing at all: requests keep going to the last good
//!    address, `cellgate_dns_resolutions_total{result="error"}` grows, and `/admin/cells` shows
//!    the error.
//! 4. It answers again, with both addresses: both get traffic.
//!
//! A second test checks that `/admin/cells` reports the TTL applied (rounded, not truncated).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::cells::{admin_addresses, admin_cell, eventually, metric, within};
use common::dns::{DnsServer, Mode};
use common::upstream::Upstream;
use common::{Harness, Reply};
use http::StatusCode;

const NAME: &str = "svc.cells.test";
const DOT2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const DOT3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Upstreams named `dot-2` and `dot-3` on 127.0.0.2 and 127.0.0.3, one port for both.
async fn pair() -> (Arc<Upstream>, Arc<Upstream>) {
    for _ in 0..10 {
        let a = Upstream::start_on("d", "dot-2", SocketAddr::from((DOT2, 0))).await;
        let addr = SocketAddr::from((DOT3, a.addr.port()));
        // The port is free on .2; on .3 it almost surely is too, else try another.
        if std::net::TcpListener::bind(addr).is_ok() {
            let b = Upstream::start_on("d", "dot-3", addr).await;
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

async fn get(h: &Harness) -> Reply {
    h.get("acme.app.test", "/").await
}

/// How many of `n` requests each upstream answered (all must be 200).
async fn spread(h: &Harness, n: usize) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for _ in 0..n {
        let r = get(h).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        *by.entry(r.json()["target"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    by
}

/// The proxy resolving through `dns`, one cell `d` whose target is `http://svc.cells.test:port`
/// and tenant `acme` in it; returns the target's URL too.
async fn start_proxy(dns: &DnsServer, port: u16) -> (Harness, String) {
    // TTLs are kept between 100 ms and 1 s; a query times out after 300 ms. The pool's sweep
    // (every pool_idle_timeout / 2 = 2 s) drops connections to retired addresses, sooner than
    // their idle timeout (4 s) would.
    let extra = format!(
        r#"
[upstream.dns]
nameservers = ["{}"]
min_ttl = "100ms"
max_ttl = "1s"
timeout = "300ms"
"#,
        dns.addr
    );
    let url = format!("http://{NAME}:{port}");
    // pool_idle_timeout belongs to the base config's [upstream] table.
    let config = common::base_config(&extra).replace(
        "total_timeout = \"10s\"",
        "total_timeout = \"10s\"\npool_idle_timeout = \"4s\"",
    );
    let registry = common::registry(
        &[("d".to_owned(), vec![url.clone()])],
        &[("acme", "d", "ACTIVE")],
    );
    (
        Harness::start_raw(&config, &registry, Vec::new()).await,
        url,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_named_by_dns_follows_its_records_and_survives_a_dns_outage() {
    within(async {
        let (dot2, dot3) = pair().await;
        let port = dot2.addr.port();
        // A TTL of five minutes: only max_ttl makes the proxy ask again within a second.
        let dns = DnsServer::start(300).await;
        dns.set(NAME, &[DOT2]);
        let (h, url) = start_proxy(&dns, port).await;
        let h = Arc::new(h);
        let target_metric = |result: &'static str| {
            let (h, url) = (Arc::clone(&h), url.clone());
            async move {
                metric(
                    &h,
                    "cellgate_dns_resolutions_total",
                    &[("target", &url), ("result", result)],
                )
                .await
            }
        };

        // 1. Resolved to .2.
        assert_eq!(spread(&h, 10).await.get("dot-2"), Some(&10));
        assert_eq!(dot3.requests(), 0);
        assert!(
            dot2.open_connections() >= 1,
            "the proxy keeps its connections to .2 pooled"
        );
        let addrs = admin_addresses(&h, "d", &url).await;
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        assert_eq!(addrs[0]["address"], format!("127.0.0.2:{port}"));
        assert_eq!(addrs[0]["healthy"], true);
        let cell = admin_cell(&h, "d").await;
        let status = &cell["targets"][0]["dns"];
        assert!(status["resolved_at"].is_string(), "{cell}");
        assert!(status["last_error"].is_null(), "{cell}");
        // Clamped to max_ttl (1 s): never 299.
        assert!(
            status["ttl_secs"].as_u64().unwrap() <= 1,
            "TTL 300 s not clamped to max_ttl: {cell}"
        );
        assert!(target_metric("ok").await >= 1.0);
        assert_eq!(
            metric(&h, "cellgate_target_addresses", &[("target", &url)]).await,
            1.0
        );

        // A client sending all along, through every change below.
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut sent, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let r = get(&h).await;
                    sent += 1;
                    if r.status != StatusCode::OK {
                        failed.push(format!("{} {}", r.status, r.body));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (sent, failed)
            })
        };

        // 2. The record moves to .3.
        dns.set(NAME, &[DOT3]);
        eventually(
            Duration::from_secs(3),
            "the address set follows DNS",
            || async {
                let a = admin_addresses(&h, "d", &url).await;
                a.len() == 1 && a[0]["address"] == format!("127.0.0.3:{port}")
            },
        )
        .await;
        let on_dot2 = dot2.requests();
        assert_eq!(spread(&h, 20).await.get("dot-3"), Some(&20));
        assert_eq!(dot2.requests(), on_dot2, "a retired address got requests");
        assert!(dot3.requests() >= 20);
        eventually(
            Duration::from_secs(3),
            "pooled connections to the retired address closed",
            || async { dot2.open_connections() == 0 },
        )
        .await;
        assert_eq!(dot2.requests(), on_dot2);
        // The retired address's series are gone; the target counts one address.
        let m = common::limits::metrics(&h).await;
        assert!(!m.contains(&format!("127.0.0.2:{port}")), "{m}");
        assert_eq!(
            common::limits::sum(&m, "cellgate_target_addresses", &[("target", &url)]),
            1.0
        );

        // A TTL of 0 is asked again every min_ttl, not in a loop.
        dns.set_ttl(0);
        // The answer held (1 s at most) expires first.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let asked = dns.a_queries();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let asked = dns.a_queries() - asked;
        assert!(
            (3..=15).contains(&asked),
            "{asked} A queries in 1s with min_ttl 100ms"
        );
        dns.set_ttl(300);

        // 3. DNS fails: SERVFAIL, then silence. The last good set stays.
        for mode in [Mode::ServFail, Mode::Silent] {
            let errors = target_metric("error").await;
            dns.set_mode(mode);
            // Failed resolutions are retried after min_ttl, doubling up to max_ttl.
            eventually(
                Duration::from_secs(5),
                &format!("{mode:?}: failed resolutions counted"),
                || async { target_metric("error").await >= errors + 2.0 },
            )
            .await;
            assert_eq!(spread(&h, 10).await.get("dot-3"), Some(&10), "{mode:?}");
            let a = admin_addresses(&h, "d", &url).await;
            assert_eq!(a.len(), 1, "{mode:?}: {a:?}");
            assert_eq!(a[0]["address"], format!("127.0.0.3:{port}"));
            let status = admin_cell(&h, "d").await["targets"][0]["dns"].clone();
            assert!(status["last_error"].is_string(), "{mode:?}: {status}");
            assert!(status["failures"].as_u64().unwrap() >= 2, "{status}");
        }

        // 4. Answers again, with both addresses.
        dns.set(NAME, &[DOT2, DOT3]);
        dns.set_mode(Mode::Answer);
        eventually(Duration::from_secs(4), "both addresses listed", || async {
            admin_addresses(&h, "d", &url).await.len() == 2
        })
        .await;
        let by = spread(&h, 20).await;
        assert!(
            by.get("dot-2").is_some_and(|n| *n >= 5) && by.get("dot-3").is_some_and(|n| *n >= 5),
            "{by:?}"
        );
        assert_eq!(
            metric(&h, "cellgate_target_addresses", &[("target", &url)]).await,
            2.0
        );
        let status = admin_cell(&h, "d").await["targets"][0]["dns"].clone();
        assert!(status["last_error"].is_null(), "{status}");

        stop.store(true, Ordering::SeqCst);
        let (sent, failed) = load.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} of {sent} requests failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(sent >= 100, "too little traffic: {sent}");
        Arc::try_unwrap(h).ok().unwrap().shutdown().await;
    })
    .await;
}

// A fixed bug: `dns.ttl_secs` was the time the answer had left, truncated (max_ttl 1s showed 0,
// 60s showed 59); `target_task` now rounds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reports_the_ttl_applied() {
    within(async {
        let up = Upstream::start_on("d", "dot-2", SocketAddr::from((DOT2, 0))).await;
        let dns = DnsServer::start(300).await;
        dns.set(NAME, &[DOT2]);
        let (h, url) = start_proxy(&dns, up.addr.port()).await;
        assert_eq!(spread(&h, 1).await.get("dot-2"), Some(&1));
        let cell = admin_cell(&h, "d").await;
        assert_eq!(cell["targets"][0]["url"], url);
        assert_eq!(
            cell["targets"][0]["dns"]["ttl_secs"], 1,
            "TTL 300s clamped to max_ttl 1s: {cell}"
        );
        h.shutdown().await;
    })
    .await;
}
