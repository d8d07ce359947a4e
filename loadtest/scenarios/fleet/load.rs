//! The fleet scenario's load and monitors: open-loop streams (one tenant on one node, each
//! answer stamped with when it was sent, from the timeline's origin) and a scrape of each node's
//! breaker and node-count gauges every `POLL`, until the driver raises `stop`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Uri};

use super::POLL;
use crate::common::{HttpClient, Sample, Scrape, open_loop};

/// One answer: when its request left (since the origin), from which node, its status (0: none).
#[derive(Clone, Copy)]
pub struct Hit {
    pub at: Duration,
    pub node: usize,
    pub status: u16,
}

/// Sends at `rate` per second to one node from `origin + offset periods` until `origin + len`,
/// open loop (`common::open_loop`); every answer with its send time.
#[expect(clippy::too_many_arguments, reason = "one schedule, spelled out")]
pub async fn stream(
    client: HttpClient,
    uri: Uri,
    host: HeaderValue,
    rate: f64,
    origin: Instant,
    offset: f64,
    len: Duration,
    node: usize,
) -> Vec<Hit> {
    let samples = open_loop(
        client,
        uri,
        move || host.clone(),
        rate,
        origin,
        offset,
        len,
        false,
    )
    .await;
    stamp(&samples, rate, offset, node)
}

/// `open_loop`'s schedule, replayed: request `i` was due at `period x offset + i x period` after
/// the origin (the same `Duration` arithmetic), and left `lag` after that.
fn stamp(samples: &[Sample], rate: f64, offset: f64, node: usize) -> Vec<Hit> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut due = period.mul_f64(offset);
    samples
        .iter()
        .map(|s| {
            let h = Hit {
                at: due + s.lag,
                node,
                status: s.status,
            };
            due += period;
            h
        })
        .collect()
}

/// One scrape of a node's fleet gauges: when it was sent and answered (since the origin).
#[derive(Clone, Copy)]
pub struct Gauges {
    pub sent: Duration,
    pub got: Duration,
    pub breaker: f64,
    pub nodes: f64,
}

/// Scrapes `admin` every `POLL` from `origin` until `stop` (failed scrapes are skipped: a node
/// still starting).
pub async fn monitor(
    probe: HttpClient,
    admin: SocketAddr,
    origin: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Gauges> {
    let mut out = Vec::new();
    let mut next = Instant::now().max(origin);
    tokio::time::sleep_until(next.into()).await;
    while !stop.load(Ordering::Relaxed) {
        let sent = origin.elapsed();
        if let Ok(s) = Scrape::get(&probe, admin).await {
            out.push(Gauges {
                sent,
                got: origin.elapsed(),
                breaker: s.sum("cellgate_fleet_breaker_state", "", ""),
                nodes: s.sum("cellgate_fleet_nodes", "", ""),
            });
        }
        next += POLL;
        if next < Instant::now() {
            next = Instant::now();
        }
        tokio::time::sleep_until(next.into()).await;
    }
    out
}

/// Polls every node until `ok` holds for the gauges of each, at most `limit`: how long it took.
pub async fn wait_gauges(
    probe: &HttpClient,
    admins: &[SocketAddr],
    limit: Duration,
    ok: impl Fn(&Gauges) -> bool,
) -> Result<Duration, Vec<Option<Gauges>>> {
    let started = Instant::now();
    loop {
        let mut last = Vec::new();
        for a in admins {
            let g = Scrape::get(probe, *a).await.ok().map(|s| Gauges {
                sent: Duration::ZERO,
                got: Duration::ZERO,
                breaker: s.sum("cellgate_fleet_breaker_state", "", ""),
                nodes: s.sum("cellgate_fleet_nodes", "", ""),
            });
            last.push(g);
        }
        if last.iter().all(|g| g.as_ref().is_some_and(&ok)) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(last);
        }
        tokio::time::sleep(POLL).await;
    }
}
