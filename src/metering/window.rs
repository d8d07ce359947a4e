//! One worker's open metering window, bounded, on clock-aligned boundaries.
//!
//! Usage is kept per (tenant, cell, route class). The worker that answers a request records it under a mutex only that worker and, once per
//! window, the emitter take: uncontended, a few nanoseconds. A sample past the window's end
//! closes it first; a sample for an entry the full window does not hold closes it
//! early (the next part of the same window starts). Closed windows wait in a bounded queue
//! until taken; past that bound the oldest is dropped and counted, never the request delayed.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::tenant::TenantId;

/// Closed windows a meter keeps until they are taken; beyond, the oldest is dropped (counted).
const MAX_CLOSED: usize = 64;

/// What one (tenant, cell, route class) used in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    /// Requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [u64; 5],
    /// 429 answers (also in `by_class[3]`).
    pub rate_limited: u64,
    /// Request body bytes received, response body bytes sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Time spent waiting for the cell, in microseconds, summed.
    pub upstream_micros: u64,
}

impl Usage {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        self.rate_limited += other.rate_limited;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.upstream_micros += other.upstream_micros;
    }

    fn record(&mut self, s: &Sample<'_>) {
        self.requests += 1;
        if let Some(n) = (usize::from(s.status / 100))
            .checked_sub(1)
            .and_then(|i| self.by_class.get_mut(i))
        {
            *n += 1;
        }
        if s.status == 429 {
            self.rate_limited += 1;
        }
        self.bytes_in += s.bytes_in;
        self.bytes_out += s.bytes_out;
        self.upstream_micros += s
            .upstream
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
}

/// One answered request, as the meter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub tenant: TenantId,
    /// The cell that answered, or `None` for a refusal before a cell was chosen.
    pub cell: Option<&'a Arc<str>>,
    /// The request's route class (an index into `[[limits.routes]]`), if it is on one.
    pub route: Option<u8>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream: Option<Duration>,
}

type Key = (TenantId, Option<Arc<str>>, Option<u8>);

/// What one (tenant, cell, route class) used in a window.
#[derive(Debug, Clone)]
pub struct Entry {
    pub tenant: TenantId,
    pub cell: Option<Arc<str>>,
    pub route: Option<u8>,
    pub usage: Usage,
}

/// A window (or part of one) that is over.
#[derive(Debug, Clone)]
pub struct Closed {
    /// Unix seconds; the window's aligned start.
    pub start: u64,
    /// Unix seconds; the aligned end, or when it was closed early.
    pub end: u64,
    /// Which part of the window (0, then 1, 2... after early closes).
    pub part: u32,
    pub usage: Vec<Entry>,
}

#[derive(Debug)]
struct Open {
    start: u64,
    part: u32,
    usage: HashMap<Key, Usage, foldhash::fast::RandomState>,
}

#[derive(Debug)]
struct State {
    open: Open,
    closed: VecDeque<Closed>,
}

/// One worker's meter.
#[derive(Debug)]
pub struct Meter {
    window: u64,
    max_keys: usize,
    state: Mutex<State>,
    early_closes: AtomicU64,
    dropped: AtomicU64,
}

impl Meter {
    /// A meter with windows of `window` (whole seconds, at least 1) holding at most `max_keys`
    /// (tenant, cell, route class) entries each, starting at unix second `now`.
    #[must_use]
    pub fn new(window: Duration, max_keys: usize, now: u64) -> Self {
        let window = window.as_secs().max(1);
        Self {
            window,
            max_keys: max_keys.max(1),
            state: Mutex::new(State {
                open: Open {
                    start: now - now % window,
                    part: 0,
                    usage: HashMap::default(),
                },
                closed: VecDeque::new(),
            }),
            early_closes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts `s`, answered at unix second `now`.
    pub fn record(&self, s: &Sample<'_>, now: u64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut st, now);
        let key = (s.tenant, s.cell.cloned(), s.route);
        if let Some(u) = st.open.usage.get_mut(&key) {
            u.record(s);
            return;
        }
        if st.open.usage.len() >= self.max_keys {
            self.early_closes.fetch_add(1, Ordering::Relaxed);
            let next = Open {
                start: st.open.start,
                part: st.open.part + 1,
                usage: HashMap::default(),
            };
            let full = std::mem::replace(&mut st.open, next);
            self.close(&mut st, full, now);
        }
        let mut u = Usage::default();
        u.record(s);
        st.open.usage.insert(key, u);
    }

    /// Every window over at unix second `now` (the open one too when `flush`: at shutdown),
    /// oldest first.
    pub fn take(&self, now: u64, flush: bool) -> Vec<Closed> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut st, now);
        if flush && !st.open.usage.is_empty() {
            let next = Open {
                start: st.open.start,
                part: st.open.part + 1,
                usage: HashMap::default(),
            };
            let open = std::mem::replace(&mut st.open, next);
            let end = now.clamp(open.start, open.start + self.window);
            self.close(&mut st, open, end);
        }
        st.closed.drain(..).collect()
    }

    /// Windows closed early because they were full.
    #[must_use]
    pub fn early_closes(&self) -> u64 {
        self.early_closes.load(Ordering::Relaxed)
    }

    /// Closed windows dropped because nobody took them in time.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Closes the open window when `now` is past its end.
    fn roll(&self, st: &mut State, now: u64) {
        if now < st.open.start + self.window {
            return;
        }
        let next = Open {
            start: now - now % self.window,
            part: 0,
            usage: HashMap::default(),
        };
        let over = std::mem::replace(&mut st.open, next);
        if !over.usage.is_empty() {
            let end = over.start + self.window;
            self.close(st, over, end);
        }
    }

    fn close(&self, st: &mut State, open: Open, end: u64) {
        if st.closed.len() >= MAX_CLOSED {
            st.closed.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        st.closed.push_back(Closed {
            start: open.start,
            end,
            part: open.part,
            usage: open
                .usage
                .into_iter()
                .map(|((tenant, cell, route), usage)| Entry {
                    tenant,
                    cell,
                    route,
                    usage,
                })
                .collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tid(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn sample<'a>(tenant: &str, cell: Option<&'a Arc<str>>, status: u16) -> Sample<'a> {
        Sample {
            tenant: tid(tenant),
            cell,
            route: None,
            status,
            bytes_in: 10,
            bytes_out: 100,
            upstream: Some(Duration::from_micros(250)),
        }
    }

    #[test]
    fn windows_are_aligned_and_counted_by_tenant_and_cell() {
        let cell: Arc<str> = Arc::from("cell-1");
        let m = Meter::new(Duration::from_secs(60), 100, 1_000);
        m.record(&sample("acme", Some(&cell), 200), 1_000);
        m.record(&sample("acme", Some(&cell), 429), 1_010);
        m.record(&sample("acme", None, 404), 1_019);
        m.record(&sample("globex", Some(&cell), 503), 1_019);
        assert!(
            m.take(1_019, false).is_empty(),
            "the window 960-1020 is open"
        );
        let mut w = m.take(1_020, false);
        assert_eq!(w.len(), 1);
        let w = w.remove(0);
        assert_eq!((w.start, w.end, w.part), (960, 1_020, 0));
        let get = |t: &str, c: Option<&str>| {
            w.usage
                .iter()
                .find(|e| e.tenant.as_str() == t && e.cell.as_deref() == c)
                .map(|e| e.usage)
                .unwrap()
        };
        let acme = get("acme", Some("cell-1"));
        assert_eq!(acme.requests, 2);
        assert_eq!(acme.by_class, [0, 1, 0, 1, 0]);
        assert_eq!(
            (acme.rate_limited, acme.bytes_in, acme.bytes_out),
            (1, 20, 200)
        );
        assert_eq!(acme.upstream_micros, 500);
        assert_eq!(get("acme", None).by_class, [0, 0, 0, 1, 0]);
        assert_eq!(get("globex", Some("cell-1")).by_class[4], 1);
        assert!(
            m.take(5_000, false).is_empty(),
            "empty windows are not emitted"
        );
    }

    #[test]
    fn a_full_window_closes_early_and_nothing_is_lost() {
        let m = Meter::new(Duration::from_secs(60), 2, 0);
        for (i, t) in ["a", "b", "c", "a", "d", "e"].iter().enumerate() {
            m.record(&sample(t, None, 200), i as u64);
        }
        assert_eq!(m.early_closes(), 2);
        let parts = m.take(30, true);
        let counted: u64 = parts
            .iter()
            .flat_map(|w| w.usage.iter().map(|e| e.usage.requests))
            .sum();
        assert_eq!(counted, 6, "every request in some part");
        let ids: Vec<(u64, u32)> = parts.iter().map(|w| (w.start, w.part)).collect();
        assert_eq!(ids, [(0, 0), (0, 1), (0, 2)]);
        assert!(parts.iter().all(|w| w.usage.len() <= 2));
        // The flushed part ends when it was taken; the early ones when they filled.
        assert_eq!(parts[2].end, 30);
        assert_eq!(parts[0].end, 2);
    }

    #[test]
    fn windows_nobody_takes_are_dropped_oldest_first_and_counted() {
        let m = Meter::new(Duration::from_secs(1), 10, 0);
        for s in 0..(MAX_CLOSED as u64 + 5) {
            m.record(&sample("a", None, 200), s);
        }
        let left = m.take(MAX_CLOSED as u64 + 5, false);
        assert_eq!(left.len(), MAX_CLOSED);
        assert_eq!(m.dropped(), 5);
        assert_eq!(left[0].start, 5, "the oldest went first");
    }
}
