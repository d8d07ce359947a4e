//! The DynamoDB registry end to end, against a real DynamoDB-API server (moto, started by
//! `tests/run.sh`, endpoint in `CELLGATE_TEST_DYNAMODB`): the operator commands (canary groups,
//! waves and weights included), versioned writes, and a running proxy loading and following the
//! table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use cellgate::ops::{self, CellCommand, TableArgs, TenantCommand};
use cellgate::placement::dynamo::schema::{tenant_item, tenant_key};
use cellgate::placement::dynamo::write::{Registry, WriteError, updated_at};
use common::dynamo::{endpoint, table};
use common::{Harness, base_config, cell_list};
use http::StatusCode;

async fn put_tenant(reg: &Registry, tenant: &str, cell: &str) -> serde_json::Value {
    ops::tenant_command(reg, TenantCommand::place(tenant, cell))
        .await
        .unwrap()
}

/// The proxy config with a DynamoDB registry on `args`'s table (`extra`: more registry keys).
fn dynamo_config(args: &TableArgs, extra: &str) -> String {
    let file_registry =
        "[registry]\nsource = \"file\"\npath = \"registry.toml\"\npoll_interval = \"20ms\"";
    let cfg = base_config("");
    assert!(cfg.contains(file_registry), "base_config changed shape");
    cfg.replace(
        file_registry,
        &format!(
            "[registry]\nsource = \"dynamodb\"\ntable = \"{}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\npoll_interval = \"50ms\"\nscan_segments = 3\nscan_page_size = 7\n{extra}",
            args.table.as_deref().unwrap(),
            endpoint()
        ),
    )
}

/// Seeds the demo cells and starts a proxy on the table.
async fn proxy_on(args: &TableArgs, reg: &Registry) -> Harness {
    proxy_with(args, reg, "").await
}

async fn proxy_with(args: &TableArgs, reg: &Registry, registry_extra: &str) -> Harness {
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    for (id, targets) in cell_list(&cells) {
        let cmd = CellCommand::Put {
            cell: id,
            targets,
            state: None,
            region: Some("eu-west-1".to_owned()),
            preserve_host: None,
            max_in_flight: None,
            wave: None,
            clear_wave: false,
            protocol: None,
            capacity: None,
            tier_units: Vec::new(),
            clear_tier_units: false,
            tags: Vec::new(),
            clear_tags: false,
        };
        ops::cell_command(reg, cmd).await.unwrap();
    }
    Harness::start_raw(&dynamo_config(args, registry_extra), "", cells).await
}

/// The value of one series (`name` or `name{labels}`, exactly as exported), 0 when absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn cell_of(h: &Harness, tenant: &str) -> String {
    let r = h.get(&format!("{tenant}.app.test"), "/").await;
    assert_eq!(r.status, StatusCode::OK, "{tenant}: {}", r.body);
    r.json()["cell"].as_str().unwrap().to_owned()
}

// Property: registry init is idempotent; writes are versioned; a lost race is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_versioned_and_exactly_one_of_racing_writers_wins() {
    let (_args, reg) = table("versions").await;
    let again = ops::registry_command(&reg, ops::RegistryCommand::Init { streams: false })
        .await
        .unwrap();
    assert_eq!(again["result"], "already exists");
    let first = put_tenant(&reg, "acme", "cell-1").await;
    assert_eq!(first["record"]["version"], 1);
    let second = put_tenant(&reg, "acme", "cell-2").await;
    assert_eq!(second["record"]["version"], 2);
    assert_eq!(
        second["epoch"].as_u64(),
        Some(first["epoch"].as_u64().unwrap() + 1)
    );

    // Eight writers all read version 2 and race to write version 3: exactly one wins.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let reg = reg.clone();
        racers.spawn(async move {
            let mut r = cellgate::placement::dynamo::schema::tenant_from_item(
                &reg.get(&tenant_key("acme")).await.unwrap().unwrap(),
            )
            .unwrap();
            r.cell = format!("cell-{i}");
            r.version = 3;
            reg.commit(tenant_item(&r, &updated_at()), Some(2)).await
        });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(r) = racers.join_next().await {
        match r.unwrap() {
            Ok(_) => won += 1,
            Err(WriteError::Conflict { found, .. }) => {
                assert_eq!(found, Some(3));
                lost += 1;
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((won, lost), (1, 7));

    // Rate-limit overrides are part of the record and survive later writes.
    let with_limits = TenantCommand::Put {
        tenant: "globex".to_owned(),
        cell: "cell-1".to_owned(),
        tier: Some("free".to_owned()),
        status: None,
        issuers: vec!["https://globex.idp".to_owned()],
        rate: Some(50.0),
        burst: Some(20),
        concurrency: None,
        clear_limits: false,
        arm: Some("canary".to_owned()),
        clear_arm: false,
        entitlements: Vec::new(),
        clear_entitlements: false,
        expect_version: None,
        force: false,
    };
    ops::tenant_command(&reg, with_limits).await.unwrap();
    let moved = put_tenant(&reg, "globex", "cell-2").await;
    let rec = &moved["record"];
    assert_eq!(rec["arm"], "canary", "a pinned arm survives later writes");
    assert_eq!(
        (
            rec["limits"]["rate"].as_f64(),
            rec["limits"]["burst"].as_u64()
        ),
        (Some(50.0), Some(20))
    );
    assert_eq!(
        (rec["tier"].as_str(), rec["issuers"][0].as_str()),
        (Some("free"), Some("https://globex.idp"))
    );

    // A writer holding an old version is refused, and says what it found.
    let mut stale = TenantCommand::place("acme", "cell-9");
    if let TenantCommand::Put { expect_version, .. } = &mut stale {
        *expect_version = Some(1);
    }
    let err = ops::tenant_command(&reg, stale)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected version 1, found 3"), "{err}");
    // Unknown tenants and invalid input are clear errors.
    let err = ops::tenant_command(
        &reg,
        TenantCommand::Suspend {
            tenant: "nobody".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    let bad = TenantCommand::place("Bad Id", "cell-1");
    let err = ops::tenant_command(&reg, bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("id = `Bad Id`"), "{err}");
}

// Property: a paginated, parallel scan loads every tenant; a flip reaches the proxy within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_loads_every_page_and_follows_a_flip_within_a_second() {
    let (args, reg) = table("flip").await;
    // 40 tenants over scan pages of 7 items in 3 segments: several pages per segment.
    for i in 0..40 {
        put_tenant(&reg, &format!("t{i}"), &format!("cell-{}", i % 3 + 1)).await;
    }
    let h = proxy_on(&args, &reg).await;
    for i in [0, 13, 26, 39] {
        assert_eq!(
            cell_of(&h, &format!("t{i}")).await,
            format!("cell-{}", i % 3 + 1)
        );
    }
    let admin = h.admin_get("/admin/tenants/t39").await.unwrap().json();
    assert_eq!(admin["version"], 1);

    // Flip t0 from cell-1 to cell-2 and time how long until the proxy routes there.
    let start = Instant::now();
    put_tenant(&reg, "t0", "cell-2").await;
    let written = start.elapsed();
    loop {
        if cell_of(&h, "t0").await == "cell-2" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "flip not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = start.elapsed();
    eprintln!("flip: written in {written:?}, routed to the new cell after {seen:?}");
    // Followed through the change log, not a rescan of the table.
    let m = h.admin_get("/metrics").await.unwrap().body;
    assert!(metric(&m, "cellgate_placement_deltas_total") >= 1.0, "{m}");
    assert_eq!(metric(&m, "cellgate_placement_reloads_total"), 1.0, "{m}");
    // And a suspension the same way: 403 from then on.
    ops::tenant_command(
        &reg,
        TenantCommand::Suspend {
            tenant: "t1".into(),
        },
    )
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let r = h.get("t1.app.test", "/").await;
        if r.status == StatusCode::FORBIDDEN {
            assert_eq!(r.json()["error"], "tenant_suspended");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "suspension not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.shutdown().await;
}

// Property: static stability: with the table gone, the last snapshot keeps serving and the
// failures are visible in metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_keeps_the_last_placements_and_is_reported() {
    let (args, reg) = table("outage").await;
    put_tenant(&reg, "acme", "cell-1").await;
    let h = proxy_on(&args, &reg).await;
    assert_eq!(cell_of(&h, "acme").await, "cell-1");
    // The outage: the table disappears (every read now fails).
    let client = cellgate::placement::dynamo::client(Some("us-east-1"), Some(&endpoint())).await;
    client
        .delete_table()
        .table_name(args.table.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let m = h.admin_get("/metrics").await.unwrap().body;
        if metric(&m, "cellgate_placement_refresh_failures_total") >= 2.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "failures not counted: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still routed by the last good snapshot; an unknown tenant gets a fast 503 (the registry
    // cannot say whether it exists), never a default cell.
    assert_eq!(cell_of(&h, "acme").await, "cell-1");
    let started = Instant::now();
    let r = h.get("nobody.app.test", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["error"], "registry_unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "not fast: {:?}",
        started.elapsed()
    );
    let m = h.admin_get("/metrics").await.unwrap().body;
    assert_eq!(
        lookups(&m, "registry_down"),
        1.0,
        "answered without asking the table: {m}"
    );
    assert_eq!(h.admin_get("/readyz").await.unwrap().status, StatusCode::OK);
    let reg_status = h.admin_get("/admin/registry").await.unwrap().json();
    assert_eq!(
        reg_status["source"],
        format!("dynamodb:{}", args.table.as_deref().unwrap())
    );
    assert_eq!(reg_status["tenants"], 1);
    let per_cell: u64 = reg_status["cell_tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tenants"].as_u64().unwrap())
        .sum();
    assert_eq!(per_cell, 1, "{reg_status}");
    assert!(
        reg_status["refresh_failures"].as_u64().unwrap() >= 2,
        "{reg_status}"
    );
    assert!(
        reg_status["last_error"]
            .as_str()
            .unwrap()
            .contains("dynamodb"),
        "{reg_status}"
    );
    h.shutdown().await;
}

// Property: evacuation under continuous traffic: no read fails, writes pause with 503 while
// MIGRATING, and once a request saw the new cell no later request reaches the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_move_evacuates_under_traffic_without_failed_reads() {
    let (args, reg) = table("move").await;
    put_tenant(&reg, "acme", "cell-1").await;
    let h = std::sync::Arc::new(proxy_on(&args, &reg).await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (h, stop) = (std::sync::Arc::clone(&h), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            // (started, status, cell) of each read, and the statuses of writes.
            let (mut reads, mut writes) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let r = h.get("acme.app.test", "/").await;
                let cell = r.json()["cell"].as_str().map(str::to_owned);
                reads.push((started, r.status, cell));
                if reads.len() % 10 == 0 {
                    let req = h
                        .request("acme.app.test", "/orders")
                        .method(http::Method::POST)
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                        .unwrap();
                    writes.push(h.send(req).await.status);
                }
            }
            (reads, writes)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let marker = tempfile::NamedTempFile::new().unwrap();
    let plan = ops::MovePlan {
        tenant: "acme".to_owned(),
        to: "cell-2".to_owned(),
        settle: Duration::from_millis(300),
        hook: Some(format!(
            "echo \"$TENANT $FROM_CELL $TO_CELL\" > {}",
            marker.path().display()
        )),
        force: false,
    };
    let out = ops::move_tenant(&reg, &plan).await.unwrap();
    let steps: Vec<&str> = out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        ["migrating", "settled", "hook", "flipped", "active", "done"]
    );
    assert_eq!(
        std::fs::read_to_string(marker.path()).unwrap(),
        "acme cell-1 cell-2\n"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, writes) = traffic.await.unwrap();

    assert!(reads.len() > 50, "too little traffic: {}", reads.len());
    assert!(
        reads.iter().all(|(_, s, _)| *s == StatusCode::OK),
        "a read failed"
    );
    let first_new = reads
        .iter()
        .position(|(_, _, c)| c.as_deref() == Some("cell-2"))
        .expect("never reached cell-2");
    assert!(
        reads[first_new..]
            .iter()
            .all(|(_, _, c)| c.as_deref() == Some("cell-2")),
        "a read reached cell-1 after cell-2 had answered"
    );
    assert!(
        writes.contains(&StatusCode::OK),
        "no write before or after the move"
    );
    assert!(
        writes
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{writes:?}"
    );
    // Re-running a finished move changes nothing.
    let again = ops::move_tenant(&reg, &plan).await.unwrap();
    assert_eq!(again["steps"][0]["step"], "done");
    // A DRAINING target is refused unless forced.
    ops::cell_command(
        &reg,
        CellCommand::Drain {
            cell: "cell-3".into(),
        },
    )
    .await
    .unwrap();
    let to_draining = ops::MovePlan {
        to: "cell-3".to_owned(),
        ..plan
    };
    let err = ops::move_tenant(&reg, &to_draining).await.unwrap_err();
    assert!(err.to_string().contains("DRAINING"), "{err}");
    std::sync::Arc::try_unwrap(h).ok().unwrap().shutdown().await;
}

/// Writes a tenant item straight into the table, bypassing the epoch and change log, so only
/// an on-demand lookup (or an invalidation) can bring it to a proxy.
async fn sneak_tenant(args: &TableArgs, tenant: &str, cell: &str, version: u64) {
    let client = cellgate::placement::dynamo::client(Some("us-east-1"), Some(&endpoint())).await;
    let record = cellgate::placement::TenantRecord {
        id: tenant.to_owned(),
        cell: cell.to_owned(),
        status: cellgate::placement::TenantStatus::Active,
        tier: "standard".to_owned(),
        version,
        issuers: Vec::new(),
        limits: Default::default(),
        arm: None,
        entitlements: Vec::new(),
    };
    client
        .put_item()
        .table_name(args.table.as_deref().unwrap())
        .set_item(Some(tenant_item(&record, &updated_at())))
        .send()
        .await
        .unwrap();
}

fn lookups(m: &str, result: &str) -> f64 {
    metric(
        m,
        &format!("cellgate_registry_lookups_total{{result=\"{result}\"}}"),
    )
}

/// Registry reads made by lookups.
fn lookup_reads(m: &str) -> f64 {
    lookups(m, "found") + lookups(m, "absent") + lookups(m, "error")
}

// Property: coalescing: 50 concurrent requests for a tenant missing from the snapshot cost one
// registry read, and all of them are routed to its cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_a_missing_tenant_cost_one_registry_read() {
    let (args, reg) = table("coalesce").await;
    put_tenant(&reg, "acme", "cell-1").await;
    let h = std::sync::Arc::new(proxy_on(&args, &reg).await);
    sneak_tenant(&args, "newco", "cell-3", 1).await;
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let h = std::sync::Arc::clone(&h);
        all.spawn(async move { h.get("newco.app.test", "/").await });
    }
    while let Some(r) = all.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json()["cell"], "cell-3");
    }
    let m = h.admin_get("/metrics").await.unwrap().body;
    assert_eq!(lookup_reads(&m), 1.0, "{m}");
    assert_eq!(lookups(&m, "found"), 1.0);
    std::sync::Arc::try_unwrap(h).ok().unwrap().shutdown().await;
}

// Attack: an enumeration flood of random tenant names costs the table at most the miss rate
// cap; known-absent names are answered from the negative cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enumeration_flood_makes_bounded_registry_reads() {
    let (args, reg) = table("flood").await;
    put_tenant(&reg, "acme", "cell-1").await;
    let h = proxy_with(&args, &reg, "lookup_rate = 5\nlookup_burst = 10").await;
    let started = Instant::now();
    let (mut not_found, mut unavailable) = (0, 0);
    for i in 0..300 {
        let r = h.get(&format!("probe-{i}.app.test"), "/").await;
        match r.status {
            StatusCode::NOT_FOUND => not_found += 1,
            StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    // The same unknown name again: the negative cache answers, no read.
    let m0 = h.admin_get("/metrics").await.unwrap().body;
    let again = h.get("probe-0.app.test", "/").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let m = h.admin_get("/metrics").await.unwrap().body;
    assert_eq!(
        lookup_reads(&m),
        lookup_reads(&m0),
        "a negative hit read the table"
    );
    let elapsed = started.elapsed().as_secs_f64();
    let reads = lookup_reads(&m);
    assert!(
        reads <= 10.0 + 5.0 * elapsed + 1.0,
        "{reads} reads in {elapsed:.2} s"
    );
    assert_eq!(not_found as f64, reads, "each read found nothing");
    assert!(unavailable >= 250, "the cap let {not_found} through");
    // A known tenant is unaffected by the flood.
    assert_eq!(cell_of(&h, "acme").await, "cell-1");
    h.shutdown().await;
}

// Property: POST /admin/tenants/{id}/invalidate re-reads one tenant at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_rereads_a_tenant_now() {
    let (args, reg) = table("invalidate").await;
    put_tenant(&reg, "acme", "cell-1").await;
    let h = proxy_on(&args, &reg).await;
    assert_eq!(cell_of(&h, "acme").await, "cell-1");
    // Changed behind the change log's back: the proxy cannot know until told.
    sneak_tenant(&args, "acme", "cell-2", 7).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cell_of(&h, "acme").await, "cell-1");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{}/admin/tenants/acme/invalidate", h.admin))
        .body(http_body_util::Full::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (body["result"].as_str(), body["version"].as_u64()),
        (Some("found"), Some(7))
    );
    assert_eq!(cell_of(&h, "acme").await, "cell-2");
    h.shutdown().await;
}

/// `tenant put TENANT --cell CELL [--rate R] [--burst B]`.
fn with_limits(tenant: &str, cell: &str, rate: Option<f64>, burst: Option<u32>) -> TenantCommand {
    let mut cmd = TenantCommand::place(tenant, cell);
    if let TenantCommand::Put {
        rate: r, burst: b, ..
    } = &mut cmd
    {
        (*r, *b) = (rate, burst);
    }
    cmd
}

// Property: rate limits come from the table: the tenant's tier and its record's overrides apply,
// a changed override applies without a restart, and a cell's own in-flight cap (`cell put
// --max-in-flight`) sheds with 503 `cell_overloaded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_follow_the_tables_tiers_overrides_and_cell_caps() {
    let (args, reg) = table("limits").await;
    put_tenant(&reg, "acme", "cell-1").await; // tier `standard` by default
    // globex carries its own, higher limits in its record.
    let generous = with_limits("globex", "cell-2", Some(100.0), Some(100));
    ops::tenant_command(&reg, generous).await.unwrap();
    let limits = "\n[limits]\n[limits.tiers.standard]\nrate = 0.2\nburst = 3\n";
    let h = proxy_with(&args, &reg, limits).await;
    h.wait_ready().await;
    let statuses = |tenant: &'static str, n: usize| {
        let h = &h;
        async move {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(
                    h.get(&format!("{tenant}.app.test"), "/")
                        .await
                        .status
                        .as_u16(),
                );
            }
            v
        }
    };
    assert_eq!(statuses("acme", 5).await, [200, 200, 200, 429, 429]);
    assert_eq!(
        statuses("globex", 3).await,
        [200, 200, 200],
        "acme's 429s cost globex nothing"
    );

    // An override in the record wins over the tier, and reaches the proxy without a restart.
    let raise = with_limits("acme", "cell-1", None, Some(8));
    ops::tenant_command(&reg, raise).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let t = h.admin_get("/admin/tenants/acme").await.unwrap().json();
        if t["limits"]["burst"] == 8 {
            assert_eq!(t["limits"]["overrides"]["burst"], 8);
            assert_eq!(t["limits"]["rate"], 0.2, "the tier's rate still applies");
            break;
        }
        assert!(Instant::now() < deadline, "override never applied: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // acme already spent 3 of the bucket (a little has refilled since): 5 more, give or take
    // the refill, and never a fresh bucket of 8.
    let admitted = statuses("acme", 10)
        .await
        .iter()
        .filter(|s| **s == 200)
        .count();
    assert!(
        (5..=6).contains(&admitted),
        "admitted {admitted} after raising the burst to 8"
    );

    // A cell's own cap: one request in flight to cell-2 at most.
    let capped = CellCommand::Put {
        cell: "cell-2".to_owned(),
        targets: cell_list(&h.cells)[1].1.clone(),
        state: None,
        region: None,
        preserve_host: None,
        max_in_flight: Some(1),
        wave: None,
        clear_wave: false,
        protocol: None,
        capacity: None,
        tier_units: Vec::new(),
        clear_tier_units: false,
        tags: Vec::new(),
        clear_tags: false,
    };
    ops::cell_command(&reg, capped).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let cells = h.admin_get("/admin/cells").await.unwrap().json();
        let c2 = cells["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cell"] == "cell-2")
            .cloned()
            .unwrap();
        if c2["max_in_flight"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "cap never applied: {c2}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = std::sync::Arc::new(h);
    let slow = {
        let h = std::sync::Arc::clone(&h);
        tokio::spawn(async move { h.get("globex.app.test", "/?sleep_ms=1500").await })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = h.admin_get("/metrics").await.unwrap().body;
        if metric(&m, "cellgate_cell_in_flight{cell=\"cell-2\"}") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow request never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = h.get("globex.app.test", "/").await;
    assert_eq!(
        shed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        shed.body
    );
    assert_eq!(shed.json()["error"], "cell_overloaded");
    assert_eq!(shed.json()["cell"], "cell-2");
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        h.get("globex.app.test", "/").await.status,
        StatusCode::OK,
        "the place came back"
    );
    std::sync::Arc::try_unwrap(h).ok().unwrap().shutdown().await;
}

/// `cell put CELL` with only a wave change (`Some(None)` clears it); no `--target`: the groups
/// are kept.
async fn set_wave(reg: &Registry, cell: &str, wave: Option<u32>) -> serde_json::Value {
    let cmd = CellCommand::Put {
        cell: cell.to_owned(),
        targets: Vec::new(),
        state: None,
        region: None,
        preserve_host: None,
        max_in_flight: None,
        wave,
        clear_wave: wave.is_none(),
        protocol: None,
        capacity: None,
        tier_units: Vec::new(),
        clear_tier_units: false,
        tags: Vec::new(),
        clear_tags: false,
    };
    ops::cell_command(reg, cmd).await.unwrap()
}

/// `cell group CELL --name NAME [--version V] [--weight W] [--target URL]... [--remove]`.
fn group(
    cell: &str,
    name: &str,
    version: Option<&str>,
    weight: Option<u32>,
    targets: &[String],
    remove: bool,
) -> CellCommand {
    CellCommand::Group {
        cell: cell.to_owned(),
        name: name.to_owned(),
        version: version.map(str::to_owned),
        weight,
        targets: targets.to_vec(),
        remove,
    }
}

/// `cell weights (--cell C... | --wave N) --set G=W...`.
fn weights(cells: &[&str], wave: Option<u32>, set: &[&str]) -> CellCommand {
    CellCommand::Weights {
        cells: cells.iter().map(|c| (*c).to_owned()).collect(),
        wave,
        set: set.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The stored groups of `cell` as (name, weight, version).
async fn groups_of(reg: &Registry, cell: &str) -> Vec<(String, u64, String)> {
    let c = ops::cell_command(
        reg,
        CellCommand::Get {
            cell: cell.to_owned(),
        },
    )
    .await
    .unwrap();
    c["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["weight"].as_u64().unwrap(),
                g["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// How many of `tenants` a canary target answered (each asked once).
async fn on_canary(h: &Harness, tenants: &[String]) -> usize {
    let mut n = 0;
    for t in tenants {
        let r = h.get(&format!("{t}.app.test"), "/").await;
        assert_eq!(r.status, StatusCode::OK, "{t}: {}", r.body);
        if r.json()["target"].as_str().unwrap().starts_with("canary") {
            n += 1;
        }
    }
    n
}

/// Waits (up to 3 s) until `want(canary count)` holds for `tenants`.
async fn until_canary(h: &Harness, tenants: &[String], want: impl Fn(usize) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = on_canary(h, tenants).await;
        if want(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {n} of {} on the canary",
            tenants.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn err(reg: &Registry, cmd: CellCommand) -> String {
    ops::cell_command(reg, cmd).await.unwrap_err().to_string()
}

// Property: canary operations from the CLI: target groups are added, changed and removed with
// the cell's other groups kept; a wave's weights change in one command (every cell checked
// before any write, one conditional write per cell); the proxy follows the weights without a
// restart; and a tenant is only placed into a DRAINING cell with --force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_groups_and_wave_weights_from_the_cli_reach_the_proxy() {
    let (args, reg) = table("canary").await;
    let h = proxy_on(&args, &reg).await;
    // Waves: cell-1 and cell-2 in wave 1, cell-3 in wave 2; the groups are kept.
    let w = set_wave(&reg, "cell-1", Some(1)).await;
    assert_eq!(
        (
            w["record"]["wave"].as_u64(),
            w["record"]["version"].as_u64()
        ),
        (Some(1), Some(2))
    );
    set_wave(&reg, "cell-2", Some(1)).await;
    set_wave(&reg, "cell-3", Some(2)).await;
    assert_eq!(
        groups_of(&reg, "cell-1").await,
        [("stable".to_owned(), 100, "stable".to_owned())]
    );
    // A new cell needs targets; an existing one written without them keeps its groups.
    let new_cell = CellCommand::Put {
        cell: "cell-new".to_owned(),
        targets: Vec::new(),
        state: None,
        region: None,
        preserve_host: None,
        max_in_flight: None,
        wave: Some(1),
        clear_wave: false,
        protocol: None,
        capacity: None,
        tier_units: Vec::new(),
        clear_tier_units: false,
        tags: Vec::new(),
        clear_tags: false,
    };
    let e = err(&reg, new_cell).await;
    assert!(
        e.starts_with("--target") && e.contains("cell-new is new"),
        "{e}"
    );
    let cleared = set_wave(&reg, "cell-3", None).await;
    assert!(cleared["record"].get("wave").is_none(), "{cleared}");
    set_wave(&reg, "cell-3", Some(2)).await;

    // A canary group on cell-1: new groups start dark (weight 0) and need targets.
    let canary1 = cellgate::demo::spawn_echo_target("cell-1", "canary-1")
        .await
        .unwrap();
    let canary2 = cellgate::demo::spawn_echo_target("cell-2", "canary-2")
        .await
        .unwrap();
    let (c1, c2) = (
        vec![format!("http://{}", canary1.addr)],
        vec![format!("http://{}", canary2.addr)],
    );
    let out = ops::cell_command(
        &reg,
        group("cell-1", "canary", Some("v2"), None, &c1, false),
    )
    .await
    .unwrap();
    assert_eq!(out["record"]["wave"], 1, "the wave survives a group write");
    assert_eq!(
        groups_of(&reg, "cell-1").await,
        [
            ("stable".to_owned(), 100, "stable".to_owned()),
            ("canary".to_owned(), 0, "v2".to_owned())
        ]
    );
    let e = err(&reg, group("cell-1", "beta", None, Some(5), &[], false)).await;
    assert!(
        e.contains("--target") && e.contains("new in cell cell-1"),
        "{e}"
    );
    let e = err(
        &reg,
        group("cell-1", "stable", None, Some(20_000), &[], false),
    )
    .await;
    assert!(e.starts_with("--weight = `20000`"), "{e}");
    let e = err(&reg, group("cell-1", "can ary", None, None, &c1, false)).await;
    assert!(e.starts_with("--name"), "{e}");
    let e = err(&reg, group("cell-9", "canary", None, None, &c1, false)).await;
    assert!(e.contains("not found"), "{e}");
    let e = err(
        &reg,
        group(
            "cell-1",
            "canary",
            None,
            None,
            &["ftp://x".to_owned()],
            false,
        ),
    )
    .await;
    assert!(e.contains("targets[0]"), "{e}");

    // 30 tenants over the wave's two cells.
    let tenants: Vec<String> = (0..30).map(|i| format!("w{i:02}")).collect();
    for (i, t) in tenants.iter().enumerate() {
        put_tenant(&reg, t, &format!("cell-{}", i % 2 + 1)).await;
    }
    let (in_cell1, in_cell2): (Vec<String>, Vec<String>) = tenants
        .iter()
        .cloned()
        .enumerate()
        .fold((Vec::new(), Vec::new()), |(mut a, mut b), (i, t)| {
            if i % 2 == 0 {
                a.push(t)
            } else {
                b.push(t)
            }
            (a, b)
        });

    // The wave's weights: cell-2 has no canary yet, so nothing is written at all.
    let before = groups_of(&reg, "cell-1").await;
    let e = err(&reg, weights(&[], Some(1), &["canary=10"])).await;
    assert!(
        e.contains("cell cell-2 has no group canary") && e.contains("nothing was written"),
        "{e}"
    );
    assert_eq!(groups_of(&reg, "cell-1").await, before);
    let e = err(&reg, weights(&[], None, &["canary=10"])).await;
    assert!(e.starts_with("--cell"), "{e}");
    let e = err(&reg, weights(&[], Some(7), &["canary=10"])).await;
    assert!(e.starts_with("--wave = `7`"), "{e}");
    for bad in ["canary", "canary=ten", "canary=10001", "can ary=1"] {
        let e = err(&reg, weights(&["cell-1"], None, &[bad])).await;
        assert!(e.starts_with(&format!("--set = `{bad}`")), "{e}");
    }
    // Every group at weight 0 in an ACTIVE cell: refused before writing.
    let e = err(&reg, weights(&["cell-1"], None, &["stable=0"])).await;
    assert!(e.contains("nothing was written"), "{e}");
    ops::cell_command(&reg, group("cell-2", "canary", None, None, &c2, false))
        .await
        .unwrap();

    // Canary at weight 0: no tenant lands there (the proxy has seen both canary groups).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let cells = h.admin_get("/admin/cells").await.unwrap().json();
        let seen = cells["cells"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["groups"].as_array().unwrap().len() == 2)
            .count();
        if seen == 2 {
            assert_eq!(cells["cells"][0]["wave"], 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "groups never reached the proxy: {cells}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(on_canary(&h, &tenants).await, 0);

    // The whole wave to the canary: one command, one write per cell, no restart.
    let out = ops::cell_command(&reg, weights(&[], Some(1), &["canary=10000", "stable=0"]))
        .await
        .unwrap();
    let results: Vec<(&str, &str)> = out["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["cell"].as_str().unwrap(), c["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("cell-1", "written"), ("cell-2", "written")]);
    assert_eq!(
        groups_of(&reg, "cell-3").await,
        [("stable".to_owned(), 100, "stable".to_owned())],
        "wave 2 untouched"
    );
    let n = tenants.len();
    until_canary(
        &h,
        &tenants,
        |c| c == n,
        "wave 1 at canary 10000 / stable 0",
    )
    .await;

    // One cell back; the same command again changes nothing.
    let back = weights(&["cell-1"], None, &["canary=0", "stable=100"]);
    ops::cell_command(&reg, back.clone()).await.unwrap();
    let again = ops::cell_command(&reg, back).await.unwrap();
    assert_eq!(again["cells"][0]["result"], "unchanged");
    until_canary(&h, &in_cell1, |c| c == 0, "cell-1 back to stable").await;
    assert_eq!(
        on_canary(&h, &in_cell2).await,
        in_cell2.len(),
        "cell-2 stays on the canary"
    );

    // Removing groups: the stable arm of cell-2 (the canary carries it), never its last weighted arm.
    ops::cell_command(&reg, group("cell-2", "stable", None, None, &[], true))
        .await
        .unwrap();
    assert_eq!(groups_of(&reg, "cell-2").await.len(), 1);
    let e = err(&reg, group("cell-2", "canary", None, None, &[], true)).await;
    assert!(
        e.contains("the last group with a weight in cell cell-2"),
        "{e}"
    );
    let e = err(&reg, group("cell-2", "nope", None, None, &[], true)).await;
    assert!(e.contains("has no such group (its groups: canary)"), "{e}");

    // A DRAINING cell takes no new placement without --force; its own tenants still update.
    put_tenant(&reg, "old", "cell-3").await;
    ops::cell_command(
        &reg,
        CellCommand::Drain {
            cell: "cell-3".into(),
        },
    )
    .await
    .unwrap();
    let refused = ops::tenant_command(&reg, TenantCommand::place("newco", "cell-3"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("DRAINING") && refused.contains("--force"),
        "{refused}"
    );
    let moving = ops::tenant_command(&reg, TenantCommand::place("w00", "cell-3"))
        .await
        .unwrap_err();
    assert!(moving.to_string().contains("DRAINING"), "{moving}");
    assert_eq!(
        put_tenant(&reg, "old", "cell-3").await["record"]["version"],
        2
    );
    let mut forced = TenantCommand::place("newco", "cell-3");
    if let TenantCommand::Put { force, .. } = &mut forced {
        *force = true;
    }
    let placed = ops::tenant_command(&reg, forced).await.unwrap();
    assert_eq!(placed["record"]["cell"], "cell-3");
    h.shutdown().await;
}
