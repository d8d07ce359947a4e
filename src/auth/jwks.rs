//! One issuer's published key set (JWKS): fetched, cached, refreshed, and refetched on demand.
//!
//! A background task ([`Jwks::run`], started by the server beside the registry refresh) owns
//! every fetch: at start, on a schedule (`jwks.refresh`, shortened by the server's
//! `Cache-Control: max-age` down to a 30 s floor), and when the request path meets a `kid` it
//! does not know. That last path is single-flight with a cooldown: requests ask the task for a
//! refetch and wait for its next attempt, the task makes at most one such fetch per
//! `jwks.cooldown` (scheduled fetches do not start the cooldown),
//! and a `kid` still unknown afterwards is cached negatively for one cooldown, so a flood of
//! random `kid`s costs the IdP at most one fetch per cooldown. A failed or oversized fetch
//! keeps the last good set (and says so in `cellgate_jwks_up` / `_fetches_total`); a set that
//! withdraws a key empties the verified-token cache, so tokens signed by a revoked key stop
//! passing at once. Keys only ever come from the configured URL, never from a token header.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until};
use tokio_rustls::TlsConnector;

use super::cache::TokenCache;
use super::fetch::{self, FetchError, FetchUrl};
use super::keys::{AlgSet, KeySet, VerificationKey, from_jwk};
use crate::metrics::JwksMetrics;
use crate::shutdown::{Stop, stopped};
use crate::tracecontext::children::{self, Child, JWKS_FETCH, Kind, Value};

/// Shortest refresh interval a server's `max-age` can impose.
const MIN_SERVER_TTL: Duration = Duration::from_secs(30);
/// First retry delay after a failed fetch; doubles up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Negative `kid` entries kept per issuer.
const NEGATIVE_CAPACITY: u64 = 10_000;

/// `[auth.issuers.jwks]`, validated.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub url: FetchUrl,
    pub ca_file: Option<std::path::PathBuf>,
    /// Longest time between scheduled fetches.
    pub refresh: Duration,
    /// Shortest time between two fetches triggered by unknown `kid`s.
    pub cooldown: Duration,
    /// Deadline for one fetch.
    pub timeout: Duration,
    pub max_keys: usize,
    pub max_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{url}: not a JWKS document: {reason}")]
    Parse { url: String, reason: String },
    #[error("{url}: {count} keys, more than jwks.max_keys = {max}")]
    TooManyKeys {
        url: String,
        count: usize,
        max: usize,
    },
    #[error("{url}: no key usable with this issuer's algorithms")]
    NoUsableKeys { url: String },
}

/// What the admin API shows about a key set.
#[derive(Debug, Clone, Default)]
pub struct JwksStatus {
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
    pub fetches: u64,
}

pub struct Jwks {
    issuer: Arc<str>,
    cfg: JwksConfig,
    allowed: AlgSet,
    tls: TlsConnector,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    /// A fetch is running: requests meeting an unknown `kid` wait for it.
    fetching: AtomicBool,
    /// Bumped after every decision of the task (a fetch, or a refetch refused by cooldown).
    attempts: watch::Sender<u64>,
    wake: Notify,
    /// When the last fetch triggered by an unknown `kid` started (scheduled fetches do not
    /// count, so a rotation right after one is still picked up at once).
    last_on_demand: Mutex<Option<Instant>>,
    negative: moka::sync::Cache<Box<str>, ()>,
    status: Mutex<JwksStatus>,
    tokens: Arc<TokenCache>,
    metrics: JwksMetrics,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("issuer", &self.issuer)
            .field("url", &self.cfg.url.to_string())
            .field("keys", &self.keys.load().kids())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// Parses a JWKS document into the keys usable with `allowed`; unusable keys are skipped and
/// returned as `(kid, reason)` so the caller can log them.
pub fn parse_jwks(
    body: &[u8],
    allowed: AlgSet,
    max_keys: usize,
    url: &str,
) -> Result<(KeySet, Vec<(String, String)>), JwksError> {
    let doc: Document = serde_json::from_slice(body).map_err(|e| JwksError::Parse {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if doc.keys.is_empty() {
        // An IdP that publishes an empty set has withdrawn every key (an emergency
        // revocation): that is authoritative, not a failed fetch.
        return Ok((KeySet::default(), Vec::new()));
    }
    if doc.keys.len() > max_keys {
        return Err(JwksError::TooManyKeys {
            url: url.to_owned(),
            count: doc.keys.len(),
            max: max_keys,
        });
    }
    let mut keys: Vec<VerificationKey> = Vec::with_capacity(doc.keys.len());
    let mut skipped = Vec::new();
    for value in &doc.keys {
        // Only a well-formed kid is ever logged.
        let kid = match value.get("kid").and_then(|k| k.as_str()) {
            Some(k) if super::keys::valid_kid(k) => k,
            Some(_) => "(malformed)",
            None => "(none)",
        };
        match from_jwk(value, allowed) {
            Ok(Some(k)) => {
                if k.kid.is_some() && keys.iter().any(|have| have.kid == k.kid) {
                    skipped.push((kid.to_owned(), "duplicate kid".to_owned()));
                } else {
                    keys.push(k);
                }
            }
            Ok(None) => {}
            Err(reason) => skipped.push((kid.to_owned(), reason)),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys {
            url: url.to_owned(),
        });
    }
    let set = KeySet::new(keys).map_err(|reason| JwksError::Parse {
        url: url.to_owned(),
        reason,
    })?;
    Ok((set, skipped))
}

impl Jwks {
    #[must_use]
    pub fn new(
        issuer: Arc<str>,
        cfg: JwksConfig,
        allowed: AlgSet,
        tls: TlsConnector,
        tokens: Arc<TokenCache>,
        metrics: JwksMetrics,
    ) -> Self {
        let negative = moka::sync::Cache::builder()
            .max_capacity(NEGATIVE_CAPACITY)
            .time_to_live(cfg.cooldown)
            .build();
        Self {
            issuer,
            cfg,
            allowed,
            tls,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            fetching: AtomicBool::new(false),
            attempts: watch::Sender::new(0),
            wake: Notify::new(),
            last_on_demand: Mutex::new(None),
            negative,
            status: Mutex::new(JwksStatus::default()),
            tokens,
            metrics,
        }
    }

    /// The key named `kid` in the current set.
    #[must_use]
    pub fn key(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        self.keys.load().get(kid).cloned()
    }

    /// The current set.
    #[must_use]
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Whether a key set was loaded at least once.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    #[must_use]
    pub fn status(&self) -> JwksStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    #[must_use]
    pub const fn config(&self) -> &JwksConfig {
        &self.cfg
    }

    fn in_cooldown(&self, now: Instant) -> bool {
        let last = *self
            .last_on_demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.cooldown)
    }

    /// The unknown-`kid` path: waits for the fetch already running, or asks the task for one
    /// (unless an on-demand fetch ran within the cooldown or `kid` is cached as unknown), then
    /// looks `kid` up again.
    pub async fn refetch(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        let mut attempts = self.attempts.subscribe();
        let running = self.fetching.load(Ordering::Acquire);
        if self.negative.contains_key(kid) || (!running && self.in_cooldown(Instant::now())) {
            self.metrics.refetch_suppressed.inc();
            self.negative.insert(Box::from(kid), ());
            return None;
        }
        // While a fetch runs, the stored permit asks for one more after it; the task applies
        // the cooldown to that one, so the fetch count stays bounded either way.
        self.wake.notify_one();
        let started = std::time::Instant::now();
        // The task answers within one fetch deadline; the margin covers its scheduling.
        let wait = self.cfg.timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, attempts.changed()).await;
        let found = self.key(kid);
        if found.is_none() {
            self.negative.insert(Box::from(kid), ());
        }
        if children::recording().is_some() {
            let mut child = Child::ended(JWKS_FETCH, Kind::Internal, started)
                .with("cellgate.issuer", Value::Str(Arc::clone(&self.issuer)))
                .with("cellgate.jwks.joined", Value::Bool(running))
                .with("cellgate.jwks.kid_found", Value::Bool(found.is_some()));
            child.error = found.is_none().then_some("unknown_kid");
            children::record(child);
        }
        found
    }

    /// The refresher: fetches now, then on schedule and on demand, until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: Stop) {
        let mut next = Instant::now();
        let mut retry = FIRST_RETRY;
        loop {
            let on_demand = tokio::select! {
                () = stopped(&mut stop) => return,
                () = sleep_until(next) => false,
                () = self.wake.notified() => true,
            };
            if on_demand {
                let now = Instant::now();
                if self.in_cooldown(now) {
                    self.attempts.send_modify(|n| *n += 1);
                    continue;
                }
                *self
                    .last_on_demand
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(now);
            }
            self.fetching.store(true, Ordering::Release);
            let result = self.fetch_once().await;
            self.fetching.store(false, Ordering::Release);
            match result {
                Ok(ttl) => {
                    retry = FIRST_RETRY;
                    next = Instant::now() + ttl;
                }
                Err(error) => {
                    self.metrics.fetch_error.inc();
                    self.metrics.up.set(0);
                    tracing::warn!(
                        issuer = %self.issuer, error = %error, retry_in = ?retry,
                        "JWKS fetch failed; keeping the last good key set"
                    );
                    let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                    st.last_error = Some(error.to_string());
                    st.fetches += 1;
                    drop(st);
                    next = Instant::now() + retry;
                    retry = (retry * 2).min(self.cfg.refresh);
                }
            }
            self.attempts.send_modify(|n| *n += 1);
        }
    }

    /// One fetch; on success swaps the set in and returns when the next scheduled fetch is due.
    async fn fetch_once(&self) -> Result<Duration, JwksError> {
        let fetched = fetch::get(
            &self.cfg.url,
            &self.tls,
            self.cfg.timeout,
            self.cfg.max_bytes,
        )
        .await?;
        let url = self.cfg.url.to_string();
        let (set, skipped) = parse_jwks(&fetched.body, self.allowed, self.cfg.max_keys, &url)?;
        for (kid, reason) in &skipped {
            tracing::warn!(issuer = %self.issuer, kid = %kid, reason = %reason, "JWKS key skipped");
        }
        let old = self.keys.load_full();
        let withdrawn = self.ready() && old.loses_keys_in(&set);
        let changed = old.kids() != set.kids() || withdrawn;
        let count = set.len();
        if set.is_empty() {
            tracing::error!(
                issuer = %self.issuer,
                "JWKS publishes no keys: every token of this issuer is refused until keys return"
            );
        }
        self.keys.store(Arc::new(set));
        self.loaded.store(true, Ordering::Release);
        if withdrawn {
            // A withdrawn key may have been revoked: nothing it signed may stay cached.
            self.tokens.invalidate_all();
        }
        self.negative.invalidate_all();
        self.metrics.fetch_ok.inc();
        self.metrics.up.set(1);
        self.metrics
            .keys
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        {
            let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            st.last_success = Some(SystemTime::now());
            st.last_error = None;
            st.fetches += 1;
        }
        if changed {
            tracing::info!(issuer = %self.issuer, keys = count, withdrawn, "JWKS key set updated");
        }
        let ttl = fetched.max_age.map_or(self.cfg.refresh, |age| {
            age.max(MIN_SERVER_TTL).min(self.cfg.refresh)
        });
        Ok(ttl)
    }

    /// Time since the last successful fetch, if any.
    #[must_use]
    pub fn age(&self) -> Option<Duration> {
        self.status().last_success.and_then(|t| t.elapsed().ok())
    }

    /// Sets the age gauge (at scrape time); before the first success it reads +Inf.
    pub fn update_age_gauge(&self) {
        self.metrics
            .age_seconds
            .set(self.age().map_or(f64::INFINITY, |a| a.as_secs_f64()));
    }
}
