//! `cellgate registry export` end to end, against the DynamoDB-API server `tests/run.sh` starts
//! (moto, endpoint in `CELLGATE_TEST_DYNAMODB`): cells and tenants written with the operator
//! commands are exported by the real binary to a JSON Lines file, which the file source loads
//! to the same records and a proxy serves with the same placements; a bad item is skipped and
//! named; `--out -` streams to stdout; no temporary file is left behind. A cell's `protocol`,
//! set by `cell put --protocol`, is stored, kept by a later `cell put`, and exported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use cellgate::ops::{self, CellCommand, TableArgs, TenantCommand};
use cellgate::placement::dynamo::schema::{
    cell_from_item, cell_item, cell_key, tenant_from_item, tenant_item, tenant_key,
};
use cellgate::placement::dynamo::write::updated_at;
use cellgate::placement::{TenantRecord, TenantStatus};
use cellgate::upstream::Protocol;
use common::cli::{cellgate, run};
use common::dynamo::{endpoint, table};
use common::{Harness, base_config, cell_list};
use http::StatusCode;

/// `cellgate registry export --out OUT` on `args`'s table: (exit code, stdout, stderr).
fn export(args: &TableArgs, out: &str) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cellgate"))
        .args(["registry", "export", "--out", out, "--segments", "3"])
        .args(["--table", args.table.as_deref().unwrap()])
        .args(["--region", "us-east-1", "--endpoint-url", &endpoint()])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn cell_of(h: &Harness, tenant: &str) -> (StatusCode, String) {
    let r = h.get(&format!("{tenant}.app.test"), "/").await;
    let cell = if r.status == StatusCode::OK {
        r.json()["cell"].as_str().unwrap().to_owned()
    } else {
        String::new()
    };
    (r.status, cell)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_table_serves_the_same_placements_from_a_file() {
    let (args, reg) = table("export").await;
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    for (i, (id, targets)) in cell_list(&cells).into_iter().enumerate() {
        let cmd = CellCommand::Put {
            cell: id,
            targets,
            state: None,
            region: Some("eu-west-1".to_owned()),
            preserve_host: None,
            max_in_flight: Some(500),
            wave: u32::try_from(i).ok(),
            clear_wave: false,
            protocol: None,
            capacity: None,
            tier_units: Vec::new(),
            clear_tier_units: false,
            tags: Vec::new(),
            clear_tags: false,
        };
        ops::cell_command(&reg, cmd).await.unwrap();
    }
    let cell_ids: Vec<String> = cell_list(&cells).into_iter().map(|c| c.0).collect();
    let tenants: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    for (i, t) in tenants.iter().enumerate() {
        ops::tenant_command(&reg, TenantCommand::place(t, &cell_ids[i % 3]))
            .await
            .unwrap();
    }
    // One tenant with every optional field, one suspended.
    let full = TenantCommand::Put {
        tenant: "acme".to_owned(),
        cell: cell_ids[1].clone(),
        tier: Some("gold".to_owned()),
        status: None,
        issuers: vec!["https://idp.example".to_owned()],
        rate: Some(12.5),
        burst: Some(30),
        concurrency: None,
        clear_limits: false,
        arm: Some("stable".to_owned()),
        clear_arm: false,
        entitlements: Vec::new(),
        clear_entitlements: false,
        expect_version: None,
        force: false,
    };
    ops::tenant_command(&reg, full).await.unwrap();
    ops::tenant_command(&reg, TenantCommand::place("hooli", &cell_ids[2]))
        .await
        .unwrap();
    ops::tenant_command(
        &reg,
        TenantCommand::Suspend {
            tenant: "hooli".to_owned(),
        },
    )
    .await
    .unwrap();
    // An item the proxy would refuse, written around the CLI's checks: skipped and named.
    let bad = TenantRecord {
        id: "broken".to_owned(),
        cell: cell_ids[0].clone(),
        status: TenantStatus::Active,
        tier: "gold plated".to_owned(),
        version: 1,
        issuers: Vec::new(),
        limits: Default::default(),
        arm: None,
        entitlements: Vec::new(),
    };
    let client = cellgate::placement::dynamo::client(Some("us-east-1"), Some(&endpoint())).await;
    client
        .put_item()
        .table_name(args.table.as_deref().unwrap())
        .set_item(Some(tenant_item(&bad, &updated_at())))
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("registry.jsonl");
    let (code, stdout, stderr) = export(&args, out.to_str().unwrap());
    assert_eq!(code, Some(0), "{stderr}");
    let summary = json(&stdout);
    assert_eq!(summary["tenants"], 14, "{summary}");
    assert_eq!(summary["cells"], 3, "{summary}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(summary["skipped_items"][0]["item"], "tenant#broken");
    assert_eq!(summary["skipped_items"][0]["field"], "tier");
    assert_eq!(summary["out"], out.to_str().unwrap());
    assert_eq!(
        files_in(dir.path()),
        ["registry.jsonl"],
        "no temporary file left"
    );

    // The file source reads back exactly what the table holds.
    let data = cellgate::placement::file::read_registry(&out).unwrap();
    assert_eq!((data.tenant_count(), data.cells().len()), (14, 3));
    for t in data.tenants() {
        let item = reg.get(&tenant_key(&t.id)).await.unwrap().unwrap();
        assert_eq!(tenant_from_item(&item).unwrap(), t);
    }
    let acme = data.tenants().find(|t| t.id == "acme").unwrap();
    assert_eq!(
        (acme.limits.rate, acme.limits.burst, acme.arm.as_deref()),
        (Some(12.5), Some(30), Some("stable"))
    );
    let waves: Vec<_> = data.cells().iter().map(|c| c.wave).collect();
    assert!(waves.contains(&Some(2)) && data.cells().iter().all(|c| c.max_in_flight == Some(500)));

    // A proxy on the exported file routes every tenant to the cell the table names.
    let cfg = base_config("").replace(
        "path = \"registry.toml\"",
        &format!("path = {:?}", out.to_str().unwrap()),
    );
    let h = Harness::start_raw(&cfg, "", cells).await;
    for (i, t) in tenants.iter().enumerate() {
        assert_eq!(
            cell_of(&h, t).await,
            (StatusCode::OK, cell_ids[i % 3].clone())
        );
    }
    assert_eq!(cell_of(&h, "acme").await.1, cell_ids[1]);
    assert_eq!(cell_of(&h, "hooli").await.0, StatusCode::FORBIDDEN);
    assert_eq!(cell_of(&h, "broken").await.0, StatusCode::NOT_FOUND);

    // Exported again after a flip, by rename: the running proxy follows the file.
    ops::tenant_command(&reg, TenantCommand::place("t0", &cell_ids[2]))
        .await
        .unwrap();
    let (code, _, stderr) = export(&args, out.to_str().unwrap());
    assert_eq!(code, Some(0), "{stderr}");
    let mut seen = String::new();
    for _ in 0..200 {
        seen = cell_of(&h, "t0").await.1;
        if seen == cell_ids[2] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(seen, cell_ids[2], "the flip never reached the proxy");
    h.shutdown().await;

    // `-`: the lines on stdout, the summary on stderr.
    let (code, stdout, stderr) = export(&args, "-");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json(&stderr)["tenants"], 14);
    let piped = cellgate::placement::file::jsonl::parse_jsonl(&stdout, "stdout").unwrap();
    assert_eq!(piped.tenant_count(), 14);

    // Any other name would be read as TOML: refused before the table is read.
    let (code, stdout, stderr) = export(&args, dir.path().join("r.toml").to_str().unwrap());
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty() && stderr.contains("--out"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_protocol_is_stored_kept_and_exported() {
    let (args, reg) = table("protocol").await;
    let cli = |argv: &[&str]| {
        let mut cmd = cellgate(argv);
        cmd.args(["--table", args.table.as_deref().unwrap()])
            .args(["--endpoint-url", &endpoint()]);
        run(cmd)
    };
    let put = |id: &'static str, extra: &'static [&'static str]| {
        let mut argv = vec!["cell", "put", id, "--target", "http://127.0.0.1:9"];
        argv.extend_from_slice(extra);
        argv
    };
    let out = cli(&put("c-h2", &["--protocol", "http2"])).await.unwrap();
    assert_eq!(out["record"]["protocol"], "http2", "{out}");
    cli(&put("c-auto", &["--protocol", "auto"])).await.unwrap();
    cli(&put("c-h1", &[])).await.unwrap();
    // Read back: as the CLI prints it, and as the proxy reads the item.
    let got = cli(&["cell", "get", "c-h2"]).await.unwrap();
    assert_eq!(got["protocol"], "http2", "{got}");
    let item = reg.get(&cell_key("c-h2")).await.unwrap().unwrap();
    assert_eq!(
        cell_from_item(&item).unwrap().protocol,
        Some(Protocol::Http2)
    );
    let got = cli(&["cell", "get", "c-h1"]).await.unwrap();
    assert!(got.get("protocol").is_none(), "unset: no attribute: {got}");
    // A later put without --protocol keeps it; with one, changes it.
    cli(&["cell", "put", "c-h2", "--max-in-flight", "10"])
        .await
        .unwrap();
    let got = cli(&["cell", "get", "c-h2"]).await.unwrap();
    assert_eq!(
        (&got["protocol"], &got["max_in_flight"]),
        (&"http2".into(), &10.into())
    );
    cli(&["cell", "put", "c-auto", "--protocol", "http1"])
        .await
        .unwrap();
    assert_eq!(
        cli(&["cell", "get", "c-auto"]).await.unwrap()["protocol"],
        "http1"
    );
    cli(&["cell", "put", "c-auto", "--protocol", "auto"])
        .await
        .unwrap();
    // An item with a protocol outside the three, written around the CLI: the CLI refuses to
    // read it, naming the attribute, and the export skips it.
    let mut bad = cell_item(&cell_from_item(&item).unwrap(), &updated_at());
    bad.insert(
        "cell".to_owned(),
        aws_sdk_dynamodb::types::AttributeValue::S("c-bad".to_owned()),
    );
    bad.insert(
        "pk".to_owned(),
        aws_sdk_dynamodb::types::AttributeValue::S(cell_key("c-bad")),
    );
    bad.insert(
        "protocol".to_owned(),
        aws_sdk_dynamodb::types::AttributeValue::S("h2c".to_owned()),
    );
    let client = cellgate::placement::dynamo::client(Some("us-east-1"), Some(&endpoint())).await;
    client
        .put_item()
        .table_name(args.table.as_deref().unwrap())
        .set_item(Some(bad))
        .send()
        .await
        .unwrap();
    let e = cli(&["cell", "put", "c-bad", "--max-in-flight", "5"])
        .await
        .unwrap_err();
    assert!(
        e.contains("stored cell c-bad: protocol")
            && e.contains("h2c")
            && e.contains("http1, http2 or auto"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("registry.jsonl");
    let (code, stdout, stderr) = export(&args, out.to_str().unwrap());
    assert_eq!(code, Some(0), "{stderr}");
    let summary = json(&stdout);
    assert_eq!(
        (&summary["cells"], &summary["skipped"]),
        (&3.into(), &1.into()),
        "{summary}"
    );
    assert_eq!(summary["skipped_items"][0]["item"], "cell#c-bad");
    assert_eq!(summary["skipped_items"][0]["field"], "protocol");
    // The lines carry it (none for the unset cell), and the file source gives it to the targets.
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(json).collect();
    let protocol_of = |id: &str| {
        lines
            .iter()
            .find(|l| l["cell"]["id"] == id)
            .map(|l| l["cell"].get("protocol").cloned())
            .unwrap()
    };
    assert_eq!(protocol_of("c-h2"), Some("http2".into()));
    assert_eq!(protocol_of("c-auto"), Some("auto".into()));
    assert_eq!(protocol_of("c-h1"), None);
    let data = cellgate::placement::file::read_registry(&out).unwrap();
    let mut spoken: Vec<_> = data
        .cells()
        .iter()
        .map(|c| (c.id.to_string(), c.targets[0].protocol))
        .collect();
    spoken.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        spoken,
        [
            ("c-auto".to_owned(), Protocol::Auto),
            ("c-h1".to_owned(), Protocol::Http1),
            ("c-h2".to_owned(), Protocol::Http2),
        ]
    );
}
