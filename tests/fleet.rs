//! Fleet-wide tenant limits against a real Redis (Debian's `redis-server`: the suite's shared
//! one, `CELLGATE_TEST_REDIS`, each test under its own key prefix; or a private one a test stops
//! and starts). Two proxies in one process stand in for a fleet: one tenant's rate holds across
//! both, not per node; a fleet bucket drained elsewhere refuses here (enforce) or is only
//! counted (shadow); a Redis outage falls back to each node's share without a 5xx and recovers;
//! Redis unreachable at start still serves; a password file authenticates and a wrong password
//! is counted as an auth error. The accuracy and outage figures under load, with three
//! processes, are the `fleet` loadtest scenario's (loadtest/README.md).
//!
//! Rates are slow (one request per two seconds) with a burst of 10, so the numbers admitted
//! within a test are the burst plus at most a request or two, whatever the machine's speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use cellgate::demo::spawn_cells;
use common::limits::{get, metrics, registry_text, sum, tenant, within};
use common::redis_server::{self, OwnRedis};
use common::{Harness, base_config, cell_list};
use http::StatusCode;

/// `[limits]` with a `standard` tier of 0.5/s, burst 10, fleet-wide over `url`.
fn limits(url: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[limits]\n[limits.tiers.standard]\nrate = 0.5\nburst = 10\n\n\
         [limits.fleet]\nredis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\n\
         heartbeat_interval = \"200ms\"\nbreaker_cooldown = \"100ms\"\ntimeout = \"250ms\"\n{extra}"
    )
}

async fn node(limits: &str) -> Harness {
    let cells = spawn_cells(3, 1).await.unwrap();
    let text = registry_text(
        &cell_list(&cells),
        &[],
        &[
            tenant("noisy", "cell-1", Some("standard")),
            tenant("quiet", "cell-2", Some("standard")),
        ],
    );
    Harness::start_raw(&base_config(limits), &text, cells).await
}

async fn metric(h: &Harness, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(&metrics(h).await, name, labels)
}

/// Polls until `name` (summed over `labels`) satisfies `ok`; fails after `limit`.
async fn wait_metric(
    h: &Harness,
    name: &str,
    labels: &[(&str, &str)],
    limit: Duration,
    ok: impl Fn(f64) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let v = metric(h, name, labels).await;
        if ok(v) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{name}{labels:?} = {v} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn statuses(h: &Harness, tenant: &str, n: usize, gap: Duration) -> Vec<StatusCode> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(h, tenant, "/").await.status);
        tokio::time::sleep(gap).await;
    }
    out
}

fn ok(s: &[StatusCode]) -> usize {
    s.iter().filter(|s| **s == StatusCode::OK).count()
}

// 1. One tenant, two nodes: the burst of 10 holds across the fleet (per-node limits would admit
// 20), and a neighbour under its limit is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_hold_a_tenant_to_one_fleet_wide_rate() {
    within(async {
        let url = redis_server::url();
        let l = limits(&url, &redis_server::prefix("two-nodes"), "");
        let a = node(&l).await;
        let b = node(&l).await;
        for h in [&a, &b] {
            wait_metric(
                h,
                "cellgate_fleet_nodes",
                &[],
                Duration::from_secs(3),
                |n| n == 2.0,
            )
            .await;
        }
        let mut admitted = 0;
        let mut codes = Vec::new();
        let started = Instant::now();
        for i in 0..30 {
            let h = if i % 2 == 0 { &a } else { &b };
            let s = get(h, "noisy", "/").await.status;
            codes.push(s);
            admitted += usize::from(s == StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            codes
                .iter()
                .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
            "{codes:?}"
        );
        // The burst, plus 0.5/s for the time taken, plus one request per node when the fleet
        // bucket refills (each may take one), and nothing near the 20 per-node limits give.
        let most = 10 + (elapsed * 0.5).ceil() as usize + 2;
        assert!(
            (10..=most).contains(&admitted),
            "admitted {admitted} in {elapsed:.2}s (at most {most})"
        );
        for h in [&a, &b] {
            assert_eq!(
                ok(&statuses(h, "quiet", 3, Duration::ZERO).await),
                3,
                "the neighbour"
            );
            assert_eq!(metric(h, "cellgate_fleet_breaker_state", &[]).await, 0.0);
            let status = h.admin_get("/admin/limits").await.unwrap().json();
            let f = &status["fleet"];
            assert_eq!(f["mode"], "enforce", "{status}");
            assert_eq!(f["breaker"], "closed", "{status}");
            assert_eq!(f["nodes"], 2, "{status}");
            assert_eq!(f["current"], true, "{status}");
            assert!(
                f["redis"]
                    .as_str()
                    .unwrap()
                    .starts_with("redis://127.0.0.1:")
            );
            assert_eq!(status["tiers"][0]["rate"], 0.5, "{status}");
        }
        let refused = metric(&a, "cellgate_fleet_refused_total", &[("tier", "standard")]).await
            + metric(&b, "cellgate_fleet_refused_total", &[("tier", "standard")]).await;
        assert!(refused >= 1.0, "fleet refusals counted: {refused}");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// Sets `tenant`'s fleet bucket as though other nodes had spent it for the next minute.
async fn drain(url: &str, prefix: &str, tenant: &str) {
    let mut c = redis_server::connect(url).await;
    let tat = redis_server::now_us(&mut c).await + 60e6;
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}t:{tenant}"))
        .arg(format!("{tat:.3}"))
        .arg("PX")
        .arg(120_000)
        .query_async(&mut c)
        .await
        .unwrap();
}

// 2. The fleet bucket is drained elsewhere while a tenant sends here: enforce refuses what its
// own share would still admit; shadow admits by the share and counts what it would refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_drained_elsewhere_refuses_here_and_shadow_only_counts() {
    within(async {
        let url = redis_server::url();
        for mode in ["enforce", "shadow"] {
            let prefix = redis_server::prefix(mode);
            let h = node(&limits(&url, &prefix, &format!("mode = \"{mode}\"\n"))).await;
            wait_metric(
                &h,
                "cellgate_fleet_nodes",
                &[],
                Duration::from_secs(3),
                |n| n == 1.0,
            )
            .await;
            // Three requests, spread over flushes so the tenant's fleet credit is current.
            assert_eq!(
                ok(&statuses(&h, "noisy", 3, Duration::from_millis(30)).await),
                3
            );
            drain(&url, &prefix, "noisy").await;
            // Keep the tenant active (a request every 10 ms) while the drain reaches this node.
            let first = statuses(&h, "noisy", 10, Duration::from_millis(10)).await;
            let rest = statuses(&h, "noisy", 20, Duration::from_millis(5)).await;
            let would = metric(
                &h,
                "cellgate_fleet_would_refuse_total",
                &[("tier", "standard")],
            )
            .await;
            let refused = metric(&h, "cellgate_fleet_refused_total", &[("tier", "standard")]).await;
            if mode == "enforce" {
                assert_eq!(
                    ok(&rest),
                    0,
                    "drained: refused here although the share has 7 left; first {first:?}"
                );
                assert!(refused >= 20.0, "{refused}");
                assert_eq!(would, 0.0);
            } else {
                assert_eq!(
                    ok(&first) + ok(&rest),
                    7,
                    "the share decides: the burst's remaining 7"
                );
                assert!(would >= 5.0, "would-refuse counted: {would}");
                assert_eq!(refused, 0.0);
            }
            h.shutdown().await;
        }
    })
    .await;
}

// 3. Redis dies under two nodes: within a second both open the breaker and judge locally (only
// 200s and 429s, never a 5xx); when it is back, fleet accounting resumes within two seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_to_the_share_and_recovers() {
    within(async {
        let mut redis = OwnRedis::start(&[]);
        let l = limits(&redis.url(), "outage:", "");
        let a = node(&l).await;
        let b = node(&l).await;
        for h in [&a, &b] {
            wait_metric(
                h,
                "cellgate_fleet_nodes",
                &[],
                Duration::from_secs(3),
                |n| n == 2.0,
            )
            .await;
        }
        assert_eq!(
            ok(&statuses(&a, "quiet", 2, Duration::from_millis(30)).await),
            2
        );

        redis.down();
        let mut seen = Vec::new();
        for h in [&a, &b] {
            // A request now and then keeps a flush going for the breaker to see fail.
            seen.extend(statuses(h, "noisy", 3, Duration::from_millis(20)).await);
            let took = wait_metric(
                h,
                "cellgate_fleet_breaker_state",
                &[],
                Duration::from_secs(1),
                |s| s >= 1.0,
            )
            .await;
            assert!(took < Duration::from_secs(1));
        }
        // On the fallback: each node gives noisy its share of the burst (5 of 10), less what it
        // already took, and nothing but 200 or 429.
        let during = statuses(&a, "noisy", 15, Duration::ZERO).await;
        seen.extend(&during);
        assert!(
            seen.iter()
                .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
            "{seen:?}"
        );
        assert!(ok(&during) <= 5, "at most the node's share: {during:?}");
        assert!(metric(&a, "cellgate_fleet_redis_errors_total", &[]).await >= 1.0);
        assert!(metric(&a, "cellgate_fleet_fallback_seconds_total", &[]).await > 0.0);

        redis.up();
        for h in [&a, &b] {
            let took = wait_metric(
                h,
                "cellgate_fleet_breaker_state",
                &[],
                Duration::from_secs(2),
                |s| s == 0.0,
            )
            .await;
            assert!(took < Duration::from_secs(2));
        }
        for h in [&a, &b] {
            wait_metric(
                h,
                "cellgate_fleet_nodes",
                &[],
                Duration::from_secs(2),
                |n| n == 2.0,
            )
            .await;
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

// 4. Redis unreachable at start: the proxy starts and serves on its share, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_at_start_still_serves_on_the_share() {
    within(async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let h = node(&limits(&format!("redis://127.0.0.1:{port}"), "down:", "")).await;
        let codes = statuses(&h, "noisy", 12, Duration::ZERO).await;
        assert_eq!(
            ok(&codes),
            10,
            "one node known: the whole burst, then 429: {codes:?}"
        );
        wait_metric(
            &h,
            "cellgate_fleet_redis_errors_total",
            &[("kind", "connect")],
            Duration::from_secs(2),
            |n| n >= 1.0,
        )
        .await;
        assert_eq!(metric(&h, "cellgate_fleet_breaker_state", &[]).await, 1.0);
        let status = h.admin_get("/admin/limits").await.unwrap().json();
        assert_eq!(status["fleet"]["breaker"], "open", "{status}");
        assert_eq!(status["fleet"]["current"], false, "{status}");
        let ready = h.admin_get("/readyz").await.unwrap();
        assert_eq!(
            ready.status,
            StatusCode::OK,
            "readiness does not depend on Redis"
        );
        h.shutdown().await;
    })
    .await;
}

// 5. A password file authenticates; a wrong password is an auth error, and the node serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_authenticates_and_a_wrong_one_is_counted() {
    within(async {
        let redis = OwnRedis::start(&["--requirepass", "s3cret-fleet"]);
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        let bad = dir.path().join("bad");
        std::fs::write(&good, "s3cret-fleet\n").unwrap();
        std::fs::write(&bad, "wrong\n").unwrap();
        for (file, works) in [(&good, true), (&bad, false)] {
            let extra = format!("redis_password_file = \"{}\"\n", file.display());
            let h = node(&limits(&redis.url(), "auth:", &extra)).await;
            assert_eq!(
                ok(&statuses(&h, "quiet", 2, Duration::from_millis(30)).await),
                2
            );
            if works {
                wait_metric(
                    &h,
                    "cellgate_fleet_nodes",
                    &[],
                    Duration::from_secs(3),
                    |n| n == 1.0,
                )
                .await;
                assert_eq!(metric(&h, "cellgate_fleet_breaker_state", &[]).await, 0.0);
            } else {
                wait_metric(
                    &h,
                    "cellgate_fleet_redis_errors_total",
                    &[("kind", "auth")],
                    Duration::from_secs(3),
                    |n| n >= 1.0,
                )
                .await;
            }
            h.shutdown().await;
        }
    })
    .await;
}
