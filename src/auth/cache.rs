//! The verified-token cache: a client that sends the same token again pays for one signature
//! check, not one per request.
//!
//! Called by [`super::Verifier::verify`] before any decoding. Entries are keyed by the token's
//! SHA-256 (the token itself is never stored), bounded by `auth.cache_max_entries` (moka's
//! TinyLFU admission keeps a flood of one-off tokens from evicting the hot ones), and live no
//! longer than the token's `exp` nor `auth.cache_max_ttl`. A hit re-checks `exp` against the
//! wall clock, so an entry can never outlive its token even between moka's own expiry sweeps.
//! A JWKS refresh that withdraws a key empties the cache.
//!
//! In front of it, each client connection keeps a [`TokenMemo`]: the last token it presented
//! and that token's verification. A keep-alive client sending the same token again is answered
//! by comparing the bytes, without hashing the token for the shared cache. The memo obeys the
//! same rules as the cache (`exp`, invalidation by generation, off when the cache is off).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use sha2::{Digest, Sha256};

use super::VerifiedToken;

/// The cache key: SHA-256 of the compact token.
pub type TokenKey = [u8; 32];

#[must_use]
pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Whole seconds since the Unix epoch.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct UntilExp {
    max_ttl: Duration,
}

impl UntilExp {
    fn ttl(&self, token: &VerifiedToken) -> Duration {
        let left = token.expires_at.saturating_sub(unix_now());
        Duration::from_secs(left).min(self.max_ttl)
    }
}

impl Expiry<TokenKey, Arc<VerifiedToken>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<VerifiedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.ttl(value))
    }
}

/// A bounded cache of verified tokens (disabled when `max_entries` is 0).
pub struct TokenCache {
    inner: Option<moka::sync::Cache<TokenKey, Arc<VerifiedToken>>>,
    /// Bumped by every [`TokenCache::invalidate_all`], so a verification that started before a
    /// key was withdrawn cannot cache its result after the cache was emptied.
    generation: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.entry_count())
            .finish()
    }
}

impl TokenCache {
    #[must_use]
    pub fn new(max_entries: u64, max_ttl: Duration) -> Self {
        let inner = (max_entries > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExp { max_ttl })
                .build()
        });
        Self {
            inner,
            generation: AtomicU64::new(0),
        }
    }

    /// Whether verifications are remembered at all (`auth.cache_max_entries` > 0).
    #[must_use]
    pub const fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Read before a verification starts, and handed back to [`TokenCache::insert`].
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached verification of `key`, if it is still within its token's `exp`.
    #[must_use]
    pub fn get(&self, key: &TokenKey, now: u64) -> Option<Arc<VerifiedToken>> {
        let hit = self.inner.as_ref()?.get(key)?;
        (hit.expires_at > now).then_some(hit)
    }

    /// Remembers a verification that started at `generation`; a token already at or past
    /// `exp`, or verified across an invalidation, is not cached.
    pub fn insert(&self, key: TokenKey, token: Arc<VerifiedToken>, now: u64, generation: u64) {
        let Some(c) = &self.inner else { return };
        if token.expires_at <= now || self.generation() != generation {
            return;
        }
        c.insert(key, token);
        // An invalidation may have run between the check and the insert.
        if self.generation() != generation {
            c.invalidate(&key);
        }
    }

    /// Empties the cache (a key was withdrawn).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner {
            c.invalidate_all();
        }
    }

    /// Entries held (moka counts lazily, so pending bookkeeping is applied first; this is
    /// for the admin API and metrics scrapes, never the request path).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }
}

/// One connection's last token and its verification (see the module docs). Requests of one
/// connection run on one thread; the memo is never borrowed across an await.
#[derive(Debug, Default)]
pub struct TokenMemo(RefCell<Option<Memo>>);

#[derive(Debug)]
struct Memo {
    token: Box<str>,
    verified: Arc<VerifiedToken>,
    /// The cache generation read before the verification started.
    generation: u64,
}

impl TokenMemo {
    /// The remembered verification of exactly `token`, if the cache has not been emptied since
    /// and the token is within its `exp`.
    #[must_use]
    pub fn get(&self, token: &str, cache: &TokenCache, now: u64) -> Option<Arc<VerifiedToken>> {
        let memo = self.0.try_borrow().ok()?;
        let m = memo.as_ref()?;
        (cache.enabled()
            && *m.token == *token
            && m.generation == cache.generation()
            && m.verified.expires_at > now)
            .then(|| Arc::clone(&m.verified))
    }

    /// Remembers `verified` for `token`, verified from `generation` on.
    pub fn set(&self, token: &str, verified: &Arc<VerifiedToken>, generation: u64) {
        if let Ok(mut memo) = self.0.try_borrow_mut() {
            *memo = Some(Memo {
                token: token.into(),
                verified: Arc::clone(verified),
                generation,
            });
        }
    }
}
