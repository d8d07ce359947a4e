//! Failure domains end to end, over real sockets in front of controllable upstreams
//! (`tests/common/upstream.rs`): a target that fails leaves rotation and comes back, a dead
//! cell fails fast without touching its neighbours, retries stay inside their budget and only
//! replay what is safe, and long-lived exchanges (WebSockets, streamed responses) end when their
//! tenant moves to another cell.
//!
//! Properties, one test each:
//! 1. Passive ejection: the application's 500s never eject; three gateway failures (503) in a
//!    row eject an address for `base_ejection`; meanwhile the other address serves everything;
//!    then it is back with its share.
//! 2. A target refusing connections is ejected the same way, while retries on connect failure
//!    keep every client request successful; once it listens again it gets traffic again.
//! 3. Active checks: a failing health path takes an address out after `unhealthy_threshold`
//!    checks, and `healthy_threshold` passes bring it back.
//! 4. A dead cell (one target refusing, one blackholed) answers its tenants a fast 503
//!    `no_healthy_target` without any connection attempt, while every request of the other
//!    cells' tenants succeeds in the tenant's own cell; a target that comes back serves again.
//! 5. The retry budget bounds the attempts a 100%-failing cell sees to about `1 + ratio` per
//!    request.
//! 6. After a gateway error a GET is retried on the healthy target, a POST with a body is not;
//!    after a refused connect any request is.
//! 7. WebSockets echo; a tenant's WebSocket closes (both sides) when it moves, a neighbour's
//!    stays open.
//! 8. A streamed response (chunked, no length) ends cleanly when its tenant moves, a
//!    neighbour's keeps streaming. Over HTTP/2 too: the moved tenant's stream ends, its neighbour's on
//!    the same connection and the connection itself go on.
//! 9. An Upgrade from a MIGRATING tenant is refused with 503 `tenant_migrating` and never
//!    reaches the cell; an open WebSocket closes when its tenant starts migrating.
//!
//! 10. A WebSocket routed before a move but opened after it (the cell was
//!     slow to answer the upgrade) is closed too.
//! 11. The same for a streamed response whose head arrives after the move.
//!
//! Tests 10 and 11 guard a fixed bug: an exchange registered after a generation that moved its
//! tenant was published (between routing and the cell's answer) stayed open to the old cell;
//! `moves::LongLived::register` now checks the current generation.
//!
//! Waits are bounded polls; the few time bounds asserted (an ejection lasting its
//! `base_ejection`, a 503 faster than a connect timeout) leave a wide margin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cells::{
    admin_address, admin_cell, endpoint_healthy, eventually, metric, start, urls, within,
};
use common::limits::{host, refusal};
use common::upstream::{Blackhole, Upstream};
use common::{Harness, Reply, registry};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(h: &Harness, tenant: &str) -> Reply {
    h.get(&host(tenant), "/").await
}

async fn post(h: &Harness, tenant: &str, body: &[u8]) -> Reply {
    let req = Request::post(format!("http://{}/write", h.addr))
        .header("host", host(tenant))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    h.send(req).await
}

/// The target that answered `r`, which must be a 200 from an upstream.
fn served_by(r: &Reply) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["target"].as_str().unwrap().to_owned()
}

/// How many of `n` GETs of `tenant` each target answered (all must be 200).
async fn spread(h: &Harness, tenant: &str, n: usize) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for _ in 0..n {
        *by.entry(served_by(&get(h, tenant).await)).or_insert(0) += 1;
    }
    by
}

/// Publishes a new registry generation (the same cells, `acme` in `cell`, and one more tenant)
/// and waits until the proxy uses it.
async fn new_generation(h: &Harness, cell: &str, targets: Vec<String>) {
    h.write_registry(&registry(
        &[(cell.to_owned(), targets)],
        &[("acme", cell, "ACTIVE"), ("newcomer", cell, "ACTIVE")],
    ));
    eventually(
        Duration::from_secs(3),
        "the new generation in use",
        || async { h.admin_get("/admin/tenants/newcomer").await.unwrap().status == StatusCode::OK },
    )
    .await;
}

fn flag(v: &serde_json::Value, key: &str) -> bool {
    v[key]
        .as_bool()
        .unwrap_or_else(|| panic!("no boolean {key} in {v}"))
}

// 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_failures_in_a_row_eject_an_address_until_the_ejection_ends() {
    within(async {
        let good = Upstream::start("cell-1", "good").await;
        let bad = Upstream::start("cell-1", "bad").await;
        // No retries: every request the bad address takes comes back as its own 503.
        let extra = r#"
[upstream.outlier]
consecutive_failures = 3
base_ejection = "2s"
max_ejection = "8s"

[upstream.retry]
max_attempts = 1
"#;
        let h = start(
            extra,
            &[("cell-1", urls(&[&good, &bad]))],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;
        let by = spread(&h, "acme", 4).await;
        assert_eq!((by["good"], by["bad"]), (2, 2), "round robin while healthy");

        // The application's own 500s are not gateway failures: nothing is ejected for them.
        for _ in 0..10 {
            let r = h.get(&host("acme"), "/?status=500").await;
            assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
        }
        assert!(flag(&admin_cell(&h, "cell-1").await, "healthy"));
        assert_eq!(
            metric(&h, "cellgate_endpoint_ejections_total", &[]).await,
            0.0,
            "a 500 ejected an address"
        );

        bad.set_status(503);
        let mut failures = 0;
        for _ in 0..20 {
            let r = get(&h, "acme").await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(r.json()["target"], "bad", "{}", r.body);
                failures += 1;
                if failures == 3 {
                    break;
                }
            } else {
                assert_eq!(served_by(&r), "good");
            }
        }
        assert_eq!(failures, 3, "the bad address was not tried three times");
        let ejected_at = Instant::now();

        // Ejected: the good address serves everything, the bad one sees nothing.
        // Health belongs to the address, not to a registry generation: a reload keeps it out.
        new_generation(&h, "cell-1", urls(&[&good, &bad])).await;
        let before = bad.requests();
        let by = spread(&h, "acme", 20).await;
        assert_eq!(by.get("good"), Some(&20), "{by:?}");
        assert_eq!(bad.requests(), before, "an ejected address got requests");
        let a = admin_address(&h, "cell-1", bad.addr).await;
        assert!(flag(&a, "ejected") && !flag(&a, "healthy"), "{a}");
        assert!(!flag(&a, "failing_checks"), "no active checks here: {a}");
        let g = admin_address(&h, "cell-1", good.addr).await;
        assert!(flag(&g, "healthy") && !flag(&g, "ejected"), "{g}");
        let cell = admin_cell(&h, "cell-1").await;
        assert!(flag(&cell, "healthy"), "{cell}");
        assert_eq!(cell["groups"][0]["healthy_addresses"], 1, "{cell}");
        let ejections = |u: &Upstream| {
            let (url, addr) = (u.url(), u.addr.to_string());
            let h = &h;
            async move {
                metric(
                    h,
                    "cellgate_endpoint_ejections_total",
                    &[("target", &url), ("address", &addr)],
                )
                .await
            }
        };
        assert_eq!(ejections(&bad).await, 1.0);
        assert_eq!(ejections(&good).await, 0.0);
        assert_eq!(endpoint_healthy(&h, &bad).await, 0.0);
        assert_eq!(endpoint_healthy(&h, &good).await, 1.0);
        assert!(
            ejected_at.elapsed() < Duration::from_millis(1500),
            "too slow to check inside the 2 s ejection: {:?}",
            ejected_at.elapsed()
        );

        // It recovers; when the ejection ends it is back in rotation, with its share.
        bad.set_status(200);
        eventually(Duration::from_secs(5), "the ejection ends", || async {
            !flag(&admin_address(&h, "cell-1", bad.addr).await, "ejected")
        })
        .await;
        let lasted = ejected_at.elapsed();
        assert!(
            lasted >= Duration::from_millis(1800),
            "ejected for {lasted:?}, base_ejection is 2s"
        );
        let by = spread(&h, "acme", 6).await;
        assert_eq!(
            (by.get("good"), by.get("bad")),
            (Some(&3), Some(&3)),
            "{by:?}"
        );
        eventually(
            Duration::from_secs(1),
            "endpoint_healthy back to 1",
            || async { endpoint_healthy(&h, &bad).await == 1.0 },
        )
        .await;
        assert_eq!(ejections(&bad).await, 1.0, "ejected once only");
        h.shutdown().await;
    })
    .await;
}

// 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_refusing_connections_is_ejected_while_retries_hide_the_failures() {
    within(async {
        let good = Upstream::start("cell-1", "good").await;
        let bad = Upstream::start("cell-1", "bad").await;
        let extra = r#"
[upstream.outlier]
consecutive_failures = 3
base_ejection = "1s"
max_ejection = "4s"
"#;
        let h = start(
            extra,
            &[("cell-1", urls(&[&good, &bad]))],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;
        assert_eq!(spread(&h, "acme", 2).await.len(), 2);

        bad.kill().await;
        // Every request succeeds: one that began at the dead address was never sent there, so
        // it moved to the good one. Three of those ejected the dead address.
        let by = spread(&h, "acme", 30).await;
        assert_eq!(by.get("good"), Some(&30), "{by:?}");
        let m = common::limits::metrics(&h).await;
        let bad_labels = [("target", bad.url()), ("address", bad.addr.to_string())];
        let bad_labels: Vec<(&str, &str)> = bad_labels.iter().map(|(k, v)| (*k, &**v)).collect();
        let sum = |name: &str, labels: &[(&str, &str)]| common::limits::sum(&m, name, labels);
        assert_eq!(
            sum("cellgate_endpoint_ejections_total", &bad_labels),
            1.0,
            "{m}"
        );
        assert_eq!(
            sum(
                "cellgate_retries_total",
                &[("cell", "cell-1"), ("result", "sent")]
            ),
            3.0,
            "one retry per refused connect, none once ejected: {m}"
        );
        // Usually `connect`; `protocol` when a pooled connection died under the request.
        assert_eq!(
            sum("cellgate_upstream_errors_total", &[("cell", "cell-1")]),
            3.0,
            "{m}"
        );
        assert!(flag(
            &admin_address(&h, "cell-1", bad.addr).await,
            "ejected"
        ));

        bad.revive().await;
        eventually(
            Duration::from_secs(5),
            "the revived address serves again",
            || async { served_by(&get(&h, "acme").await) == "bad" },
        )
        .await;
        let a = admin_address(&h, "cell-1", bad.addr).await;
        assert!(flag(&a, "healthy") && !flag(&a, "ejected"), "{a}");
        h.shutdown().await;
    })
    .await;
}

// 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_take_an_address_out_and_passing_ones_bring_it_back() {
    within(async {
        let a1 = Upstream::start("cell-1", "a1").await;
        let a2 = Upstream::start("cell-1", "a2").await;
        // Passive ejection off: only the checks decide.
        let extra = r#"
[upstream.health_check]
path = "/healthz"
interval = "100ms"
timeout = "100ms"
healthy_threshold = 3
unhealthy_threshold = 2

[upstream.outlier]
consecutive_failures = 0
"#;
        let h = start(
            extra,
            &[("cell-1", urls(&[&a1, &a2]))],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;
        eventually(Duration::from_secs(3), "both addresses checked", || async {
            a1.checks() >= 1 && a2.checks() >= 1
        })
        .await;
        for u in [&a1, &a2] {
            let a = admin_address(&h, "cell-1", u.addr).await;
            assert!(flag(&a, "healthy") && !flag(&a, "failing_checks"), "{a}");
        }

        let checks = a2.checks();
        a2.set_health(500);
        eventually(
            Duration::from_secs(2),
            "a2 out of rotation within a few intervals",
            || async {
                flag(
                    &admin_address(&h, "cell-1", a2.addr).await,
                    "failing_checks",
                )
            },
        )
        .await;
        assert!(
            a2.checks() - checks >= 2,
            "out after {} failed checks; unhealthy_threshold is 2",
            a2.checks() - checks
        );
        let a = admin_address(&h, "cell-1", a2.addr).await;
        assert!(!flag(&a, "healthy") && !flag(&a, "ejected"), "{a}");
        let cell = admin_cell(&h, "cell-1").await;
        assert!(flag(&cell, "healthy"), "{cell}");
        assert_eq!(cell["groups"][0]["healthy_addresses"], 1, "{cell}");
        assert_eq!(cell["groups"][0]["share_percent"], 100.0, "{cell}");
        eventually(Duration::from_secs(1), "endpoint_healthy 0", || async {
            endpoint_healthy(&h, &a2).await == 0.0
        })
        .await;
        assert_eq!(endpoint_healthy(&h, &a1).await, 1.0);
        assert!(
            metric(
                &h,
                "cellgate_health_checks_total",
                &[("target", &a2.url()), ("result", "fail")]
            )
            .await
                >= 2.0
        );
        // A reload keeps it out (its checks are not started over).
        new_generation(&h, "cell-1", urls(&[&a1, &a2])).await;
        let before = a2.requests();
        assert_eq!(spread(&h, "acme", 20).await.get("a1"), Some(&20));
        assert_eq!(
            a2.requests(),
            before,
            "an address failing checks got requests"
        );

        let checks = a2.checks();
        a2.set_health(200);
        eventually(Duration::from_secs(3), "a2 back in rotation", || async {
            !flag(
                &admin_address(&h, "cell-1", a2.addr).await,
                "failing_checks",
            )
        })
        .await;
        assert!(
            a2.checks() - checks >= 3,
            "back after {} passing checks; healthy_threshold is 3",
            a2.checks() - checks
        );
        eventually(Duration::from_secs(1), "endpoint_healthy 1", || async {
            endpoint_healthy(&h, &a2).await == 1.0
        })
        .await;
        assert_eq!(spread(&h, "acme", 4).await.get("a2"), Some(&2));
        h.shutdown().await;
    })
    .await;
}

// 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cell_fails_fast_and_no_request_of_another_cell_fails_or_crosses() {
    within(async {
        let mut servers: HashMap<&str, [Arc<Upstream>; 2]> = HashMap::new();
        for cell in ["a", "b", "c"] {
            servers.insert(
                cell,
                [
                    Upstream::start(cell, &format!("{cell}-1")).await,
                    Upstream::start(cell, &format!("{cell}-2")).await,
                ],
            );
        }
        let tenants: Vec<(String, &str)> = ["a", "b", "c"]
            .iter()
            .flat_map(|c| (1..=3).map(move |i| (format!("{c}{i}"), *c)))
            .collect();
        let records: Vec<(&str, &str, &str)> = tenants
            .iter()
            .map(|(t, c)| (t.as_str(), *c, "ACTIVE"))
            .collect();
        let cells: Vec<(&str, Vec<String>)> = ["a", "b", "c"]
            .iter()
            .map(|c| (*c, urls(&[&servers[c][0], &servers[c][1]])))
            .collect();
        // connect_timeout is 500ms (base config); outlier ejection off: the checks detect.
        let extra = r#"
[upstream.health_check]
path = "/healthz"
interval = "100ms"
timeout = "100ms"
healthy_threshold = 2
unhealthy_threshold = 2

[upstream.outlier]
consecutive_failures = 0
"#;
        let h = Arc::new(start(extra, &cells, &records).await);
        eventually(Duration::from_secs(3), "every address checked", || async {
            servers.values().flatten().all(|u| u.checks() >= 1)
        })
        .await;
        for (t, c) in &tenants {
            let r = get(&h, t).await;
            assert_eq!(r.status, StatusCode::OK, "{t}: {}", r.body);
            assert_eq!(
                (r.json()["cell"].as_str(), r.json()["tenant"].as_str()),
                (Some(*c), Some(t.as_str()))
            );
        }

        // The tenants of a and c send all through b's failure and its detection.
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
            let others: Vec<(String, &'static str)> = tenants
                .iter()
                .filter(|(_, c)| *c != "b")
                .map(|(t, c)| (t.clone(), if *c == "a" { "a" } else { "c" }))
                .collect();
            tokio::spawn(async move {
                let mut sent: HashMap<&str, u64> = HashMap::new();
                let mut wrong = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    for (t, c) in &others {
                        let r = get(&h, t).await;
                        *sent.entry(c).or_insert(0) += 1;
                        let ok = r.status == StatusCode::OK
                            && r.json()["cell"] == *c
                            && r.json()["tenant"] == t.as_str();
                        if !ok {
                            wrong.push(format!("{t}: {} {}", r.status, r.body));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (sent, wrong)
            })
        };

        // b dies: b-1's process is gone (connects refused), b-2's host stops answering (a
        // connect hangs until connect_timeout), so an attempt on b-2 would be slow to fail.
        let [b1, b2] = &servers["b"];
        b1.kill().await;
        b2.kill().await;
        let _hole = Blackhole::on(b2.addr);
        eventually(
            Duration::from_secs(3),
            "cell b marked unhealthy",
            || async { !flag(&admin_cell(&h, "b").await, "healthy") },
        )
        .await;
        let b = admin_cell(&h, "b").await;
        assert_eq!(b["groups"][0]["healthy_addresses"], 0, "{b}");
        for u in [b1, b2] {
            let a = admin_address(&h, "b", u.addr).await;
            assert!(flag(&a, "failing_checks") && !flag(&a, "healthy"), "{a}");
        }
        for c in ["a", "c"] {
            assert!(flag(&admin_cell(&h, c).await, "healthy"), "cell {c}");
        }

        let b_metrics = || async {
            (
                metric(&h, "cellgate_upstream_errors_total", &[("cell", "b")]).await,
                metric(&h, "cellgate_upstream_connects_total", &[("cell", "b")]).await,
            )
        };
        let before = b_metrics().await;
        let mut slowest = Duration::ZERO;
        for (t, c) in tenants.iter().filter(|(_, c)| *c == "b") {
            for _ in 0..5 {
                let started = Instant::now();
                let r = get(&h, t).await;
                slowest = slowest.max(started.elapsed());
                refusal(
                    &r,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_healthy_target",
                    Some(c),
                );
            }
        }
        assert!(
            slowest < Duration::from_millis(250),
            "a no_healthy_target answer took {slowest:?}; connect_timeout is 500ms"
        );
        assert_eq!(
            b_metrics().await,
            before,
            "no connection was attempted to the dead cell (errors, connects)"
        );
        assert_eq!(
            metric(
                &h,
                "cellgate_http_requests_total",
                &[("cell", "b"), ("outcome", "cell_unavailable")]
            )
            .await,
            15.0
        );

        // Let the others run a little longer with b known dead, then check them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::SeqCst);
        let (sent, wrong) = load.await.unwrap();
        assert!(
            wrong.is_empty(),
            "{} failed or crossed: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        assert!(
            sent["a"] >= 30 && sent["c"] >= 30,
            "too little traffic: {sent:?}"
        );
        // What each cell's servers received is exactly what its own tenants sent (3 each
        // before the failure): nothing crossed, nothing was retried elsewhere.
        for c in ["a", "c"] {
            let got: u64 = servers[c].iter().map(|u| u.requests()).sum();
            assert_eq!(got, 3 + sent[c], "cell {c}");
        }
        assert_eq!(servers["b"].iter().map(|u| u.requests()).sum::<u64>(), 3);

        // b-1 comes back: after healthy_threshold passes, b's tenants are served again (by
        // b-1 only: b-2 is still dark).
        b1.revive().await;
        eventually(Duration::from_secs(3), "cell b healthy again", || async {
            flag(&admin_cell(&h, "b").await, "healthy")
        })
        .await;
        for (t, _) in tenants.iter().filter(|(_, c)| *c == "b") {
            assert_eq!(served_by(&get(&h, t).await), "b-1");
        }
        Arc::try_unwrap(h).ok().unwrap().shutdown().await;
    })
    .await;
}

// 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_of_a_cell_that_always_fails() {
    within(async {
        let mut ups = Vec::new();
        for i in 1..=3 {
            let u = Upstream::start("f", &format!("f-{i}")).await;
            u.set_status(503);
            ups.push(u);
        }
        // No ejection (it would stop the attempts for other reasons), no floor of retries per
        // second: only the ratio decides.
        let extra = r#"
[upstream.outlier]
consecutive_failures = 0

[upstream.retry]
max_attempts = 3
idempotent = true
budget_ratio = 0.2
budget_min_per_second = 0
"#;
        let h = start(
            extra,
            &[("f", urls(&ups.iter().collect::<Vec<_>>()))],
            &[("acme", "f", "ACTIVE")],
        )
        .await;
        const N: u64 = 300;
        for _ in 0..N {
            let r = get(&h, "acme").await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
            assert_eq!(r.json()["cell"], "f", "the target's own 503: {}", r.body);
        }
        let attempts: u64 = ups.iter().map(|u| u.requests()).sum();
        let sent = metric(
            &h,
            "cellgate_retries_total",
            &[("cell", "f"), ("result", "sent")],
        )
        .await;
        let refused = metric(
            &h,
            "cellgate_retries_total",
            &[("cell", "f"), ("result", "budget_exhausted")],
        )
        .await;
        assert_eq!(
            attempts as f64,
            N as f64 + sent,
            "every retry sent reached a target"
        );
        // 20% of 300 requests in the 10 s window: 60 retries. Slack of 3: the budget's
        // one-second buckets can lose a count at a second's edge, and this loop spans at most
        // a few seconds.
        let limit = N as f64 * 1.2 + 3.0;
        assert!(
            attempts as f64 <= limit,
            "{attempts} attempts for {N} requests (limit {limit}); {sent} retries"
        );
        assert!(
            sent >= N as f64 * 0.2 - 3.0,
            "the budget was not used: {sent} retries"
        );
        assert!(refused > 0.0, "no retry was refused by the budget");
        h.shutdown().await;
    })
    .await;
}

// 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_retried_for_gets_only_and_refused_connects_for_any_method() {
    within(async {
        let good = Upstream::start("cell-1", "good").await;
        let bad = Upstream::start("cell-1", "bad").await;
        bad.set_status(503);
        let h = start(
            "[upstream.outlier]\nconsecutive_failures = 0\n[upstream.retry]\nidempotent = true\n",
            &[("cell-1", urls(&[&good, &bad]))],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;
        let sent = || async {
            metric(
                &h,
                "cellgate_retries_total",
                &[("cell", "cell-1"), ("result", "sent")],
            )
            .await
        };

        // GET: the 503 is replayed on the good target.
        let b0 = bad.requests();
        assert_eq!(spread(&h, "acme", 10).await.get("good"), Some(&10));
        let hit = bad.requests() - b0;
        assert!(hit >= 1, "round robin never started at the bad target");
        assert_eq!(
            sent().await,
            hit as f64,
            "one retry per GET that hit the 503"
        );

        // POST with a body: sent once, its 503 answered as is.
        let body = vec![b'p'; 1000];
        let (b0, g0, s0) = (bad.requests(), good.requests(), sent().await);
        let mut refused = 0;
        for _ in 0..10 {
            let r = post(&h, "acme", &body).await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(r.json()["target"], "bad", "{}", r.body);
                refused += 1;
            } else {
                assert_eq!(served_by(&r), "good");
                assert_eq!(r.json()["request_bytes"], 1000);
            }
        }
        assert!(
            refused >= 1,
            "round robin never started a POST at the bad target"
        );
        assert_eq!(
            bad.requests() - b0,
            refused,
            "a POST was replayed on the bad target"
        );
        assert_eq!(
            good.requests() - g0,
            10 - refused,
            "a POST hit both targets"
        );
        assert_eq!(sent().await, s0, "a POST was retried");

        // A refused connect: nothing was sent, so even a POST moves on, body intact.
        bad.kill().await;
        let (g0, s0) = (good.requests(), sent().await);
        for _ in 0..10 {
            let r = post(&h, "acme", &body).await;
            assert_eq!(served_by(&r), "good");
            assert_eq!(r.json()["request_bytes"], 1000, "{}", r.body);
        }
        assert_eq!(good.requests() - g0, 10);
        assert!(
            sent().await - s0 >= 1.0,
            "no POST was retried after a refused connect"
        );
        h.shutdown().await;
    })
    .await;
}

/// Replaying a request after it was sent is opt-in (`upstream.retry.idempotent`): by default a
/// GET that met a 503 gets that 503, and only refused connects move on.
#[tokio::test]
async fn gateway_errors_are_not_replayed_by_default() {
    within(async {
        let good = Upstream::start("cell-1", "good").await;
        let bad = Upstream::start("cell-1", "bad").await;
        bad.set_status(503);
        let h = start(
            "[upstream.outlier]\nconsecutive_failures = 0\n",
            &[("cell-1", urls(&[&good, &bad]))],
            &[("acme", "cell-1", "ACTIVE")],
        )
        .await;
        let mut refused = 0;
        for _ in 0..10 {
            let r = get(&h, "acme").await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(r.json()["target"], "bad", "{}", r.body);
                refused += 1;
            } else {
                assert_eq!(served_by(&r), "good");
            }
        }
        assert!(refused >= 1, "round robin never started at the bad target");
        assert_eq!(bad.requests(), refused, "a GET was replayed");
        h.shutdown().await;
    })
    .await;
}

/// The same over HTTP/2: two tenants' streams share one client connection; only the moved
/// tenant's stream ends, and the connection and the neighbour's stream go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_ends_when_its_tenant_moves_and_its_neighbour_on_the_connection_goes_on() {
    within(async {
        let s1 = Upstream::start("cell-1", "s1").await;
        let s2 = Upstream::start("cell-2", "s2").await;
        let (h, list) = two_cells(&s1, &s2).await;
        let mut conn = h.h2().await;
        let open = |tenant: &str| {
            Request::get("/stream?chunks=100&every_ms=100")
                .header("host", host(tenant))
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let mover = conn.send_request(open("mover")).await.unwrap();
        let stayer = conn.send_request(open("stayer")).await.unwrap();
        assert_eq!(
            (mover.status(), stayer.status()),
            (StatusCode::OK, StatusCode::OK)
        );
        let mut mover = mover.into_body();
        let mut stayer = stayer.into_body();
        assert!(chunk(&mut mover).await.starts_with("s1 tick"));
        assert!(chunk(&mut stayer).await.starts_with("s1 tick"));

        h.write_registry(&registry(
            &list,
            &[
                ("mover", "cell-2", "ACTIVE"),
                ("stayer", "cell-1", "ACTIVE"),
            ],
        ));
        tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(frame) = mover.frame().await {
                frame.expect("the stream failed instead of ending cleanly");
            }
        })
        .await
        .expect("the moved tenant's HTTP/2 stream still open 3s after the move");
        for _ in 0..3 {
            assert!(chunk(&mut stayer).await.starts_with("s1 tick"));
        }
        // The connection itself still carries new requests, now to the new cell.
        let again = conn.send_request(open("mover")).await.unwrap();
        assert!(chunk(&mut again.into_body()).await.starts_with("s2 tick"));
        drop(stayer);
        h.shutdown().await;
    })
    .await;
}

/// Writes `payload` into the tunnel and reads the same bytes back.
async fn echo(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("no echo within 5s")
        .unwrap();
    assert_eq!(back, payload);
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Two cells of one upstream each; `mover` and `stayer` in `cell-1`.
async fn two_cells(
    c1: &Arc<Upstream>,
    c2: &Arc<Upstream>,
) -> (Harness, Vec<(String, Vec<String>)>) {
    let list = vec![
        ("cell-1".to_owned(), vec![c1.url()]),
        ("cell-2".to_owned(), vec![c2.url()]),
    ];
    let h = start(
        "",
        &[("cell-1", vec![c1.url()]), ("cell-2", vec![c2.url()])],
        &[
            ("mover", "cell-1", "ACTIVE"),
            ("stayer", "cell-1", "ACTIVE"),
        ],
    )
    .await;
    (h, list)
}

// 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echoes_and_closes_when_its_tenant_moves() {
    within(async {
        let w1 = Upstream::start("cell-1", "w1").await;
        let w2 = Upstream::start("cell-2", "w2").await;
        let (h, list) = two_cells(&w1, &w2).await;
        let (mut mover, head) = h.websocket("mover.app.test").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("x-target: w1"), "{head}");
        let (mut stayer, head) = h.websocket("stayer.app.test").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        echo(&mut mover, &pattern(64 << 10, 1)).await;
        echo(&mut stayer, &pattern(4096, 2)).await;
        let open = w1.open_connections();

        h.write_registry(&registry(
            &list,
            &[
                ("mover", "cell-2", "ACTIVE"),
                ("stayer", "cell-1", "ACTIVE"),
            ],
        ));
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(3), mover.read(&mut buf))
            .await
            .expect("the moved tenant's WebSocket is still open 3s after the move")
            .expect("closed with an error instead of an end of stream");
        assert_eq!(n, 0, "bytes after the move");
        eventually(
            Duration::from_secs(3),
            "the cell's side of the tunnel closed",
            || async { w1.open_connections() == open - 1 },
        )
        .await;

        // The neighbour that did not move keeps its tunnel.
        echo(&mut stayer, &pattern(4096, 3)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        echo(&mut stayer, b"still here").await;
        // The mover reconnects, and lands in its new cell.
        let (mut again, head) = h.websocket("mover.app.test").await;
        assert!(head.contains("x-target: w2"), "{head}");
        echo(&mut again, b"hello from cell-2").await;
        drop((stayer, again));
        h.shutdown().await;
    })
    .await;
}

/// `GET /stream` for `tenant` on its own connection: the sender (kept so the connection
/// stays) and the response.
async fn open_stream(
    h: &Harness,
    tenant: &str,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    http::Response<Incoming>,
) {
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // 100 chunks, one every 100ms: ten seconds unless something ends it.
    let req = Request::get("/stream?chunks=100&every_ms=100")
        .header("host", host(tenant))
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    (sender, resp)
}

/// The next chunk of a streamed body (which must not end).
async fn chunk(body: &mut Incoming) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("no chunk within 2s")
            .expect("the stream ended")
            .expect("the stream failed");
        if let Ok(data) = frame.into_data() {
            return String::from_utf8_lossy(&data).into_owned();
        }
    }
}

// 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_ends_when_its_tenant_moves() {
    within(async {
        let s1 = Upstream::start("cell-1", "s1").await;
        let s2 = Upstream::start("cell-2", "s2").await;
        let (h, list) = two_cells(&s1, &s2).await;
        let (_m, mover) = open_stream(&h, "mover").await;
        let (_s, stayer) = open_stream(&h, "stayer").await;
        for r in [&mover, &stayer] {
            assert!(
                !r.headers().contains_key("content-length"),
                "{:?}",
                r.headers()
            );
            assert_eq!(r.headers()["transfer-encoding"], "chunked");
        }
        let mut mover = mover.into_body();
        let mut stayer = stayer.into_body();
        assert!(chunk(&mut mover).await.starts_with("s1 tick"));
        assert!(chunk(&mut stayer).await.starts_with("s1 tick"));

        h.write_registry(&registry(
            &list,
            &[
                ("mover", "cell-2", "ACTIVE"),
                ("stayer", "cell-1", "ACTIVE"),
            ],
        ));
        // Unmoved, it would run ten more seconds.
        let after = tokio::time::timeout(Duration::from_secs(3), async {
            let mut after = 0;
            while let Some(frame) = mover.frame().await {
                if let Err(e) = frame {
                    panic!("the stream failed instead of ending cleanly: {e}");
                }
                after += 1;
            }
            after
        })
        .await
        .expect("the moved tenant's stream still open 3s after the move");
        assert!(after < 30, "{after} chunks after the move");
        // The neighbour keeps streaming from the same cell.
        for _ in 0..3 {
            assert!(chunk(&mut stayer).await.starts_with("s1 tick"));
        }
        drop((mover, stayer));
        h.shutdown().await;
    })
    .await;
}

// 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_from_a_migrating_tenant_is_refused() {
    within(async {
        let u = Upstream::start("cell-1", "u1").await;
        let h = start(
            "",
            &[("cell-1", vec![u.url()])],
            &[
                ("moving", "cell-1", "MIGRATING"),
                ("calm", "cell-1", "ACTIVE"),
            ],
        )
        .await;
        let (mut s, head) = h.websocket("moving.app.test").await;
        assert!(head.starts_with("http/1.1 503"), "{head}");
        assert!(head.contains("retry-after: 5"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "tenant_migrating", "{v}");
        assert_eq!(v["cell"], "cell-1", "{v}");
        assert_eq!(u.requests(), 0, "the upgrade reached the cell");
        // A read of the migrating tenant still passes; an active tenant's upgrade too.
        assert_eq!(served_by(&get(&h, "moving").await), "u1");
        let (mut ws, head) = h.websocket("calm.app.test").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        echo(&mut ws, b"calm").await;
        // When that tenant starts migrating too, its open WebSocket is closed: a two-way
        // channel counts as a write, and writes are frozen.
        h.write_registry(&registry(
            &[("cell-1".to_owned(), vec![u.url()])],
            &[
                ("moving", "cell-1", "MIGRATING"),
                ("calm", "cell-1", "MIGRATING"),
            ],
        ));
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(3), ws.read(&mut buf))
            .await
            .expect("a migrating tenant's WebSocket still open 3s later")
            .unwrap();
        assert_eq!(n, 0);
        drop((s, ws));
        h.shutdown().await;
    })
    .await;
}

/// Moves `mover` to `cell-2` while `up` (cell-1) holds the answer to the request just sent to
/// it; returns once the proxy uses the new generation, before that answer.
async fn move_while_answering(h: &Harness, up: &Upstream, list: &[(String, Vec<String>)]) {
    eventually(
        Duration::from_secs(2),
        "the request reached cell-1",
        || async { up.requests() == 1 },
    )
    .await;
    let reached = Instant::now();
    h.write_registry(&registry(
        list,
        &[
            ("mover", "cell-2", "ACTIVE"),
            ("stayer", "cell-1", "ACTIVE"),
        ],
    ));
    eventually(Duration::from_secs(1), "the move in use", || async {
        h.admin_get("/admin/tenants/mover").await.unwrap().json()["cell"] == "cell-2"
    })
    .await;
    assert!(
        reached.elapsed() < Duration::from_millis(700),
        "the move must land while cell-1 still holds its answer (1s)"
    );
}

// 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_opened_while_its_tenant_moves_is_closed_too() {
    within(async {
        let w1 = Upstream::start("cell-1", "w1").await;
        let w2 = Upstream::start("cell-2", "w2").await;
        let (h, list) = two_cells(&w1, &w2).await;
        w1.set_delay(Duration::from_secs(1));
        let ((mut ws, head), ()) = tokio::join!(
            h.websocket("mover.app.test"),
            move_while_answering(&h, &w1, &list)
        );
        // Routed before the move, opened after it: a tunnel to a cell that no longer serves
        // its tenant, which must close like the ones open at the move.
        assert!(
            head.starts_with("http/1.1 101") && head.contains("x-target: w1"),
            "{head}"
        );
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(3), ws.read(&mut buf))
            .await
            .expect("a WebSocket opened to the old cell during the move is still open 3s later")
            .unwrap();
        assert_eq!(n, 0);
        drop(ws);
        h.shutdown().await;
    })
    .await;
}

// 11.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_while_its_tenant_moves_ends_too() {
    within(async {
        let s1 = Upstream::start("cell-1", "s1").await;
        let s2 = Upstream::start("cell-2", "s2").await;
        let (h, list) = two_cells(&s1, &s2).await;
        s1.set_delay(Duration::from_secs(1));
        let ((_sender, resp), ()) = tokio::join!(
            open_stream(&h, "mover"),
            move_while_answering(&h, &s1, &list)
        );
        let mut body = resp.into_body();
        let ended = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(frame) = body.frame().await {
                frame.unwrap();
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "a stream started from the old cell during the move still runs 3s later"
        );
        drop(body);
        h.shutdown().await;
    })
    .await;
}
