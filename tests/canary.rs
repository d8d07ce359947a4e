//! Canary by cell, end to end: a cell with weighted target groups serves each tenant from one
//! arm on every request (sticky), splits tenants by weight, keeps connect-failure failover
//! inside the tenant's arm, follows a weight change in the registry without a restart, and
//! serves a tenant pinned to an arm from that arm only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cellgate::demo::spawn_echo_target;
use common::{Harness, base_config};
use http::StatusCode;

/// Registry text: `cell-1` with a `stable` group (weight `stable`, targets `s`) and a `canary`
/// group (weight `canary`, targets `c`), and tenants `t000..` placed in it.
fn registry(s: &[String], c: &[String], (stable, canary): (u32, u32), tenants: usize) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "[[cells]]\nid = \"cell-1\"\n\n[[cells.groups]]\nname = \"stable\"\nversion = \"v1\"\n\
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

    // The admin API shows the groups with weights and versions.
    let cells = h.admin_get("/admin/cells").await.unwrap().json();
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
