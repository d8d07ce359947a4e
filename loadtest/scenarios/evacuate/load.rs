//! The evacuate scenario's moving parts: the writer (batched moves through
//! `Registry::commit_batch` on a fixed schedule), the probes (per batch, one tenant every
//! `rep_every` until the new cell answers, then every other tenant of the batch every
//! `member_every` until each does), and the background traffic (open loop over moved and
//! unmoved tenants). Every answer is kept as an [`Obs`]; the verdict is computed afterwards
//! from them (`report.rs`), so probing only decides how finely propagation is seen.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cellgate::ops::Registry;
use cellgate::placement::dynamo::schema;
use cellgate::placement::{TenantRecord, TenantStatus};
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use tokio::sync::{Semaphore, watch};

use crate::common::{HttpClient, REQUEST_TIMEOUT, host};
use crate::dynamo_lite::store::{seeded_cell, tenant_name};

/// The number of cells (`cell-1` .. `cell-3`).
pub const CELLS: usize = 3;
/// An answer that named no cell (an error status, no answer, an unreadable body).
pub const NO_CELL: u8 = u8::MAX;

/// One answer: which tenant, when its request left and its answer came, which cell answered.
#[derive(Debug, Clone, Copy)]
pub struct Obs {
    pub tenant: u32,
    pub sent: Instant,
    pub recv: Instant,
    /// 0-based cell index, or [`NO_CELL`].
    pub cell: u8,
    /// The answer's status, 0 when none came (timeout, connection error).
    pub status: u16,
    pub probe: bool,
}

pub type Log = Arc<Mutex<Vec<Obs>>>;

/// The cell index of seeded tenant `i`, and where a move takes it.
pub fn old_cell(i: usize) -> u8 {
    u8::try_from(i % CELLS).unwrap_or(0)
}

pub fn new_cell(i: usize) -> u8 {
    u8::try_from((i + 1) % CELLS).unwrap_or(0)
}

/// One request for tenant `i`; its [`Obs`].
pub async fn ask(client: &HttpClient, uri: &Uri, i: usize, probe: bool) -> Obs {
    let req = Request::get(uri.clone())
        .header(header::HOST, host(&tenant_name(i)))
        .body(Empty::new())
        .unwrap();
    let sent = Instant::now();
    let mut status = 0;
    let cell = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let resp = client.request(req).await.ok()?;
        status = resp.status().as_u16();
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let name = v["cell"].as_str()?;
        let k: usize = name.strip_prefix("cell-")?.parse().ok()?;
        u8::try_from(k.checked_sub(1)?).ok()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(NO_CELL);
    Obs {
        tenant: u32::try_from(i).unwrap_or(u32::MAX),
        sent,
        recv: Instant::now(),
        cell,
        status,
        probe,
    }
}

/// One batch as written: its tenants and when the write returned (`None`: it failed).
#[derive(Debug, Clone)]
pub struct Batch {
    pub tenants: Vec<usize>,
    pub started: Instant,
    pub acked: Option<Instant>,
    pub error: Option<String>,
}

/// How probes run.
#[derive(Clone, Copy)]
pub struct Probing {
    pub rep_every: Duration,
    pub member_every: Duration,
    /// No probe leaves after this.
    pub deadline: Instant,
}

/// Writes the moves in batches, batch `k` due at `start + k * period`; after each write,
/// starts its probes. Returns the batches as written.
#[expect(clippy::too_many_arguments, reason = "one schedule, spelled out")]
pub async fn write_moves(
    reg: Registry,
    batches: Vec<Vec<usize>>,
    start: Instant,
    period: Duration,
    probing: Probing,
    client: HttpClient,
    uri: Uri,
    log: Log,
    slots: Arc<Semaphore>,
) -> Vec<Batch> {
    let at = cellgate::placement::dynamo::write::updated_at();
    let mut out = Vec::with_capacity(batches.len());
    let mut probes = tokio::task::JoinSet::new();
    for (k, tenants) in batches.into_iter().enumerate() {
        tokio::time::sleep_until((start + period * u32::try_from(k).unwrap_or(u32::MAX)).into())
            .await;
        let writes = tenants
            .iter()
            .map(|&i| {
                let r = TenantRecord {
                    id: tenant_name(i),
                    cell: seeded_cell(usize::from(new_cell(i)), CELLS),
                    status: TenantStatus::Active,
                    tier: "standard".to_owned(),
                    version: 2,
                    issuers: Vec::new(),
                    limits: cellgate::ratelimit::TenantLimits::default(),
                    arm: None,
                    entitlements: Vec::new(),
                };
                (schema::tenant_item(&r, &at), Some(1))
            })
            .collect();
        let started = Instant::now();
        let result = reg.commit_batch(writes).await;
        let acked = Instant::now();
        let mut b = Batch {
            tenants,
            started,
            acked: Some(acked),
            error: None,
        };
        if let Err(e) = result {
            b.acked = None;
            b.error = Some(e.to_string());
        } else {
            let (tx, rx) = watch::channel(false);
            let rep = b.tenants[0];
            probes.spawn(probe(
                rep,
                probing.rep_every,
                probing.deadline,
                Some(tx),
                None,
                (
                    client.clone(),
                    uri.clone(),
                    Arc::clone(&log),
                    Arc::clone(&slots),
                ),
            ));
            for &i in &b.tenants[1..] {
                probes.spawn(probe(
                    i,
                    probing.member_every,
                    probing.deadline,
                    None,
                    Some(rx.clone()),
                    (
                        client.clone(),
                        uri.clone(),
                        Arc::clone(&log),
                        Arc::clone(&slots),
                    ),
                ));
            }
        }
        out.push(b);
    }
    while probes.join_next().await.is_some() {}
    out
}

/// Probes tenant `i` every `every` until its new cell answers (or the deadline); a member
/// first waits until its batch's representative saw the new cell.
async fn probe(
    i: usize,
    every: Duration,
    deadline: Instant,
    switched: Option<watch::Sender<bool>>,
    wait: Option<watch::Receiver<bool>>,
    (client, uri, log, slots): (HttpClient, Uri, Log, Arc<Semaphore>),
) {
    if let Some(mut rx) = wait {
        let until = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            r = rx.wait_for(|s| *s) => if r.is_err() { return },
            () = until => return,
        }
    }
    let want = new_cell(i);
    while Instant::now() < deadline {
        let due = Instant::now() + every;
        let o = {
            let _slot = slots.acquire().await;
            ask(&client, &uri, i, true).await
        };
        log.lock().unwrap_or_else(PoisonError::into_inner).push(o);
        if o.cell == want {
            if let Some(tx) = switched {
                let _ = tx.send(true);
            }
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Open-loop traffic at `rate` per second until `stop` is set: half the requests for a random
/// moved tenant, half for a random unmoved one.
#[expect(clippy::too_many_arguments, reason = "one schedule, spelled out")]
pub async fn traffic(
    client: HttpClient,
    uri: Uri,
    moved: Arc<Vec<usize>>,
    is_moved: Arc<Vec<bool>>,
    rate: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Log,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut due = Instant::now();
    let mut sent = tokio::task::JoinSet::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep_until(due.into()).await;
        let i = if rng.bool() {
            moved[rng.usize(..moved.len())]
        } else {
            loop {
                let i = rng.usize(..is_moved.len());
                if !is_moved[i] {
                    break i;
                }
            }
        };
        let (client, uri, log) = (client.clone(), uri.clone(), Arc::clone(&log));
        sent.spawn(async move {
            let o = ask(&client, &uri, i, false).await;
            log.lock().unwrap_or_else(PoisonError::into_inner).push(o);
        });
        due += period;
        // Reap as we go, so a long run does not hold every finished task.
        while sent.try_join_next().is_some() {}
    }
    while sent.join_next().await.is_some() {}
}
