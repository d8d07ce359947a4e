//! Helpers for the failure-domain tests: a proxy in front of [`Upstream`] servers, bounded
//! polls, and readings of `GET /admin/cells` and `/metrics` for one cell, target or address.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::limits::{metrics, sum};
use super::upstream::Upstream;
use super::{Harness, base_config, registry};

#[allow(unused_imports)]
pub use super::{TEST_BOUND, within};

/// The proxy with `extra` appended to the base config, cells `(id, target URLs)` and tenants
/// `(id, cell, status)`.
pub async fn start(
    extra: &str,
    cells: &[(&str, Vec<String>)],
    tenants: &[(&str, &str, &str)],
) -> Harness {
    let list: Vec<(String, Vec<String>)> = cells
        .iter()
        .map(|(id, urls)| ((*id).to_owned(), urls.clone()))
        .collect();
    Harness::start_raw(&base_config(extra), &registry(&list, tenants), Vec::new()).await
}

/// The proxy with `server` keys added to `[server]` (sub-tables such as `[server.http2]` may
/// follow them) and `listener` keys to its listener, in front of one cell `a` (one upstream)
/// holding tenant `acme`: the set-up of the ingress tests.
pub async fn one_cell(server: &str, listener: &str) -> (Harness, Arc<Upstream>) {
    let up = Upstream::start("a", "a-1").await;
    let config = base_config("")
        .replace(
            "shutdown_grace = \"5s\"",
            &format!("shutdown_grace = \"5s\"\n{server}\n"),
        )
        .replace(
            "address = \"127.0.0.1:0\"\n\n[admin]",
            &format!("address = \"127.0.0.1:0\"\n{listener}\n\n[admin]"),
        );
    let cells = vec![("a".to_owned(), urls(&[&up]))];
    let text = registry(&cells, &[("acme", "a", "ACTIVE")]);
    (Harness::start_raw(&config, &text, Vec::new()).await, up)
}

/// The URLs of `ups`, for a cell's `targets`.
pub fn urls(ups: &[&Arc<Upstream>]) -> Vec<String> {
    ups.iter().map(|u| u.url()).collect()
}

/// Polls `check` every 20 ms until it holds; fails naming `what` after `limit`. Returns how
/// long it took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
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

/// `GET /admin/cells`, the entry of cell `id`.
pub async fn admin_cell(h: &Harness, id: &str) -> Value {
    let all = h.admin_get("/admin/cells").await.unwrap().json();
    all["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cell"] == id)
        .unwrap_or_else(|| panic!("no cell {id} in {all}"))
        .clone()
}

/// The addresses `/admin/cells` lists for target `url` of cell `cell`.
pub async fn admin_addresses(h: &Harness, cell: &str, url: &str) -> Vec<Value> {
    let c = admin_cell(h, cell).await;
    c["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["url"] == url)
        .unwrap_or_else(|| panic!("no target {url} in {c}"))["addresses"]
        .as_array()
        .unwrap()
        .clone()
}

/// The `/admin/cells` entry of address `addr` (of any target) in cell `cell`.
pub async fn admin_address(h: &Harness, cell: &str, addr: SocketAddr) -> Value {
    let c = admin_cell(h, cell).await;
    c["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["addresses"].as_array().unwrap().iter())
        .find(|a| a["address"] == addr.to_string())
        .unwrap_or_else(|| panic!("no address {addr} in {c}"))
        .clone()
}

/// The sum of `name`'s series matching `labels`, read from `/metrics` now.
pub async fn metric(h: &Harness, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(&metrics(h).await, name, labels)
}

/// `cellgate_endpoint_healthy` of `up`'s address (target named by its IP).
pub async fn endpoint_healthy(h: &Harness, up: &Upstream) -> f64 {
    let addr = up.addr.to_string();
    metric(
        h,
        "cellgate_endpoint_healthy",
        &[("target", &up.url()), ("address", &addr)],
    )
    .await
}
