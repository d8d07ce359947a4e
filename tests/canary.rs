//! Canary by cell, end to end: a cell with weighted target groups serves each tenant from one
//! arm on every request (sticky), splits tenants by weight, keeps connect-failure failover
//! inside the tenant's arm, follows a weight change in the registry without a restart, and
//! serves a tenant pinned to an arm from that arm only. With `[canary]`: the forced-arm header
//! is honoured only for tokens whose claim permits the arm, and never reaches a cell; with
//! `hash_by = "sub"` each user of a tenant keeps its own arm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cellgate::demo::spawn_echo_target;
use common::jwks::{claims, mint, patch};
use common::{AUDIENCE, Harness, ISSUER, Reply, base_config};
use http::{Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::Algorithm::RS256;
use serde_json::{Value, json};

/// Registry text: `cell-1` (wave 3) with a `stable` group (weight `stable`, targets `s`) and a `canary`
/// group (weight `canary`, targets `c`), and tenants `t000..` placed in it.
fn registry(s: &[String], c: &[String], (stable, canary): (u32, u32), tenants: usize) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "[[cells]]\nid = \"cell-1\"\nwave = 3\n\n[[cells.groups]]\nname = \"stable\"\nversion = \"v1\"\n\
         weight = {stable}\ntargets = [{}]\n\n[[cells.groups]]\nname = \"canary\"\n\
         version = \"v2\"\nweight = {canary}\ntargets = [{}]\n\n",
        list(s),
        list(c)
    );
    // `pin` is pinned to the canary whatever the weights.
    text.push_str(
        "[[tenants]]\nid = \"pin\"\ncell = \"cell-1\"\narm = \"canary\"\nversion = 1\n\n",
    );
    for i in 0..tenants {
        text.push_str(&format!(
            "[[tenants]]\nid = \"t{i:03}\"\ncell = \"cell-1\"\nversion = 1\n\n"
        ));
    }
    text
}

/// Which echo target answered each tenant, asking each `rounds` times; panics if a tenant was
/// answered by two arms.
async fn arms(h: &Harness, tenants: usize, rounds: usize) -> HashMap<String, String> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for _ in 0..rounds {
        for i in 0..tenants {
            let t = format!("t{i:03}");
            let r = h.get(&format!("{t}.app.test"), "/").await;
            assert_eq!(r.status, StatusCode::OK, "{t}: {}", r.body);
            let target = r.json()["target"].as_str().unwrap().to_owned();
            let arm = if target.starts_with("canary") {
                "canary"
            } else {
                "stable"
            };
            if let Some(prev) = seen.insert(t.clone(), arm.to_owned()) {
                assert_eq!(prev, arm, "{t} moved between arms without a weight change");
            }
        }
    }
    seen
}

fn count(arms: &HashMap<String, String>, arm: &str) -> usize {
    arms.values().filter(|a| *a == arm).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_stick_to_one_arm_split_by_weight_and_follow_a_weight_change() {
    let stable_a = spawn_echo_target("cell-1", "stable-a").await.unwrap();
    let stable_b = spawn_echo_target("cell-1", "stable-b").await.unwrap();
    let canary = spawn_echo_target("cell-1", "canary-a").await.unwrap();
    let url = |t: &cellgate::demo::EchoTarget| format!("http://{}", t.addr);
    // A dead stable target: connect failures must fail over to the other *stable* target.
    let dead = "http://127.0.0.1:1".to_owned();
    let s = vec![url(&stable_a), dead, url(&stable_b)];
    let c = vec![url(&canary)];
    let h = Harness::start_raw(
        &base_config(""),
        &registry(&s, &c, (80, 20), 200),
        vec![vec![stable_a, stable_b, canary]],
    )
    .await;

    for _ in 0..20 {
        let r = h.get("pin.app.test", "/").await;
        assert_eq!(
            r.json()["target"],
            "canary-a",
            "the pinned tenant left its arm"
        );
    }
    let before = arms(&h, 200, 3).await;
    let on_canary = count(&before, "canary");
    assert!(
        (20..=60).contains(&on_canary),
        "{on_canary} of 200 tenants on a 20% canary"
    );

    // The admin API shows the groups with weights and versions, and the cell's wave.
    let cells = h.admin_get("/admin/cells").await.unwrap().json();
    assert_eq!(cells["cells"][0]["wave"], 3);
    let groups = &cells["cells"][0]["groups"];
    assert_eq!(groups[1]["name"], "canary");
    assert_eq!(groups[1]["version"], "v2");
    assert_eq!(groups[1]["weight"], 20);

    // Raise the canary to 50: tenants only move *to* it; none leaves it.
    h.write_registry(&registry(&s, &c, (50, 50), 200));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cells = h.admin_get("/admin/cells").await.unwrap().json();
        if cells["cells"][0]["groups"][1]["weight"] == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "weight change never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = arms(&h, 200, 2).await;
    for (t, arm) in &before {
        if arm == "canary" {
            assert_eq!(after[t], "canary", "{t} left the canary when it grew");
        }
    }
    assert!(
        count(&after, "canary") > on_canary,
        "nobody moved to the bigger canary"
    );
    h.shutdown().await;
}

/// A token for `tenant` with `extra` claims merged in (a `null` removes one).
fn token_with(tenant: &str, extra: Value) -> String {
    let base = claims(ISSUER, AUDIENCE, tenant);
    mint(RS256, "rsa.pem", Some("rsa-1"), &patch(&base, extra))
}

/// GET / on `host` with an optional token and an optional forced-arm header.
async fn ask(h: &Harness, host: &str, token: Option<&str>, arm: Option<&str>) -> Reply {
    let mut b = Request::get(format!("http://{}/", h.addr)).header("host", host);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(a) = arm {
        b = b.header("x-cellgate-arm", a);
    }
    h.send(b.body(Full::<Bytes>::default()).unwrap()).await
}

/// The arm (`stable` or `canary`) that answered; asserts the header never reached the cell.
fn served_by(r: &Reply) -> &'static str {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let body = r.json();
    assert!(
        body["headers"].get("x-cellgate-arm").is_none(),
        "the forced-arm header reached the cell: {}",
        body["headers"]
    );
    if body["target"].as_str().unwrap().starts_with("canary") {
        "canary"
    } else {
        "stable"
    }
}

/// cell-1 with `stable` and `canary` at `weights`, one target each, the `[canary]` table given.
async fn canary_harness(canary: &str, weights: (u32, u32)) -> Harness {
    let stable = spawn_echo_target("cell-1", "stable-a").await.unwrap();
    let canary_t = spawn_echo_target("cell-1", "canary-a").await.unwrap();
    let s = vec![format!("http://{}", stable.addr)];
    let c = vec![format!("http://{}", canary_t.addr)];
    Harness::start_raw(
        &base_config(canary),
        &registry(&s, &c, weights, 5),
        vec![vec![stable, canary_t]],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forced_arm_header_needs_a_token_whose_claim_permits_the_arm() {
    let cfg = "[canary]\nforce_header = \"X-Cellgate-Arm\"\nforce_claim = \"canary_tester\"\n";
    // A dark canary: weight 0, only pinned or forced requests reach it.
    let h = canary_harness(cfg, (100, 0)).await;
    let host = "t001.app.test";
    let tester = token_with("t001", json!({"canary_tester": true}));
    let plain = token_with("t001", json!({}));
    let named = token_with("t001", json!({"canary_tester": "canary"}));
    let other = token_with("t001", json!({"canary_tester": "beta"}));
    let listed = token_with("t001", json!({"canary_tester": ["beta", "canary"]}));
    let refused = token_with("t001", json!({"canary_tester": false}));

    // Anonymous, or a token without the claim (or with `false`): the header is ignored.
    assert_eq!(
        served_by(&ask(&h, host, None, Some("canary")).await),
        "stable"
    );
    assert_eq!(
        served_by(&ask(&h, host, Some(&plain), Some("canary")).await),
        "stable"
    );
    assert_eq!(
        served_by(&ask(&h, host, Some(&refused), Some("canary")).await),
        "stable"
    );
    // The claim permits it: `true`, the arm's name, or a list holding it.
    for t in [&tester, &named, &listed] {
        for _ in 0..3 {
            assert_eq!(
                served_by(&ask(&h, host, Some(t), Some("canary")).await),
                "canary"
            );
        }
    }
    // A claim naming another arm; an arm the cell does not have; no header: the weights.
    assert_eq!(
        served_by(&ask(&h, host, Some(&other), Some("canary")).await),
        "stable"
    );
    assert_eq!(
        served_by(&ask(&h, host, Some(&tester), Some("nope")).await),
        "stable"
    );
    assert_eq!(
        served_by(&ask(&h, host, Some(&tester), None).await),
        "stable"
    );
    // The header beats the record's pin: `pin` is pinned to the canary.
    let pin_tester = token_with("pin", json!({"canary_tester": true}));
    assert_eq!(
        served_by(&ask(&h, "pin.app.test", None, Some("stable")).await),
        "canary"
    );
    let forced = ask(&h, "pin.app.test", Some(&pin_tester), Some("stable")).await;
    assert_eq!(served_by(&forced), "stable");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_by_sub_gives_each_user_of_a_tenant_its_own_sticky_arm() {
    let h = canary_harness("[canary]\nhash_by = \"sub\"\n", (50, 50)).await;
    let mut seen = HashMap::new();
    for round in 0..2 {
        for i in 0..40 {
            let t = token_with("t002", json!({"sub": format!("user-{i}")}));
            let arm = served_by(&ask(&h, "t002.app.test", Some(&t), None).await);
            if round == 0 {
                seen.insert(i, arm);
            } else {
                assert_eq!(seen[&i], arm, "user-{i} changed arms");
            }
        }
    }
    let on_canary = seen.values().filter(|a| **a == "canary").count();
    assert!(
        (5..=35).contains(&on_canary),
        "{on_canary} of 40 users on a 50% canary"
    );
    // Without a token (or a sub) the tenant's own arm decides, on every request.
    let anon = served_by(&ask(&h, "t002.app.test", None, None).await);
    let no_sub = token_with("t002", json!({"sub": null}));
    for _ in 0..5 {
        assert_eq!(served_by(&ask(&h, "t002.app.test", None, None).await), anon);
        assert_eq!(
            served_by(&ask(&h, "t002.app.test", Some(&no_sub), None).await),
            anon
        );
    }
    h.shutdown().await;
}
