//! End-to-end behaviour of the *admit* stage, over real sockets in front of real echo cells:
//! a tenant over its tier's rate gets a 429 in the proxy's own JSON with `Retry-After` and
//! `RateLimit-Policy`/`RateLimit` headers while a neighbour in the same tier and cell is not
//! touched; a registry override wins over the tier and follows a registry reload; a cell's
//! in-flight cap sheds with a 503 naming the cell without touching other cells; a route class
//! limits only its requests and a refusal by it costs the tenant nothing; rejection metrics count
//! exactly the refusals made and never carry a tenant id; a record naming an unconfigured tier
//! gets `default_tier`'s limits; disguised paths do not slip past a route class; and the
//! background sweep forgets idle state. How an in-flight limit gives its places back is in
//! `tests/limits_release.rs`; the helpers both share are in `tests/common/limits.rs`.
//!
//! Rates are chosen slow (one request per 10 s) so that no refill can happen during a test and
//! the numbers admitted are exact, not "about"; the one test at 1/s (to check the headers of a
//! whole-second policy) allows one more admission per whole second its loop took. Nothing
//! asserts on latency: waits are bounded polls on the cell's in-flight gauge, and a request held
//! at a cell sleeps longer than the polls made while it is held.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::limits::{
    Tenant, from_cell, get, header, host, metrics, post, refusal, registry_text, start, sum,
    tenant, wait_in_flight, within,
};
use common::{Reply, cell_list};
use http::StatusCode;
use http_body_util::Full;

// 1. Property: a tenant over its tier's rate gets exactly `burst` admitted, then the proxy's own
// 429 (JSON without a cell, request id, Retry-After, RateLimit-Policy and RateLimit); a tenant
// of the same tier in the same cell keeps its own full burst; refusals never reach the cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_rate_tenant_gets_429_and_its_neighbour_in_the_same_cell_does_not() {
    within(async {
        let limits = "[limits]\n[limits.tiers.standard]\nrate = 1\nburst = 5\n";
        let h = start(
            limits,
            &[],
            &[],
            &[
                tenant("noisy", "cell-1", Some("standard")),
                tenant("quiet", "cell-1", Some("standard")),
            ],
        )
        .await;

        let started = Instant::now();
        let mut noisy = Vec::new();
        let mut quiet = Vec::new();
        for i in 0..9 {
            noisy.push(get(&h, "noisy", "/").await);
            if i < 5 {
                quiet.push(get(&h, "quiet", "/").await);
            }
        }
        // The client's chosen request id is the one a refusal carries.
        let req = h
            .request(&host("noisy"), "/")
            .header("x-request-id", "limits-test-429")
            .body(Full::default())
            .unwrap();
        noisy.push(h.send(req).await);
        let elapsed = started.elapsed();

        // 1 request/s: a refill can only have happened if the loop took a whole second.
        let refills = elapsed.as_secs() as usize;
        let admitted = noisy.iter().filter(|r| r.status == StatusCode::OK).count();
        assert!(
            (5..=5 + refills).contains(&admitted),
            "burst 5 admitted {admitted} in {elapsed:?}"
        );
        for r in &noisy[..5] {
            from_cell(r, "noisy", "cell-1");
        }
        let refused: Vec<&Reply> = noisy
            .iter()
            .filter(|r| r.status != StatusCode::OK)
            .collect();
        assert_eq!(refused.len(), noisy.len() - admitted);
        for r in &refused {
            let retry = refusal(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
            // At 1/s the next request is at most one interval away.
            assert_eq!(retry, 1, "retry-after");
            assert_eq!(header(r, "ratelimit-policy"), Some("\"standard\";q=1;w=1"));
            assert_eq!(header(r, "ratelimit"), Some("\"standard\";r=0;t=1"));
        }
        let last = noisy.last().unwrap();
        assert_eq!(header(last, "x-request-id"), Some("limits-test-429"));
        if refills == 0 {
            assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
        }
        if last.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(last.json()["request_id"], "limits-test-429");
        }

        // The neighbour: same tier, same cell, its own full burst.
        for r in &quiet {
            from_cell(r, "quiet", "cell-1");
        }

        // Only admitted requests reached the cell: one upstream response each.
        let m = metrics(&h).await;
        let routed = (admitted + quiet.len()) as f64;
        let cell1 = [("cell", "cell-1")];
        assert_eq!(
            sum(&m, "cellgate_upstream_response_seconds_count", &cell1),
            routed,
            "{m}"
        );
        assert_eq!(
            sum(
                &m,
                "cellgate_http_requests_total",
                &[("cell", "cell-1"), ("outcome", "routed")]
            ),
            routed
        );
        assert_eq!(
            sum(
                &m,
                "cellgate_http_requests_total",
                &[
                    ("cell", "cell-1"),
                    ("outcome", "rate_limited"),
                    ("status_class", "4xx")
                ]
            ),
            refused.len() as f64
        );
        assert_eq!(
            sum(
                &m,
                "cellgate_ratelimit_rejections_total",
                &[("tier", "standard"), ("cell", "cell-1"), ("limit", "rate")]
            ),
            refused.len() as f64
        );
        h.shutdown().await;
    })
    .await;
}

// 2. Property: a record's `[tenants.limits]` wins over its tier's; rewriting the registry
// changes the tenant's limit without a restart, and what was already spent stays spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_override_wins_over_the_tier_and_follows_a_reload() {
    within(async {
        // One request per 10 s: nothing refills during the test.
        let limits = "[limits]\n[limits.tiers.standard]\nrate = 0.1\nburst = 5\n";
        let overridden = |limits: &'static str, version: u64| Tenant {
            limits: Some(limits),
            version,
            ..tenant("capped", "cell-1", Some("standard"))
        };
        let plain = tenant("plain", "cell-1", Some("standard"));
        let h = start(limits, &[], &[], &[overridden("burst = 2", 1), plain]).await;

        let count = |rs: &[Reply]| rs.iter().filter(|r| r.status == StatusCode::OK).count();
        let mut capped = Vec::new();
        for _ in 0..4 {
            capped.push(get(&h, "capped", "/").await);
        }
        assert_eq!(
            count(&capped),
            2,
            "the override's burst of 2, not the tier's 5"
        );
        assert!(capped[..2].iter().all(|r| r.status == StatusCode::OK));
        for r in &capped[2..] {
            let retry = refusal(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
            assert!((1..=10).contains(&retry), "retry-after {retry}");
            // The override changed the burst only: the policy is still the tier's rate.
            assert_eq!(header(r, "ratelimit-policy"), Some("\"standard\";q=1;w=10"));
        }
        let mut plain = Vec::new();
        for _ in 0..6 {
            plain.push(get(&h, "plain", "/").await);
        }
        assert_eq!(
            count(&plain),
            5,
            "the tier's burst of 5 for a record without overrides"
        );
        assert_eq!(plain[5].status, StatusCode::TOO_MANY_REQUESTS);

        // Raise the override to a burst of 6 and wait until the proxy holds the new record.
        let text = registry_text(
            &cell_list(&h.cells),
            &[],
            &[
                overridden("burst = 6", 2),
                tenant("plain", "cell-1", Some("standard")),
            ],
        );
        h.write_registry(&text);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = h.admin_get("/admin/tenants/capped").await.unwrap();
            if r.status == StatusCode::OK && r.json()["version"] == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "registry change not loaded: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The bucket is now 6 deep and 2 of it were spent: exactly 4 more.
        let mut after = Vec::new();
        for _ in 0..6 {
            after.push(get(&h, "capped", "/").await);
        }
        assert_eq!(count(&after), 4, "burst 6 minus the 2 already spent");
        assert!(after[..4].iter().all(|r| r.status == StatusCode::OK));
        for r in &after[4..] {
            refusal(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
        }
        // The tenant beside it is unchanged.
        let r = get(&h, "plain", "/").await;
        refusal(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
        h.shutdown().await;
    })
    .await;
}

// 6. Property: a cell's `max_in_flight` (registry) sheds the request over it with 503
// `cell_overloaded` naming the cell, whichever tenant sends it; `limits.cell_max_in_flight` is
// the default for cells without their own cap; other cells are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cell_cap_sheds_with_503_naming_the_cell_and_spares_other_cells() {
    within(async {
        let limits = "[limits]\ncell_max_in_flight = 1\n\
                      [limits.tiers.standard]\nrate = 1000\nburst = 1000\nconcurrency = 100\n";
        let h = start(
            limits,
            &[],
            &[("cell-1", 2)],
            &[
                tenant("one", "cell-1", None),
                tenant("two", "cell-1", None),
                tenant("three", "cell-2", None),
                tenant("four", "cell-3", None),
            ],
        )
        .await;

        let (a, b, c, shed) = tokio::join!(
            get(&h, "one", "/?sleep_ms=3000"),
            get(&h, "one", "/?sleep_ms=3000"),
            get(&h, "three", "/?sleep_ms=3000"),
            async {
                wait_in_flight(&h, "cell-1", 2.0, Duration::from_secs(2)).await;
                wait_in_flight(&h, "cell-2", 1.0, Duration::from_millis(500)).await;
                // The other tenant of the full cell is shed too: the cap is the cell's.
                let two = get(&h, "two", "/").await;
                let one = get(&h, "one", "/").await;
                // cell-2 has no cap of its own: the default of 1 applies.
                let three = get(&h, "three", "/").await;
                // cell-3 is empty: unaffected.
                let four = get(&h, "four", "/").await;
                (two, one, three, four)
            }
        );
        from_cell(&a, "one", "cell-1");
        from_cell(&b, "one", "cell-1");
        from_cell(&c, "three", "cell-2");
        let (two, one, three, four) = shed;
        for (r, cell) in [(&two, "cell-1"), (&one, "cell-1"), (&three, "cell-2")] {
            let retry = refusal(
                r,
                StatusCode::SERVICE_UNAVAILABLE,
                "cell_overloaded",
                Some(cell),
            );
            assert_eq!(retry, 1);
        }
        from_cell(&four, "four", "cell-3");

        // The slow ones are done: the cells admit again.
        from_cell(&get(&h, "two", "/").await, "two", "cell-1");
        from_cell(&get(&h, "three", "/").await, "three", "cell-2");

        let m = metrics(&h).await;
        let outcome = |cell| {
            sum(
                &m,
                "cellgate_http_requests_total",
                &[
                    ("cell", cell),
                    ("outcome", "cell_overloaded"),
                    ("status_class", "5xx"),
                ],
            )
        };
        assert_eq!(outcome("cell-1"), 2.0, "{m}");
        assert_eq!(outcome("cell-2"), 1.0);
        assert_eq!(outcome("cell-3"), 0.0);
        // A cell's cap is not a tenant's limit.
        assert_eq!(sum(&m, "cellgate_ratelimit_rejections_total", &[]), 0.0);
        for cell in ["cell-1", "cell-2", "cell-3"] {
            assert_eq!(
                sum(&m, "cellgate_cell_in_flight", &[("cell", cell)]),
                0.0,
                "{cell}"
            );
        }
        h.shutdown().await;
    })
    .await;
}

// 7. Property: a route class limits only the requests it matches (here POST), per tenant, and
// names itself in the RateLimit headers; a request it refuses costs the tenant nothing against
// its tier's rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_class_limits_writes_and_leaves_reads_alone() {
    within(async {
        let limits = r#"
[limits]
[limits.tiers.standard]
rate = 1000
burst = 1000
[limits.tiers.small]
rate = 0.1
burst = 3
[[limits.routes]]
name = "writes"
methods = ["POST"]
rate = 1
burst = 1
"#;
        let h = start(
            limits,
            &[],
            &[],
            &[
                tenant("writer", "cell-1", None),
                tenant("other", "cell-1", None),
                tenant("frugal", "cell-2", Some("small")),
            ],
        )
        .await;

        let first = post(&h, "writer", "/items").await;
        from_cell(&first, "writer", "cell-1");
        assert_eq!(first.json()["method"], "POST");
        let second = post(&h, "writer", "/items").await;
        let retry = refusal(&second, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
        assert_eq!(retry, 1);
        assert_eq!(
            header(&second, "ratelimit-policy"),
            Some("\"writes\";q=1;w=1")
        );
        assert_eq!(header(&second, "ratelimit"), Some("\"writes\";r=0;t=1"));
        // Reads are not in the class.
        for _ in 0..5 {
            from_cell(&get(&h, "writer", "/items").await, "writer", "cell-1");
        }
        // Another tenant has its own write budget.
        from_cell(&post(&h, "other", "/items").await, "other", "cell-1");

        // frugal: 3 requests per bucket in all. POST (1), a refused POST (refunded), then
        // exactly 2 more reads; without the refund only 1.
        from_cell(&post(&h, "frugal", "/").await, "frugal", "cell-2");
        let r = post(&h, "frugal", "/").await;
        refusal(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
        assert_eq!(header(&r, "ratelimit-policy"), Some("\"writes\";q=1;w=1"));
        from_cell(&get(&h, "frugal", "/").await, "frugal", "cell-2");
        from_cell(&get(&h, "frugal", "/").await, "frugal", "cell-2");
        let r = get(&h, "frugal", "/").await;
        refusal(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
        assert_eq!(header(&r, "ratelimit-policy"), Some("\"small\";q=1;w=10"));

        let m = metrics(&h).await;
        let rejected = |tier, cell, limit| {
            sum(
                &m,
                "cellgate_ratelimit_rejections_total",
                &[("tier", tier), ("cell", cell), ("limit", limit)],
            )
        };
        assert_eq!(rejected("standard", "cell-1", "route"), 1.0, "{m}");
        assert_eq!(rejected("standard", "cell-1", "rate"), 0.0);
        assert_eq!(rejected("small", "cell-2", "route"), 1.0);
        assert_eq!(rejected("small", "cell-2", "rate"), 1.0);
        h.shutdown().await;
    })
    .await;
}

// 8. Property: `cellgate_ratelimit_rejections_total{tier,cell,limit}` and
// `cellgate_http_requests_total{outcome="rate_limited"}` count exactly the refusals made, by
// tier, cell and limit; a route class restricted to some tiers leaves the others alone; no
// tenant id appears anywhere in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_metrics_count_exactly_the_refusals_and_name_no_tenant() {
    within(async {
        let limits = r#"
[limits]
[limits.tiers.standard]
rate = 0.1
burst = 2
[limits.tiers.gold]
rate = 1000
burst = 1000
concurrency = 1
[[limits.routes]]
name = "writes"
methods = ["POST"]
rate = 0.1
burst = 1
tiers = ["standard"]
"#;
        let h = start(
            limits,
            &[],
            &[],
            &[
                tenant("zq-alpha-7", "cell-1", Some("standard")),
                tenant("zq-beta-7", "cell-2", Some("gold")),
                tenant("zq-gamma-7", "cell-3", Some("standard")),
                tenant("zq-delta-7", "cell-3", Some("gold")),
            ],
        )
        .await;

        // alpha: 5 reads, burst 2: 3 rate refusals.
        let mut ok = 0;
        for _ in 0..5 {
            if get(&h, "zq-alpha-7", "/").await.status == StatusCode::OK {
                ok += 1;
            }
        }
        assert_eq!(ok, 2);
        // beta: one slow request holds its one place; 2 concurrency refusals meanwhile.
        let (slow, refused) = tokio::join!(get(&h, "zq-beta-7", "/?sleep_ms=2500"), async {
            wait_in_flight(&h, "cell-2", 1.0, Duration::from_millis(1500)).await;
            let mut n = 0;
            for _ in 0..2 {
                let r = get(&h, "zq-beta-7", "/").await;
                refusal(
                    &r,
                    StatusCode::TOO_MANY_REQUESTS,
                    "concurrency_limited",
                    None,
                );
                n += 1;
            }
            n
        });
        from_cell(&slow, "zq-beta-7", "cell-2");
        assert_eq!(refused, 2);
        // gamma: 3 writes, the class allows 1: 2 route refusals (refunded to the tier rate).
        from_cell(&post(&h, "zq-gamma-7", "/").await, "zq-gamma-7", "cell-3");
        for _ in 0..2 {
            let r = post(&h, "zq-gamma-7", "/").await;
            refusal(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
            assert_eq!(header(&r, "ratelimit-policy"), Some("\"writes\";q=1;w=10"));
        }
        // delta: gold is not in the class's tiers; its writes pass.
        for _ in 0..3 {
            from_cell(&post(&h, "zq-delta-7", "/").await, "zq-delta-7", "cell-3");
        }

        let m = metrics(&h).await;
        let rejected = |tier, cell, limit| {
            sum(
                &m,
                "cellgate_ratelimit_rejections_total",
                &[("tier", tier), ("cell", cell), ("limit", limit)],
            )
        };
        assert_eq!(rejected("standard", "cell-1", "rate"), 3.0, "{m}");
        assert_eq!(rejected("gold", "cell-2", "concurrency"), 2.0);
        assert_eq!(rejected("standard", "cell-3", "route"), 2.0);
        assert_eq!(
            sum(&m, "cellgate_ratelimit_rejections_total", &[]),
            7.0,
            "nothing else"
        );
        let limited = |cell| {
            sum(
                &m,
                "cellgate_http_requests_total",
                &[("cell", cell), ("outcome", "rate_limited")],
            )
        };
        assert_eq!(limited("cell-1"), 3.0);
        assert_eq!(limited("cell-2"), 2.0);
        assert_eq!(limited("cell-3"), 2.0);
        assert_eq!(limited("none"), 0.0);
        let routed = |cell| {
            sum(
                &m,
                "cellgate_http_requests_total",
                &[("cell", cell), ("outcome", "routed")],
            )
        };
        assert_eq!(routed("cell-1"), 2.0);
        assert_eq!(routed("cell-2"), 1.0);
        assert_eq!(routed("cell-3"), 4.0);
        for id in ["zq-alpha", "zq-beta", "zq-gamma", "zq-delta", "zq-"] {
            assert!(!m.contains(id), "tenant id {id} in /metrics:\n{m}");
        }
        h.shutdown().await;
    })
    .await;
}

// 9. Property: a record naming a tier that is not configured gets `default_tier`'s limits (and
// is counted under that tier); a record naming no tier is `standard`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tier_gets_the_default_tiers_limits() {
    within(async {
        let limits = r#"
[limits]
default_tier = "trial"
[limits.tiers.trial]
rate = 0.1
burst = 2
[limits.tiers.standard]
rate = 0.1
burst = 4
"#;
        let h = start(
            limits,
            &[],
            &[],
            &[
                tenant("mystery", "cell-1", Some("platinum")),
                tenant("nameless", "cell-2", None),
            ],
        )
        .await;

        let mut mystery = Vec::new();
        for _ in 0..4 {
            mystery.push(get(&h, "mystery", "/").await);
        }
        assert!(mystery[..2].iter().all(|r| r.status == StatusCode::OK));
        for r in &mystery[2..] {
            refusal(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
            assert_eq!(header(r, "ratelimit-policy"), Some("\"trial\";q=1;w=10"));
        }
        let mut nameless = 0;
        for _ in 0..6 {
            if get(&h, "nameless", "/").await.status == StatusCode::OK {
                nameless += 1;
            }
        }
        assert_eq!(nameless, 4, "no tier named: standard's burst");

        let m = metrics(&h).await;
        assert_eq!(
            sum(
                &m,
                "cellgate_ratelimit_rejections_total",
                &[("tier", "trial"), ("cell", "cell-1"), ("limit", "rate")]
            ),
            2.0,
            "{m}"
        );
        assert_eq!(
            sum(
                &m,
                "cellgate_ratelimit_rejections_total",
                &[("tier", "standard"), ("cell", "cell-2"), ("limit", "rate")]
            ),
            2.0
        );
        assert!(
            !m.contains("platinum"),
            "an unconfigured tier is not a label value"
        );
        h.shutdown().await;
    })
    .await;
}

// 10. Property: a route class sees through disguised paths (doubled slashes, escaped letters,
// `;` parameters, dot segments, other case): none of them gets past a class for `/api/export`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_class_matches_disguised_paths() {
    within(async {
        let limits = r#"
[limits]
[limits.tiers.standard]
rate = 1000
burst = 1000
[[limits.routes]]
name = "export"
path_prefix = "/api/export"
rate = 0.1
burst = 1
"#;
        let h = start(limits, &[], &[], &[tenant("exporter", "cell-1", None)]).await;
        from_cell(
            &get(&h, "exporter", "/api/export").await,
            "exporter",
            "cell-1",
        );
        for path in [
            "//api/export",
            "/API/Export/all",
            "/api/%65xport",
            "/api/export;jsessionid=1",
            "/api/./export",
            "/api/x/../export",
        ] {
            let r = get(&h, "exporter", path).await;
            refusal(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
            assert_eq!(
                header(&r, "ratelimit-policy"),
                Some("\"export\";q=1;w=10"),
                "{path}"
            );
        }
        // Neighbouring paths are not the class's.
        for path in ["/api/exports", "/api", "/other/api/export"] {
            from_cell(&get(&h, "exporter", path).await, "exporter", "cell-1");
        }
        h.shutdown().await;
    })
    .await;
}

// 11. Property: the proxy's background sweep forgets a tenant's limiter state once its bucket
// is full again (`cellgate_ratelimit_tracked_keys` falls back to 0), and the tenant then gets
// exactly the burst it earned back, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweep_forgets_idle_state() {
    within(async {
        let limits =
            "[limits]\nsweep_interval = \"100ms\"\n[limits.tiers.standard]\nrate = 10\nburst = 3\n";
        let h = start(limits, &[], &[], &[tenant("idle", "cell-1", None)]).await;
        for _ in 0..3 {
            from_cell(&get(&h, "idle", "/").await, "idle", "cell-1");
        }
        let tracked = |m: &str| sum(m, "cellgate_ratelimit_tracked_keys", &[]);
        assert_eq!(tracked(&metrics(&h).await), 1.0);
        // Refilled after 300 ms; swept by the next sweep after that.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = metrics(&h).await;
            if tracked(&m) == 0.0 {
                let idle = sum(
                    &m,
                    "cellgate_ratelimit_evictions_total",
                    &[("reason", "idle")],
                );
                assert_eq!(idle, 1.0, "{m}");
                break;
            }
            assert!(Instant::now() < deadline, "never swept: {m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..3 {
            from_cell(&get(&h, "idle", "/").await, "idle", "cell-1");
        }
        let r = get(&h, "idle", "/").await;
        refusal(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
        h.shutdown().await;
    })
    .await;
}
