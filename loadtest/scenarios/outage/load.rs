//! The outage scenario's load and monitor: closed-loop clients requesting the tenants in turn
//! (each answer timed and read for the cell that served it) and a scrape of the placement gauges
//! every `SCRAPE_EVERY`, both until the driver raises `stop`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::Empty;

use super::{CELLS, SCRAPE_EVERY};
use crate::common::{HttpClient, Scrape, send};

/// One answer: when it was sent (since the start of the load), for which tenant, and which
/// cell answered (`Err`: what went wrong instead).
pub struct Seen {
    pub at: Duration,
    pub latency: Duration,
    pub tenant: usize,
    pub cell: Result<usize, String>,
}

#[derive(serde::Deserialize)]
struct Echo<'a> {
    #[serde(borrow)]
    cell: Cow<'a, str>,
}

/// One closed-loop client: the tenants in turn, one request at a time, until `stop`.
pub async fn client_loop(
    client: HttpClient,
    uri: Uri,
    hosts: Arc<Vec<HeaderValue>>,
    first: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let tenant = i % hosts.len();
        i += 1;
        let req = Request::get(uri.clone())
            .header(header::HOST, hosts[tenant].clone())
            .body(Empty::new())
            .unwrap();
        let at = start.elapsed();
        let answer = send(&client, req).await;
        let latency = start.elapsed() - at;
        let cell = answer.and_then(|(status, body)| {
            if status != StatusCode::OK {
                let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
                return Err(format!("status {status}: {}", text.trim()));
            }
            let echo: Echo<'_> =
                serde_json::from_slice(&body).map_err(|_| "unreadable answer".to_owned())?;
            echo.cell
                .strip_prefix("cell-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| (1..=CELLS).contains(n))
                .map(|n| n - 1)
                .ok_or_else(|| format!("answer from unknown cell {}", echo.cell))
        });
        out.push(Seen {
            at,
            latency,
            tenant,
            cell,
        });
    }
    out
}

/// One `/metrics` sample of the placement gauges.
#[derive(Clone, Copy)]
pub struct Gauges {
    pub at: Duration,
    pub age: f64,
    pub failures: f64,
    pub generation: f64,
}

pub async fn monitor(
    probe: HttpClient,
    admin: SocketAddr,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Gauges> {
    let mut out = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(s) = Scrape::get(&probe, admin).await {
            out.push(Gauges {
                at: start.elapsed(),
                age: s.sum("cellgate_placement_snapshot_age_seconds", "", ""),
                failures: s.sum("cellgate_placement_refresh_failures_total", "", ""),
                generation: s.sum("cellgate_placement_snapshot_generation", "", ""),
            });
        }
        next += SCRAPE_EVERY;
        tokio::time::sleep_until(next.into()).await;
    }
    out
}
