//! The canary scenario's load: closed-loop clients requesting random tenants, and the tally of
//! what their answers show (each tenant's arms, answers per target, errors, cross-cell leaks,
//! answers carrying another tenant's id, latency).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;

use super::world::World;
use super::{CELLS, PER_CELL};
use crate::common::{HttpClient, send};

/// The echo's answer, as far as this scenario reads it.
#[derive(serde::Deserialize)]
struct Echo<'a> {
    #[serde(borrow)]
    cell: Cow<'a, str>,
    #[serde(borrow)]
    target: Cow<'a, str>,
    /// The `x-tenant-id` the target received.
    #[serde(borrow)]
    tenant: Option<Cow<'a, str>>,
}

/// What the clients saw in one phase.
pub struct Tally {
    /// Per tenant, a bit per arm that answered it from its own cell (bit `STABLE`, `CANARY`).
    pub arms: Vec<u8>,
    /// Answers per global target index (own cell or not).
    pub per_target: Vec<u64>,
    pub requests: u64,
    /// Answers with a status other than 200.
    pub bad_status: u64,
    /// No answer: connection error or timeout.
    pub transport: u64,
    /// A 200 whose body does not name a known cell and target.
    pub bad_body: u64,
    /// Answered by a cell other than the tenant's.
    pub leaks: u64,
    /// The target received another tenant's `x-tenant-id` (or none).
    pub wrong_tenant: u64,
    /// Microseconds from sending each request to the end of its answer.
    pub latency_us: Vec<u32>,
    /// A few examples of what went wrong, for the report.
    pub examples: Vec<String>,
    /// When the last answer arrived.
    pub done: Option<Instant>,
}

impl Tally {
    fn new(tenants: usize) -> Self {
        Self {
            arms: vec![0; tenants],
            per_target: vec![0; CELLS * PER_CELL],
            requests: 0,
            bad_status: 0,
            transport: 0,
            bad_body: 0,
            leaks: 0,
            wrong_tenant: 0,
            latency_us: Vec::new(),
            examples: Vec::new(),
            done: None,
        }
    }

    pub fn errors(&self) -> u64 {
        self.bad_status + self.transport + self.bad_body
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 5 && !self.examples.contains(&what) {
            self.examples.push(what);
        }
    }

    fn record(&mut self, w: &World, tenant: usize, answer: Result<(StatusCode, Bytes), String>) {
        self.requests += 1;
        let name = &w.tenants[tenant];
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.transport += 1;
                self.example(format!("{name}: {e}"));
                return;
            }
        };
        if status != StatusCode::OK {
            self.bad_status += 1;
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            self.example(format!("{name}: status {status}: {}", text.trim()));
            return;
        }
        let Some((echo, t)) = serde_json::from_slice::<Echo<'_>>(&body)
            .ok()
            .and_then(|e| Some((w.target_index.get(e.target.as_ref()).copied()?, e)))
            .map(|(t, e)| (e, t))
        else {
            self.bad_body += 1;
            self.example(format!("{name}: unreadable answer"));
            return;
        };
        self.per_target[t] += 1;
        if echo.tenant.as_deref() != Some(name.as_str()) {
            self.wrong_tenant += 1;
            self.example(format!(
                "{name}: target {} received x-tenant-id {:?}",
                echo.target, echo.tenant
            ));
        }
        let home = World::cell_of_tenant(tenant);
        if World::cell_of_target(t) != home || echo.cell != w.cell_names[home] {
            self.leaks += 1;
            self.example(format!(
                "{name} (of {}): answered by {} / {}",
                World::cell_name(home),
                echo.cell,
                echo.target
            ));
            return;
        }
        self.arms[tenant] |= 1 << World::arm_of_target(t);
    }

    pub fn merge(&mut self, o: &Tally) {
        for (a, b) in self.arms.iter_mut().zip(&o.arms) {
            *a |= b;
        }
        for (a, b) in self.per_target.iter_mut().zip(&o.per_target) {
            *a += b;
        }
        self.requests += o.requests;
        self.bad_status += o.bad_status;
        self.transport += o.transport;
        self.bad_body += o.bad_body;
        self.leaks += o.leaks;
        self.wrong_tenant += o.wrong_tenant;
        self.latency_us.extend_from_slice(&o.latency_us);
        for e in &o.examples {
            self.example(e.clone());
        }
        self.done = self.done.max(o.done);
    }

    /// Answers from one arm of one cell.
    pub fn arm_requests(&self, cell: usize, arm: usize) -> u64 {
        (cell * PER_CELL..(cell + 1) * PER_CELL)
            .filter(|&t| World::arm_of_target(t) == arm)
            .map(|t| self.per_target[t])
            .sum()
    }
}

/// One closed-loop client: random tenants, one request at a time over its keep-alive
/// connection, until `end`.
async fn client_loop(w: Arc<World>, client: HttpClient, seed: u64, end: Instant) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::new(w.tenants.len());
    while Instant::now() < end {
        let tenant = rng.usize(..w.tenants.len());
        let req = Request::get(w.uri.clone())
            .header(header::HOST, w.hosts[tenant].clone())
            .body(Empty::new())
            .unwrap();
        let sent = Instant::now();
        let answer = send(&client, req).await;
        let us = sent.elapsed().as_micros();
        tally.latency_us.push(u32::try_from(us).unwrap_or(u32::MAX));
        tally.record(&w, tenant, answer);
    }
    tally.done = Some(Instant::now());
    tally
}

/// Every client for `len`; returns the merged tally and the time from start to last answer.
pub async fn load(
    w: &Arc<World>,
    clients: &[HttpClient],
    seed: u64,
    len: Duration,
) -> (Tally, Duration) {
    let start = Instant::now();
    let end = start + len;
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(client_loop(
                Arc::clone(w),
                c.clone(),
                seed.wrapping_add(i as u64),
                end,
            ))
        })
        .collect();
    let mut all = Tally::new(w.tenants.len());
    for t in tasks {
        all.merge(&t.await.unwrap());
    }
    let took = all.done.map_or(len, |d| d.duration_since(start));
    (all, took)
}
