//! What the proxy reports during the canary scenario: the weights `/admin/cells` shows (to wait
//! for a registry change to be applied) and `cellgate_group_requests_total` by cell, group,
//! version and status class (to compare with the clients' counts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::world::World;
use super::{ARMS, CELLS, RELOAD_TIMEOUT};
use crate::common::{HttpClient, Scrape, get};

/// The weights `/admin/cells` shows, by cell and arm (`None`: no such group).
pub async fn admin_weights(
    client: &HttpClient,
    admin: SocketAddr,
) -> Option<Vec<[Option<u32>; 2]>> {
    let (status, body) = get(client, format!("http://{admin}/admin/cells"))
        .await
        .ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let mut out = vec![[None, None]; CELLS];
    for cell in v["cells"].as_array()? {
        let Some(c) = (0..CELLS).find(|&c| cell["cell"] == World::cell_name(c).as_str()) else {
            continue;
        };
        for g in cell["groups"].as_array()? {
            if let Some(arm) = ARMS.iter().position(|(name, _)| g["name"] == *name) {
                out[c][arm] = g["weight"].as_u64().and_then(|w| u32::try_from(w).ok());
            }
        }
    }
    Some(out)
}

/// Waits until `/admin/cells` shows canary weight `w` (and stable 100 - w) in every cell.
pub async fn wait_for_weight(client: &HttpClient, admin: SocketAddr, w: u32) -> Option<Duration> {
    let start = Instant::now();
    let want = [Some(100 - w), Some(w)];
    while start.elapsed() < RELOAD_TIMEOUT {
        if admin_weights(client, admin)
            .await
            .is_some_and(|cells| cells.iter().all(|c| *c == want))
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// (cell, group, version, status_class): the labels of `cellgate_group_requests_total`.
pub type CounterKey = (String, String, String, String);
pub type GroupCounters = HashMap<CounterKey, u64>;

pub async fn group_counters(
    client: &HttpClient,
    admin: SocketAddr,
) -> Result<GroupCounters, String> {
    let scrape = Scrape::get(client, admin).await?;
    let mut out = GroupCounters::new();
    for (l, value) in scrape.series("cellgate_group_requests_total") {
        let key = |k: &str| l.get(k).cloned().unwrap_or_default();
        out.insert(
            (
                key("cell"),
                key("group"),
                key("version"),
                key("status_class"),
            ),
            value as u64,
        );
    }
    Ok(out)
}
