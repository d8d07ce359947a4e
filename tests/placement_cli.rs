//! Placing new tenants end to end: the real `cellgate tenant place` binary against a real
//! DynamoDB-API server (moto, started by `tests/run.sh`, endpoint in `CELLGATE_TEST_DYNAMODB`).
//! Many placements at once never overfill a cell (exactly the capacity is placed, the rest
//! refused naming the cells); DRAINING and DOWN cells, cells of another region and cells
//! without a required tag are never chosen; the hash strategy gives a tenant the same cell on
//! every call and a new cell takes only some tenants; refusals say why; `tenant put`,
//! `tenant move` and offboarding keep the counts; `cell usage` shows them and `--recount`
//! repairs a table written before they were kept; `registry export` writes the placement
//! attributes back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use cellgate::ops::TableArgs;
use cellgate::placement::dynamo::schema::tenant_item;
use cellgate::placement::dynamo::write::{Registry, updated_at};
use cellgate::placement::record::{RawTenant, tenant_record};
use common::cli::{cellgate, run};
use common::dynamo::table;
use serde_json::Value;

/// `cellgate ARGV` on `args`'s table: its JSON, or its one stderr line (exit 2, no stdout).
/// (No `--region`: for `cell put` and `tenant place` it is the cell's; the table's is the
/// environment's.)
async fn cli(args: &TableArgs, argv: &[&str]) -> Result<Value, String> {
    let mut cmd = cellgate(argv);
    cmd.args(["--table", args.table.as_deref().unwrap()])
        .args(["--endpoint-url", args.endpoint_url.as_deref().unwrap()]);
    run(cmd).await
}

async fn ok(args: &TableArgs, argv: &[&str]) -> Value {
    cli(args, argv)
        .await
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

async fn fails(args: &TableArgs, argv: &[&str]) -> String {
    match cli(args, argv).await {
        Ok(v) => panic!("{argv:?} succeeded: {v}"),
        Err(line) => line,
    }
}

/// `cell put ID --target ... EXTRA...`.
async fn cell(args: &TableArgs, id: &str, extra: &[&str]) {
    let mut argv = vec!["cell", "put", id, "--target", "http://127.0.0.1:9"];
    argv.extend_from_slice(extra);
    ok(args, &argv).await;
}

/// `cell usage` as cell → (tenants, load, capacity).
async fn usage(args: &TableArgs) -> BTreeMap<String, (u64, u64, Option<u64>)> {
    let out = ok(args, &["cell", "usage"]).await;
    out["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cell"].as_str().unwrap().to_owned(),
                (
                    c["tenants"].as_u64().unwrap(),
                    c["load"].as_u64().unwrap(),
                    c["capacity"].as_u64(),
                ),
            )
        })
        .collect()
}

/// The tenant records of the table, as cell → number of tenants not OFFBOARDED.
async fn records_per_cell(args: &TableArgs) -> BTreeMap<String, u64> {
    let mut per = BTreeMap::new();
    for t in ok(args, &["tenant", "list"]).await.as_array().unwrap() {
        if t["status"] != "OFFBOARDED" {
            *per.entry(t["cell"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    per
}

/// `tests/moto_serial.py` (moto answering one request at a time, as DynamoDB isolates
/// transactions; moto_server itself is not isolated) on a free port, in the venv
/// `tests/dynamodb.sh` made; stopped when dropped.
struct SerialMoto {
    _child: tokio::process::Child,
    url: String,
}

async fn serial_moto() -> SerialMoto {
    use tokio::io::AsyncBufReadExt;
    let venv = std::env::var_os("CELLGATE_MOTO_VENV").map_or_else(
        || {
            let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
                || std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"),
                std::path::PathBuf::from,
            );
            cache.join("cellgate/moto-venv")
        },
        std::path::PathBuf::from,
    );
    let mut child = tokio::process::Command::new(venv.join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/moto_serial.py"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run the suite with tests/run.sh)", venv.display()));
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("moto_serial.py said {line:?}"));
    SerialMoto {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_placements_fill_exactly_the_capacity_and_never_more() {
    let moto = serial_moto().await;
    let args = TableArgs {
        table: Some("place-race".to_owned()),
        region: Some("us-east-1".to_owned()),
        endpoint_url: Some(moto.url.clone()),
    };
    ok(&args, &["registry", "init"]).await;
    cell(&args, "c-a", &["--capacity", "3"]).await;
    cell(&args, "c-b", &["--capacity", "3"]).await;
    cell(&args, "c-c", &["--capacity", "4"]).await;
    // Room enough, but never to be chosen.
    cell(
        &args,
        "c-drain",
        &["--capacity", "100", "--state", "DRAINING"],
    )
    .await;
    cell(&args, "c-down", &["--capacity", "100", "--state", "DOWN"]).await;
    let runs: Vec<_> = (0..24)
        .map(|i| {
            let args = args.clone();
            let strategy = if i % 2 == 0 { "least-loaded" } else { "hash" };
            tokio::spawn(async move {
                let t = format!("t{i:02}");
                cli(
                    &args,
                    &[
                        "tenant",
                        "place",
                        &t,
                        "--max-fill",
                        "1.0",
                        "--strategy",
                        strategy,
                    ],
                )
                .await
            })
        })
        .collect();
    let (mut placed, mut refused) = (Vec::new(), Vec::new());
    for r in runs {
        match r.await.unwrap() {
            Ok(v) => placed.push(v["cell"].as_str().unwrap().to_owned()),
            Err(e) => refused.push(e),
        }
    }
    assert_eq!(placed.len(), 10, "placed {placed:?}; refused {refused:?}");
    for e in &refused {
        assert!(
            e.starts_with("cellgate: no room for tenant t")
                && e.contains("c-a at 3/3 units (100.0%)")
                && e.contains("c-b at 3/3 units (100.0%)")
                && e.contains("c-c at 4/4 units (100.0%)")
                && !e.contains("c-drain"),
            "{e}"
        );
    }
    let u = usage(&args).await;
    assert_eq!(u["c-a"], (3, 3, Some(3)));
    assert_eq!(u["c-b"], (3, 3, Some(3)));
    assert_eq!(u["c-c"], (4, 4, Some(4)));
    assert_eq!((u["c-drain"].0, u["c-down"].0), (0, 0));
    // The counts are the records.
    let per = records_per_cell(&args).await;
    assert_eq!(
        per,
        BTreeMap::from([
            ("c-a".to_owned(), 3),
            ("c-b".to_owned(), 3),
            ("c-c".to_owned(), 4)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_active_cells_with_every_constraint_are_chosen() {
    let (args, _reg) = table("place-constraints").await;
    // `--region` of `cell put` is the cell's region (the table's comes from AWS_REGION).
    cell(
        &args,
        "eu-1",
        &["--capacity", "10", "--region", "eu-west-1", "--tag", "pci"],
    )
    .await;
    cell(
        &args,
        "eu-2",
        &["--capacity", "10", "--tag", "region=eu-west-1"],
    )
    .await;
    cell(
        &args,
        "us-1",
        &["--capacity", "10", "--region", "us-east-1", "--tag", "pci"],
    )
    .await;
    cell(
        &args,
        "eu-drain",
        &["--capacity", "10", "--region", "eu-west-1", "--tag", "pci"],
    )
    .await;
    ok(&args, &["cell", "drain", "eu-drain"]).await;
    cell(
        &args,
        "eu-nocap",
        &["--region", "eu-west-1", "--tag", "pci"],
    )
    .await;

    let out = ok(
        &args,
        &[
            "tenant",
            "place",
            "acme",
            "--region",
            "eu-west-1",
            "--require",
            "pci",
        ],
    )
    .await;
    assert_eq!(out["cell"], "eu-1", "{out}");
    assert_eq!(out["record"]["cell"], "eu-1");
    assert_eq!(out["record"]["version"], 1);
    assert_eq!(out["why"]["fill_before"], 0.0);
    assert_eq!(out["why"]["fill_after"], 0.1);
    let out = ok(&args, &["tenant", "place", "globex", "--require", "pci"]).await;
    let chosen = out["cell"].as_str().unwrap();
    // Least-loaded: eu-1 holds acme, so the empty us-1 wins.
    assert_eq!(chosen, "us-1", "{out}");
    let out = ok(
        &args,
        &["tenant", "place", "initech", "--region", "eu-west-1"],
    )
    .await;
    assert_eq!(out["cell"], "eu-2", "{out}");
    // Nothing anywhere else: the refusal says which constraint excluded which cell.
    let e = fails(
        &args,
        &[
            "tenant",
            "place",
            "umbrella",
            "--region",
            "ap-south-1",
            "--require",
            "pci",
        ],
    )
    .await;
    assert_eq!(
        e,
        "cellgate: no cell can take tenant umbrella: \
         eu-1 is in region eu-west-1, not ap-south-1; \
         eu-2 has no region (wanted ap-south-1), lacks pci; \
         eu-drain is DRAINING, is in region eu-west-1, not ap-south-1; \
         eu-nocap has no capacity (`cellgate cell put eu-nocap --capacity N`), is in region \
         eu-west-1, not ap-south-1; \
         us-1 is in region us-east-1, not ap-south-1"
    );
    // A DOWN cell is never chosen either, even as the only empty one.
    ok(&args, &["cell", "put", "us-1", "--state", "DOWN"]).await;
    for i in 0..4 {
        let out = ok(
            &args,
            &["tenant", "place", &format!("p{i}"), "--require", "pci"],
        )
        .await;
        assert_eq!(out["cell"], "eu-1", "{out}");
    }
    let u = usage(&args).await;
    assert_eq!(
        (u["eu-1"].0, u["us-1"].0, u["eu-drain"].0, u["eu-nocap"].0),
        (5, 1, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_gives_a_tenant_the_same_cell_and_a_new_cell_takes_only_some() {
    let (args, _reg) = table("place-hash").await;
    for c in ["h-1", "h-2", "h-3"] {
        cell(&args, c, &["--capacity", "1000"]).await;
    }
    let pick = |args: TableArgs, t: String| async move {
        let out = ok(
            &args,
            &["tenant", "place", &t, "--strategy", "hash", "--dry-run"],
        )
        .await;
        assert_eq!(out["dry_run"], true);
        out["cell"].as_str().unwrap().to_owned()
    };
    let tenants: Vec<String> = (0..30).map(|i| format!("tenant-{i}")).collect();
    let mut before = BTreeMap::new();
    for t in &tenants {
        let c = pick(args.clone(), t.clone()).await;
        assert_eq!(
            c,
            pick(args.clone(), t.clone()).await,
            "{t}: the same cell twice"
        );
        before.insert(t.clone(), c);
    }
    assert!(before.values().any(|c| c == "h-1") && before.values().any(|c| c == "h-3"));
    // A dry run wrote nothing.
    assert!(
        fails(&args, &["tenant", "get", "tenant-0"])
            .await
            .contains("not found")
    );
    assert_eq!(usage(&args).await["h-1"].0, 0);
    // A placement is where the dry run said.
    let out = ok(
        &args,
        &["tenant", "place", "tenant-0", "--strategy", "hash"],
    )
    .await;
    assert_eq!(out["cell"].as_str().unwrap(), before["tenant-0"]);
    cell(&args, "h-4", &["--capacity", "1000"]).await;
    let mut moved = 0;
    for t in &tenants[1..] {
        let after = pick(args.clone(), t.clone()).await;
        if after != before[t] {
            assert_eq!(after, "h-4", "{t} moved between old cells");
            moved += 1;
        }
    }
    // About a quarter expected (7 of 29); some, never all.
    assert!((1..20).contains(&moved), "{moved} of 29 moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_why_and_write_nothing() {
    let (args, _reg) = table("place-refuse").await;
    cell(&args, "r-1", &["--capacity", "10"]).await;
    cell(
        &args,
        "r-2",
        &["--capacity", "4", "--tier-units", "enterprise=2"],
    )
    .await;
    // At the default --max-fill 0.7: 7 units in r-1 and 2 in r-2.
    for i in 0..9 {
        ok(&args, &["tenant", "place", &format!("t{i}")]).await;
    }
    let e = fails(&args, &["tenant", "place", "t9"]).await;
    assert_eq!(
        e,
        "cellgate: no room for tenant t9 (tier standard, 1 unit) under --max-fill 0.7: every \
         eligible cell would pass it: r-1 at 7/10 units (70.0%), r-2 at 2/4 units (50.0%); add \
         a cell, raise a capacity (`cellgate cell put CELL --capacity N`), or pass a higher \
         --max-fill"
    );
    // Enterprise weighs 1 unit in r-1 and 2 in r-2: neither has room for it.
    let e = fails(&args, &["tenant", "place", "big", "--tier", "enterprise"]).await;
    assert!(
        e.contains("no room for tenant big (tier enterprise, 1-2 units) under --max-fill 0.7"),
        "{e}"
    );
    let out = ok(&args, &["tenant", "place", "t9", "--max-fill", "0.8"]).await;
    assert_eq!(out["cell"], "r-2", "{out}");
    let e = fails(&args, &["tenant", "place", "t0"]).await;
    assert!(
        e.starts_with("cellgate: tenant t0 already exists (cell r-")
            && e.ends_with("use `cellgate tenant move t0 --to CELL`"),
        "{e}"
    );
    let e = fails(&args, &["tenant", "place", "acme", "--max-fill", "1.5"]).await;
    assert!(e.starts_with("cellgate: --max-fill = `1.5`: "), "{e}");
    let e = fails(&args, &["tenant", "place", "acme", "--require", "PCI"]).await;
    assert!(
        e.starts_with("cellgate: --require = `PCI`: tags are"),
        "{e}"
    );
    let e = fails(&args, &["tenant", "place", "acme", "--tier", "gold plated"]).await;
    assert!(e.starts_with("cellgate: tier = `gold plated`"), "{e}");
    // Only the ten placements were written, and counted.
    let u = usage(&args).await;
    assert_eq!((u["r-1"], u["r-2"]), ((7, 7, Some(10)), (3, 3, Some(4))));
    assert_eq!(records_per_cell(&args).await.values().sum::<u64>(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_move_tier_and_offboarding_keep_the_counts() {
    let (args, _reg) = table("place-counts").await;
    cell(
        &args,
        "k-1",
        &["--capacity", "20", "--tier-units", "enterprise=5"],
    )
    .await;
    cell(&args, "k-2", &["--capacity", "20"]).await;
    let counts = |args: TableArgs| async move {
        let u = usage(&args).await;
        (u["k-1"].0, u["k-1"].1, u["k-2"].0, u["k-2"].1)
    };
    ok(&args, &["tenant", "place", "acme"]).await;
    ok(
        &args,
        &[
            "tenant",
            "put",
            "globex",
            "--cell",
            "k-1",
            "--tier",
            "enterprise",
        ],
    )
    .await;
    assert_eq!(counts(args.clone()).await, (2, 6, 0, 0));
    // A tier change changes the load where tier_units apply; suspending changes nothing.
    let out = ok(
        &args,
        &[
            "tenant",
            "put",
            "acme",
            "--cell",
            "k-1",
            "--tier",
            "enterprise",
        ],
    )
    .await;
    assert_eq!(out["counts"][0]["load"], 4, "{out}");
    ok(&args, &["tenant", "suspend", "acme"]).await;
    ok(&args, &["tenant", "resume", "acme"]).await;
    assert_eq!(counts(args.clone()).await, (2, 10, 0, 0));
    // A move takes the count from the source and gives it to the destination at the flip.
    let out = ok(
        &args,
        &["tenant", "move", "acme", "--to", "k-2", "--settle", "0s"],
    )
    .await;
    let flip = out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "flipped")
        .unwrap();
    assert_eq!(flip["counts"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(counts(args.clone()).await, (1, 5, 1, 1));
    // `tenant put` changing the cell moves it too; offboarding takes it out; back in, counted.
    ok(&args, &["tenant", "put", "globex", "--cell", "k-2"]).await;
    assert_eq!(counts(args.clone()).await, (0, 0, 2, 2));
    ok(
        &args,
        &[
            "tenant",
            "put",
            "globex",
            "--cell",
            "k-2",
            "--status",
            "OFFBOARDED",
        ],
    )
    .await;
    assert_eq!(counts(args.clone()).await, (0, 0, 1, 1));
    ok(
        &args,
        &[
            "tenant", "put", "globex", "--cell", "k-1", "--status", "ACTIVE",
        ],
    )
    .await;
    assert_eq!(counts(args.clone()).await, (1, 5, 1, 1));
    // A cell put without the placement flags keeps them and the counts; --clear-tags drops tags.
    ok(
        &args,
        &["cell", "put", "k-1", "--tag", "pci", "--tag", "eu-only"],
    )
    .await;
    let out = ok(&args, &["cell", "put", "k-1", "--max-in-flight", "50"]).await;
    assert_eq!(out["record"]["tags"], serde_json::json!(["pci", "eu-only"]));
    assert_eq!(
        (
            out["record"]["capacity"].clone(),
            out["record"]["tenants"].clone()
        ),
        (20.into(), 1.into())
    );
    assert_eq!(out["record"]["tier_units"]["enterprise"], 5);
    let out = ok(&args, &["cell", "put", "k-1", "--clear-tags"]).await;
    assert!(out["record"].get("tags").is_none(), "{out}");
    let e = fails(
        &args,
        &[
            "cell",
            "put",
            "k-1",
            "--tag",
            "region=eu-west-1",
            "--region",
            "us-east-1",
        ],
    )
    .await;
    assert!(
        e.starts_with("cellgate: --tag = `region=eu-west-1`: the cell's region is us-east-1"),
        "{e}"
    );
    assert_eq!(
        records_per_cell(&args).await,
        BTreeMap::from([("k-1".to_owned(), 1), ("k-2".to_owned(), 1)])
    );
}

/// A tenant record written as a table from before the counts would hold it: no count kept.
async fn raw_tenant(reg: &Registry, id: &str, cell: &str, tier: &str) {
    let mut r = tenant_record(RawTenant {
        id: id.to_owned(),
        cell: cell.to_owned(),
        status: None,
        tier: Some(tier.to_owned()),
        version: None,
        issuers: Vec::new(),
        limits: cellgate::ratelimit::TenantLimits::default(),
        arm: None,
        entitlements: Vec::new(),
    })
    .unwrap();
    r.version = 1;
    reg.commit(tenant_item(&r, &updated_at()), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_shows_the_counts_and_recount_repairs_them() {
    let (args, reg) = table("place-usage").await;
    cell(
        &args,
        "u-1",
        &[
            "--capacity",
            "10",
            "--tier-units",
            "enterprise=3",
            "--region",
            "eu-west-1",
            "--tag",
            "pci",
        ],
    )
    .await;
    cell(&args, "u-2", &["--capacity", "8"]).await;
    cell(&args, "u-3", &[]).await;
    raw_tenant(&reg, "a", "u-1", "standard").await;
    raw_tenant(&reg, "b", "u-1", "enterprise").await;
    raw_tenant(&reg, "c", "u-2", "standard").await;
    raw_tenant(&reg, "d", "elsewhere", "standard").await;
    ok(&args, &["tenant", "place", "e", "--require", "pci"]).await;
    let out = ok(&args, &["cell", "usage"]).await;
    let u1 = &out["cells"][0];
    assert_eq!(u1["cell"], "u-1");
    assert_eq!(
        (u1["tenants"].clone(), u1["load"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(u1["fill_percent"], "10.0%");
    assert_eq!(u1["tags"], serde_json::json!(["pci"]));
    assert_eq!(u1["region"], "eu-west-1");
    assert_eq!(out["cells"][2]["capacity"], Value::Null);
    assert_eq!(out["cells"][2]["fill"], Value::Null);

    let out = ok(&args, &["cell", "usage", "--recount"]).await;
    let recount = &out["recount"];
    assert_eq!(recount["fixed"], 2, "{out}");
    assert_eq!(recount["tenants_scanned"], 5);
    assert_eq!(recount["tenants_in_cells_not_in_the_table"]["elsewhere"], 1);
    assert_eq!(
        recount["drift"][0],
        serde_json::json!({"cell": "u-1", "stored": {"tenants": 1, "load": 1}, "counted": {"tenants": 3, "load": 5}})
    );
    assert_eq!(recount["drift"][1]["cell"], "u-2");
    let u = usage(&args).await;
    assert_eq!(
        (u["u-1"], u["u-2"], u["u-3"]),
        ((3, 5, Some(10)), (1, 1, Some(8)), (0, 0, None))
    );
    let again = ok(&args, &["cell", "usage", "--recount"]).await;
    assert_eq!(again["recount"]["fixed"], 0, "{again}");

    // `registry export` writes the placement attributes, and the file reads back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.jsonl");
    ok(
        &args,
        &["registry", "export", "--out", path.to_str().unwrap()],
    )
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("\"u-1\"") && l.starts_with("{\"cell\""))
        .unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["cell"]["capacity"], 10);
    assert_eq!(v["cell"]["tags"], serde_json::json!(["pci"]));
    assert_eq!(v["cell"]["tier_units"]["enterprise"], 3);
    assert_eq!(v["cell"]["region"], "eu-west-1");
    assert!(v["cell"].get("tenants").is_none(), "{line}");
    let data = cellgate::placement::file::read_registry(&path).unwrap();
    assert_eq!(data.cells().len(), 3);
}
