//! The API key lifecycle end to end: the real `cellgate apikey ...` binary against a real
//! DynamoDB-API server (moto, started by `tests/run.sh`, endpoint in `CELLGATE_TEST_DYNAMODB`)
//! and a running proxy following the table with `tenant.sources = ["api_key"]`, in front of
//! echo cells that say which cell answered and which headers they saw. A created key reaches
//! its tenant's cell (the cell sees the key's id, never the key), `list` shows no secret, a
//! revocation and the end of a rotation's grace turn the key away within a bounded wait, and a
//! tenant's entitlements (`tenant put --entitlement`) and a key's scopes decide a route. Bad
//! input fails on one line and writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cellgate::apikey::{self, KeyHash};
use cellgate::ops::{self, CellCommand, TableArgs};
use cellgate::placement::dynamo::write::Registry;
use cellgate::placement::file::shape::FileKey;
use cellgate::placement::record::key_record;
use common::cli::{cellgate, run};
use common::dynamo::{endpoint, table};
use common::{Harness, Reply, base_config, cell_list};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

/// How long a change may take to reach the proxy (it polls every 50 ms).
const PROPAGATION: Duration = Duration::from_secs(5);

/// `cellgate ARGV` on `args`'s table.
async fn cli(args: &TableArgs, argv: &[&str]) -> Result<Value, String> {
    let mut cmd = cellgate(argv);
    cmd.args(["--table", args.table.as_deref().unwrap()]).args([
        "--endpoint-url",
        &endpoint(),
        "--region",
        "us-east-1",
    ]);
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

/// Three echo cells in the table and a proxy on it, identifying tenants by API key only
/// (`extra`: more config).
async fn proxy(args: &TableArgs, reg: &Registry, extra: &str) -> Harness {
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    for (id, targets) in cell_list(&cells) {
        let cmd = CellCommand::Put {
            cell: id,
            targets,
            state: None,
            region: None,
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
    let file_registry =
        "[registry]\nsource = \"file\"\npath = \"registry.toml\"\npoll_interval = \"20ms\"";
    let sources = "sources = [\"jwt\", \"subdomain\"]";
    let cfg = base_config(extra);
    assert!(
        cfg.contains(file_registry) && cfg.contains(sources),
        "base_config changed shape"
    );
    let cfg = cfg.replace(sources, "sources = [\"api_key\"]").replace(
        file_registry,
        &format!(
            "[registry]\nsource = \"dynamodb\"\ntable = \"{}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\npoll_interval = \"50ms\"",
            args.table.as_deref().unwrap(),
            endpoint()
        ),
    );
    Harness::start_raw(&cfg, "", cells).await
}

/// `GET path` with `key` in `x-api-key` (or, with `authorization`, as `Authorization: ApiKey`).
async fn call(h: &Harness, key: &str, path: &str, authorization: bool) -> Reply {
    let b = Request::get(format!("http://{}{path}", h.addr)).header("host", "api.test");
    let b = if authorization {
        b.header("authorization", format!("ApiKey {key}"))
    } else {
        b.header("x-api-key", key)
    };
    h.send(b.body(Full::<Bytes>::default()).unwrap()).await
}

/// The cell that answered `key` on `/`, after checking what the cell saw of the key.
async fn cell_for(h: &Harness, key: &str, authorization: bool) -> String {
    let r = call(h, key, "/", authorization).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let echo = r.json();
    let id = apikey::parse(key).unwrap().id;
    assert_eq!(echo["headers"]["x-api-key-id"], id, "{echo}");
    assert!(echo["headers"].get("x-api-key").is_none(), "{echo}");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert!(!r.body.contains(&key[4 + apikey::ID_LEN..]), "{}", r.body);
    echo["cell"].as_str().unwrap().to_owned()
}

/// The error code of a refused call.
async fn refusal(h: &Harness, key: &str, path: &str) -> Option<(StatusCode, String)> {
    let r = call(h, key, path, false).await;
    (r.status != StatusCode::OK).then(|| (r.status, r.json()["error"].as_str().unwrap().to_owned()))
}

/// Polls `check` every 20 ms until it holds; fails naming `what` after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key_of(created: &Value) -> String {
    created["key"].as_str().unwrap().to_owned()
}

// Property: a created key reaches its tenant's cell (which sees its id, not the key), is listed
// without secrets, and is refused everywhere within the bound once revoked; revoke is
// idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_key_reaches_its_cell_until_it_is_revoked() {
    let (args, reg) = table("keys-revoke").await;
    let h = proxy(&args, &reg, "").await;
    ok(&args, &["tenant", "put", "acme", "--cell", "cell-2"]).await;
    let before = unix_now();
    let created = ok(
        &args,
        &[
            "apikey",
            "create",
            "--tenant",
            "acme",
            "--expires",
            "90d",
            "--scope",
            "reports",
        ],
    )
    .await;
    let key = key_of(&created);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(apikey::parse(&key).unwrap().id, id);
    assert_eq!(
        (&created["tenant"], &created["version"], &created["status"]),
        (
            &Value::from("acme"),
            &Value::from(1),
            &Value::from("ACTIVE")
        )
    );
    assert_eq!(created["scopes"], serde_json::json!(["reports"]));
    let at = created["created_at"].as_u64().unwrap();
    assert!((before..=unix_now()).contains(&at), "{created}");
    assert_eq!(created["expires_at"].as_u64(), Some(at + 90 * 86_400));

    // A key made a moment ago works at once, by either header, in its tenant's cell.
    assert_eq!(cell_for(&h, &key, false).await, "cell-2");
    assert_eq!(cell_for(&h, &key, true).await, "cell-2");
    // A second key without expiry or scopes.
    let plain = ok(&args, &["apikey", "create", "--tenant", "acme"]).await;
    assert_eq!(
        (&plain["expires_at"], &plain["scopes"]),
        (&Value::Null, &serde_json::json!([]))
    );

    let listed = ok(&args, &["apikey", "list", "--tenant", "acme"]).await;
    let text = listed.to_string();
    for secret in [&key, &key_of(&plain)] {
        assert!(!text.contains(&secret[4 + apikey::ID_LEN..]), "{text}");
    }
    assert!(!text.contains("sha256") && !text.contains("hash"), "{text}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{text}");
    let ours = listed.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(
        (&ours["status"], &ours["expired"], &ours["version"]),
        (&Value::from("ACTIVE"), &Value::from(false), &Value::from(1))
    );
    assert!(listed[0]["created_at"].as_u64() <= listed[1]["created_at"].as_u64());
    // Another tenant's list does not show them.
    ok(&args, &["tenant", "put", "globex", "--cell", "cell-1"]).await;
    let other = ok(&args, &["apikey", "list", "--tenant", "globex"]).await;
    assert_eq!(other, serde_json::json!([]));

    let revoked = ok(&args, &["apikey", "revoke", &id]).await;
    assert_eq!(
        (&revoked["status"], &revoked["version"], &revoked["changed"]),
        (&Value::from("REVOKED"), &Value::from(2), &Value::from(true))
    );
    let took = until(PROPAGATION, "revoked key refused", || async {
        refusal(&h, &key, "/").await
            == Some((StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned()))
    })
    .await;
    eprintln!("revocation reached the proxy after {took:?}");
    // The other key of the tenant still works; a second revoke changes nothing.
    assert_eq!(cell_for(&h, &key_of(&plain), false).await, "cell-2");
    let again = ok(&args, &["apikey", "revoke", &id]).await;
    assert_eq!(
        (&again["changed"], &again["version"]),
        (&Value::from(false), &Value::from(2))
    );
    assert!(again.get("epoch").is_none(), "{again}");
    h.shutdown().await;
}

// Property: rotate makes a new key at once and keeps the old one working for the grace only;
// both land in one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keeps_the_old_key_for_the_grace_only() {
    let (args, reg) = table("keys-rotate").await;
    let h = proxy(&args, &reg, "").await;
    ok(&args, &["tenant", "put", "initech", "--cell", "cell-3"]).await;
    let old = ok(
        &args,
        &[
            "apikey", "create", "--tenant", "initech", "--scope", "a", "--scope", "b",
        ],
    )
    .await;
    let (old_key, old_id) = (key_of(&old), old["id"].as_str().unwrap().to_owned());
    assert_eq!(cell_for(&h, &old_key, false).await, "cell-3");

    let epoch = reg.epoch().await.unwrap();
    let new = ok(&args, &["apikey", "rotate", &old_id, "--grace", "2s"]).await;
    assert_eq!(reg.epoch().await.unwrap(), epoch + 1, "one transaction");
    let new_key = key_of(&new);
    let old_ends = new["old_expires_at"].as_u64().unwrap();
    assert_eq!(new["replaces"], old_id.as_str());
    assert_eq!(
        (&new["tenant"], &new["scopes"], &new["expires_at"]),
        (&Value::from("initech"), &old["scopes"], &Value::Null),
        "same tenant and scopes; no expiry, as the old key had none"
    );
    assert_eq!(old_ends, new["created_at"].as_u64().unwrap() + 2);
    assert_ne!(new_key, old_key);

    // Both work now; the old one stops at the end of the grace, not before.
    assert_eq!(cell_for(&h, &new_key, false).await, "cell-3");
    assert_eq!(cell_for(&h, &old_key, true).await, "cell-3");
    until(
        Duration::from_secs(2) + PROPAGATION,
        "old key refused after the grace",
        || async {
            match refusal(&h, &old_key, "/").await {
                None => false,
                Some(r) => {
                    assert_eq!(r, (StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned()));
                    assert!(unix_now() >= old_ends, "refused before the grace ended");
                    true
                }
            }
        },
    )
    .await;
    assert_eq!(cell_for(&h, &new_key, false).await, "cell-3");

    let listed = ok(&args, &["apikey", "list", "--tenant", "initech"]).await;
    let was = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == old_id.as_str())
        .unwrap();
    assert_eq!(
        (&was["status"], &was["expired"], &was["version"]),
        (&Value::from("ACTIVE"), &Value::from(true), &Value::from(2))
    );
    // An expired key is not rotated; a key with an expiry passes its lifetime on.
    let e = fails(&args, &["apikey", "rotate", &old_id]).await;
    assert!(e.contains("the key expired at"), "{e}");
    let dated = ok(
        &args,
        &["apikey", "create", "--tenant", "initech", "--expires", "1h"],
    )
    .await;
    let dated_id = dated["id"].as_str().unwrap();
    let next = ok(&args, &["apikey", "rotate", dated_id, "--grace", "0s"]).await;
    let at = next["created_at"].as_u64().unwrap();
    assert_eq!(next["expires_at"].as_u64(), Some(at + 3600));
    assert_eq!(next["old_expires_at"].as_u64(), Some(at));
    let next = ok(
        &args,
        &[
            "apikey",
            "rotate",
            next["id"].as_str().unwrap(),
            "--expires",
            "2d",
        ],
    )
    .await;
    let at = next["created_at"].as_u64().unwrap();
    assert_eq!(next["expires_at"].as_u64(), Some(at + 2 * 86_400));
    h.shutdown().await;
}

// Property: `tenant put --entitlement` grants a route, `--clear-entitlements` takes it away, a
// put without either keeps the list, and a key's scopes narrow what its tenant holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlements_and_scopes_decide_a_route() {
    let (args, reg) = table("keys-entitle").await;
    let routes = "[[entitlements.routes]]\nentitlement = \"reports\"\npath_prefix = \"/reports\"\n";
    let h = proxy(&args, &reg, routes).await;
    ok(&args, &["tenant", "put", "acme", "--cell", "cell-1"]).await;
    let any = key_of(&ok(&args, &["apikey", "create", "--tenant", "acme"]).await);
    let billing = ok(
        &args,
        &["apikey", "create", "--tenant", "acme", "--scope", "billing"],
    )
    .await;
    let billing = key_of(&billing);
    let not_entitled = Some((StatusCode::FORBIDDEN, "not_entitled".to_owned()));
    assert_eq!(refusal(&h, &any, "/reports/q1").await, not_entitled);
    assert_eq!(refusal(&h, &any, "/other").await, None);

    let put = ok(
        &args,
        &[
            "tenant",
            "put",
            "acme",
            "--cell",
            "cell-1",
            "--entitlement",
            "reports",
        ],
    )
    .await;
    assert_eq!(
        put["record"]["entitlements"],
        serde_json::json!(["reports"])
    );
    until(PROPAGATION, "entitlement granted", || async {
        refusal(&h, &any, "/reports/q1").await.is_none()
    })
    .await;
    // The key scoped to `billing` does not reach `reports`, whatever its tenant holds.
    assert_eq!(refusal(&h, &billing, "/reports/q1").await, not_entitled);
    // A put without the flags keeps the list.
    let kept = ok(
        &args,
        &[
            "tenant", "put", "acme", "--cell", "cell-1", "--tier", "gold",
        ],
    )
    .await;
    assert_eq!(
        kept["record"]["entitlements"],
        serde_json::json!(["reports"])
    );

    let cleared = ok(
        &args,
        &[
            "tenant",
            "put",
            "acme",
            "--cell",
            "cell-1",
            "--clear-entitlements",
        ],
    )
    .await;
    assert!(cleared["record"].get("entitlements").is_none(), "{cleared}");
    until(PROPAGATION, "entitlement withdrawn", || async {
        refusal(&h, &any, "/reports/q1").await == not_entitled
    })
    .await;
    let e = fails(
        &args,
        &[
            "tenant",
            "put",
            "acme",
            "--cell",
            "cell-1",
            "--entitlement",
            "a b",
        ],
    )
    .await;
    assert!(e.starts_with("cellgate: --entitlement = `a b`: "), "{e}");
    // The flags conflict (clap's usage error, before the table is read).
    let out = cellgate(&[
        "tenant",
        "put",
        "acme",
        "--cell",
        "c",
        "--entitlement",
        "x",
        "--clear-entitlements",
    ])
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    h.shutdown().await;
}

// Property: bad input fails on one line naming what is wrong, and writes nothing; a printed
// record needs no table and verifies the printed key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_on_one_line_and_writes_nothing() {
    let (args, reg) = table("keys-bad").await;
    ok(&args, &["tenant", "put", "acme", "--cell", "cell-1"]).await;
    let gone = [
        "tenant",
        "put",
        "gone",
        "--cell",
        "cell-1",
        "--status",
        "OFFBOARDED",
    ];
    ok(&args, &gone).await;
    let key = ok(&args, &["apikey", "create", "--tenant", "acme"]).await;
    let id = key["id"].as_str().unwrap().to_owned();
    ok(&args, &["apikey", "revoke", &id]).await;
    let epoch = reg.epoch().await.unwrap();
    let table = args.table.as_deref().unwrap();

    let cases: &[(&[&str], String)] = &[
        (
            &["apikey", "create", "--tenant", "nobody"],
            format!("cellgate: tenant nobody not found in table {table}"),
        ),
        (
            &["apikey", "create", "--tenant", "gone"],
            "cellgate: --tenant = `gone`: the tenant is OFFBOARDED".to_owned(),
        ),
        (
            &[
                "apikey",
                "create",
                "--tenant",
                "acme",
                "--scope",
                "bad scope",
            ],
            "cellgate: --scope = `bad scope`: ".to_owned(),
        ),
        (
            &["apikey", "create", "--tenant", "acme", "--expires", "soon"],
            "cellgate: --expires = `soon`: not a duration".to_owned(),
        ),
        (
            &["apikey", "revoke", "aaaaaaaaaaaa"],
            format!("cellgate: apikey aaaaaaaaaaaa not found in table {table}"),
        ),
        (
            &["apikey", "rotate", "aaaaaaaaaaaa"],
            format!("cellgate: apikey aaaaaaaaaaaa not found in table {table}"),
        ),
        (
            &["apikey", "revoke", "NOT-AN-ID"],
            "cellgate: id = `NOT-AN-ID`: a key id is 12 characters".to_owned(),
        ),
        (
            &["apikey", "rotate", &id],
            format!("cellgate: id = `{id}`: the key is REVOKED"),
        ),
        (
            &["apikey", "rotate", &id, "--grace", "a while"],
            "cellgate: --grace = `a while`: not a duration".to_owned(),
        ),
        (
            &["apikey", "list", "--tenant", "nobody"],
            format!("cellgate: tenant nobody not found in table {table}"),
        ),
    ];
    for (argv, want) in cases {
        let line = fails(&args, argv).await;
        assert!(line.starts_with(want.as_str()), "{argv:?}: {line}");
    }
    // A whole key given for an id is refused without being echoed.
    let other = key_of(&ok(&args, &["apikey", "create", "--tenant", "acme"]).await);
    let line = fails(&args, &["apikey", "revoke", &other]).await;
    assert!(!line.contains(&other[4..]), "{line}");
    assert_eq!(
        reg.epoch().await.unwrap(),
        epoch + 1,
        "only the one create wrote"
    );

    // --print-record: no table at all; the record is a file registry's, and verifies the key.
    let printed = run(cellgate(&[
        "apikey",
        "create",
        "--print-record",
        "--tenant",
        "globex",
        "--scope",
        "reports",
        "--expires",
        "30d",
    ]))
    .await
    .unwrap();
    let key = printed["key"].as_str().unwrap();
    let file: FileKey = serde_json::from_value(printed["record"].clone()).unwrap();
    let record = key_record(file.into_raw()).unwrap();
    assert!(record.hash.verifies(&apikey::parse(key).unwrap()));
    assert_ne!(record.hash, KeyHash::of("x", "y"));
    assert_eq!(
        (
            record.tenant.as_str(),
            record.scopes.as_slice(),
            record.version
        ),
        ("globex", &["reports".to_owned()][..], 1)
    );
    assert_eq!(record.expires_at, Some(record.created_at + 30 * 86_400));
    let line = run(cellgate(&[
        "apikey",
        "create",
        "--print-record",
        "--tenant",
        "Not Valid",
    ]))
    .await
    .unwrap_err();
    assert!(
        line.starts_with("cellgate: --tenant = `Not Valid`: "),
        "{line}"
    );
}
