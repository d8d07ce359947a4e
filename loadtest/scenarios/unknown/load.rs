//! The unknown scenario's load: one phase of the known tenants' open-loop schedules (and the
//! flood of unknown names, fresh and from a repeating pool), with the proxy's
//! `cellgate_registry_lookups_total` by result scraped around it, and what the flood's answers were.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderValue, Uri};

use super::{Args, KNOWN, KNOWN_SEND, LOOKUPS, known_name, random_name};
use crate::common::{HttpClient, Sample, Scrape, host, open_loop};
use crate::process::{Cpu, CpuMark};

/// What the flood's answers were.
#[derive(Default, Clone, Copy)]
pub struct FloodStats {
    pub n: u64,
    pub not_found: u64,
    pub unavailable: u64,
    /// Served by a cell: a leak.
    pub served: u64,
    pub other: u64,
    pub errors: u64,
}

impl FloodStats {
    pub fn of(s: &[Sample]) -> Self {
        let mut f = Self::default();
        for x in s {
            f.n += 1;
            let body = x.body.as_deref().unwrap_or_default();
            let has = |code: &str| body.windows(code.len()).any(|w| w == code.as_bytes());
            match x.status {
                0 => f.errors += 1,
                200..=299 => f.served += 1,
                404 if has("\"unknown_tenant\"") => f.not_found += 1,
                503 if has("\"registry_unavailable\"") => f.unavailable += 1,
                _ => f.other += 1,
            }
        }
        f
    }

    pub fn add(&mut self, o: &Self) {
        self.n += o.n;
        self.not_found += o.not_found;
        self.unavailable += o.unavailable;
        self.served += o.served;
        self.other += o.other;
        self.errors += o.errors;
    }
}

/// `cellgate_registry_lookups_total` by result over a phase.
#[derive(Default, Clone, Copy)]
pub struct Lookups {
    pub found: f64,
    pub absent: f64,
    pub error: f64,
    pub coalesced: f64,
    pub negative_hit: f64,
    pub limited: f64,
    pub registry_down: f64,
}

impl Lookups {
    pub fn of(s: &Scrape) -> Self {
        let r = |v: &str| s.sum(LOOKUPS, "result", v);
        Self {
            found: r("found"),
            absent: r("absent"),
            error: r("error"),
            coalesced: r("coalesced"),
            negative_hit: r("negative_hit"),
            limited: r("limited"),
            registry_down: r("registry_down"),
        }
    }

    fn minus(&self, b: &Self) -> Self {
        Self {
            found: self.found - b.found,
            absent: self.absent - b.absent,
            error: self.error - b.error,
            coalesced: self.coalesced - b.coalesced,
            negative_hit: self.negative_hit - b.negative_hit,
            limited: self.limited - b.limited,
            registry_down: self.registry_down - b.registry_down,
        }
    }

    /// Lookups that cost a registry read.
    pub fn reads(&self) -> f64 {
        self.found + self.absent + self.error
    }
}

pub struct Phase {
    pub known: Vec<Sample>,
    pub flood: Vec<Sample>,
    pub cpu: Cpu,
    pub lookups: Lookups,
    pub len: Duration,
    /// From the scrape before the phase to the one after it: the window the lookup counts cover.
    pub window: Duration,
}

pub struct Targets {
    pub known: HttpClient,
    pub flood: HttpClient,
    pub known_uri: Uri,
    pub flood_uri: Uri,
}

#[expect(clippy::too_many_arguments, reason = "one phase, spelled out")]
pub async fn phase(
    t: &Targets,
    a: &Args,
    flood: bool,
    len: Duration,
    pid: u32,
    probe: &HttpClient,
    admin: SocketAddr,
    seed: u64,
) -> Result<Phase, String> {
    let before = Lookups::of(&Scrape::get(probe, admin).await?);
    let scraped = Instant::now();
    let mark = CpuMark::now(pid);
    let start = Instant::now() + Duration::from_millis(20);
    let known: Vec<_> = (0..KNOWN)
        .map(|i| {
            let h = host(&known_name(i));
            tokio::spawn(open_loop(
                t.known.clone(),
                t.known_uri.clone(),
                move || h.clone(),
                KNOWN_SEND,
                start,
                i as f64 / KNOWN as f64,
                len,
                false,
            ))
        })
        .collect();
    let flood = flood.then(|| {
        let mut rng = fastrand::Rng::with_seed(seed);
        // The pool is the same in every phase (so its names stay in the negative cache across
        // phases only if the cache outlives the pause; it does not at 5 s).
        let mut pool_rng = fastrand::Rng::with_seed(0x9001);
        let pool: Vec<HeaderValue> = (0..a.pool)
            .map(|_| host(&random_name(&mut pool_rng)))
            .collect();
        tokio::spawn(open_loop(
            t.flood.clone(),
            t.flood_uri.clone(),
            move || {
                if rng.bool() {
                    pool[rng.usize(..pool.len())].clone()
                } else {
                    host(&random_name(&mut rng))
                }
            },
            a.flood_rate,
            start,
            0.0,
            len,
            true,
        ))
    });
    let mut known_samples = Vec::new();
    for k in known {
        known_samples.extend(k.await.unwrap());
    }
    let flood = match flood {
        Some(f) => f.await.unwrap(),
        None => Vec::new(),
    };
    let cpu = mark.since(pid);
    let after = Lookups::of(&Scrape::get(probe, admin).await?);
    let window = scraped.elapsed();
    Ok(Phase {
        known: known_samples,
        flood,
        cpu,
        lookups: after.minus(&before),
        len,
        window,
    })
}
