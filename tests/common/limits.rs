//! Shared helpers for the *admit* stage tests (`tests/limits.rs`, `tests/limits_release.rs`):
//! tenant records and registry text, a harness with limits configured, requests by tenant,
//! metric sums and in-flight polls, and checks for the proxy's refusals and the cells' answers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use cellgate::demo::spawn_cells;
use http::{Request, StatusCode};
use http_body_util::Full;

use super::{Harness, Reply, base_config, cell_list};

#[allow(unused_imports)]
pub use super::{TEST_BOUND, within};

/// A tenant record for the registry file.
pub struct Tenant<'a> {
    pub id: &'a str,
    pub cell: &'a str,
    pub tier: Option<&'a str>,
    /// The body of `[tenants.limits]` (`"burst = 2"`), if any.
    pub limits: Option<&'a str>,
    pub version: u64,
}

pub const fn tenant<'a>(id: &'a str, cell: &'a str, tier: Option<&'a str>) -> Tenant<'a> {
    Tenant {
        id,
        cell,
        tier,
        limits: None,
        version: 1,
    }
}

/// Registry text: `cells` (id, targets), each with its `max_in_flight` from `caps` if listed,
/// then the tenants with their tiers and `[tenants.limits]` overrides.
pub fn registry_text(
    cells: &[(String, Vec<String>)],
    caps: &[(&str, u32)],
    tenants: &[Tenant],
) -> String {
    let mut s = String::new();
    for (id, targets) in cells {
        let t: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        s.push_str(&format!(
            "[[cells]]\nid = \"{id}\"\ntargets = [{}]\n",
            t.join(", ")
        ));
        if let Some((_, cap)) = caps.iter().find(|(c, _)| c == id) {
            s.push_str(&format!("max_in_flight = {cap}\n"));
        }
        s.push('\n');
    }
    for t in tenants {
        s.push_str(&format!(
            "[[tenants]]\nid = \"{}\"\ncell = \"{}\"\nstatus = \"ACTIVE\"\nversion = {}\n",
            t.id, t.cell, t.version
        ));
        if let Some(tier) = t.tier {
            s.push_str(&format!("tier = \"{tier}\"\n"));
        }
        if let Some(l) = t.limits {
            s.push_str(&format!("[tenants.limits]\n{l}\n"));
        }
        s.push('\n');
    }
    s
}

/// The three echo cells (`cell-1`..`cell-3`, two targets each) plus `extra_cells` (id, target
/// URL), the proxy configured with `limits` appended to the base config.
pub async fn start(
    limits: &str,
    extra_cells: &[(&str, &str)],
    caps: &[(&str, u32)],
    tenants: &[Tenant<'_>],
) -> Harness {
    let cells = spawn_cells(3, 2).await.unwrap();
    let mut list = cell_list(&cells);
    for (id, url) in extra_cells {
        list.push(((*id).to_owned(), vec![(*url).to_owned()]));
    }
    let text = registry_text(&list, caps, tenants);
    Harness::start_raw(&base_config(limits), &text, cells).await
}

/// A proxy in front of the echo cells with one tenant in `cell-1` on a `standard` tier that
/// allows one request in flight.
pub async fn start_one_in_flight(id: &str) -> Harness {
    let limits = "[limits]\n[limits.tiers.standard]\nconcurrency = 1\n";
    start(limits, &[], &[], &[tenant(id, "cell-1", Some("standard"))]).await
}

pub fn host(tenant: &str) -> String {
    format!("{tenant}.app.test")
}

pub async fn get(h: &Harness, tenant: &str, path: &str) -> Reply {
    h.get(&host(tenant), path).await
}

pub async fn post(h: &Harness, tenant: &str, path: &str) -> Reply {
    let req = Request::post(format!("http://{}{path}", h.addr))
        .header("host", host(tenant))
        .body(Full::new(Bytes::from_static(b"{\"write\":1}")))
        .unwrap();
    h.send(req).await
}

pub async fn metrics(h: &Harness) -> String {
    let r = h.admin_get("/metrics").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    r.body
}

/// The sum of every series of `name` whose labels include all of `labels` (0 when none).
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
            None => (head, ""),
        };
        if n != name {
            continue;
        }
        let pairs: Vec<(&str, &str)> = l
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if labels.iter().all(|want| pairs.contains(want)) {
            total += value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad sample: {line}"));
        }
    }
    total
}

pub async fn in_flight(h: &Harness, cell: &str) -> f64 {
    sum(
        &metrics(h).await,
        "cellgate_cell_in_flight",
        &[("cell", cell)],
    )
}

/// Polls the cell's in-flight gauge until it equals `want`; fails after `limit`.
pub async fn wait_in_flight(h: &Harness, cell: &str, want: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = in_flight(h, cell).await;
        if (now - want).abs() < f64::EPSILON {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cellgate_cell_in_flight{{cell=\"{cell}\"}} is {now}, not {want}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// Checks a refusal the proxy wrote itself: status, JSON body with exactly `error`,
/// `request_id` (equal to the `x-request-id` header) and, when given, `cell`; returns the
/// `Retry-After` seconds.
pub fn refusal(r: &Reply, status: StatusCode, code: &str, cell: Option<&str>) -> u64 {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(header(r, "content-type"), Some("application/json"));
    let v = r.json();
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {}", r.body));
    assert_eq!(v["error"], code, "{}", r.body);
    let id = v["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request_id: {}", r.body));
    assert!(!id.is_empty());
    assert_eq!(
        header(r, "x-request-id"),
        Some(id),
        "x-request-id is the body's request_id"
    );
    match cell {
        Some(c) => {
            assert_eq!(v["cell"], c, "{}", r.body);
            assert_eq!(obj.len(), 3, "only error, request_id and cell: {}", r.body);
        }
        None => {
            assert!(
                obj.get("cell").is_none(),
                "a tenant limit does not name the cell: {}",
                r.body
            );
            assert_eq!(obj.len(), 2, "only error and request_id: {}", r.body);
        }
    }
    // Never the cell's echo JSON: a refused request did not reach a cell.
    assert!(obj.get("target").is_none(), "{}", r.body);
    header(r, "retry-after")
        .unwrap_or_else(|| panic!("no retry-after on {}: {}", r.status, r.body))
        .parse()
        .unwrap()
}

/// Checks an answer that came from the echo cell `cell` for `tenant`.
pub fn from_cell(r: &Reply, tenant: &str, cell: &str) {
    assert_eq!(r.status, StatusCode::OK, "{tenant}: {}", r.body);
    let v = r.json();
    assert_eq!(v["cell"], cell, "{}", r.body);
    assert_eq!(v["tenant"], tenant, "{}", r.body);
}
