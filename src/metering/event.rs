//! Usage events: one node's closed windows merged into one event per (tenant, cell, window
//! part), as a sink writes them.
//!
//! A window's parts taken together from every worker of a node are summed: the same (tenant,
//! cell) counted by two workers in part 0 of a window is one event. The idempotency key names
//! the node's run (`node` plus the process's start, so a restarted node never reuses a key), the
//! emission (`batch`, counted by the emitter: a worker's part closed later than its neighbour's
//! is another batch, so its event never takes a key already used), the window's start and part,
//! the tenant and the cell: a consumer that keeps the keys it has seen drops a replayed event,
//! and no two different events share a key.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::window::{Closed, Usage};

/// One tenant's usage in one cell over one window part, as emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// `{node}.{run}/{batch}/{window_start}/{part}/{tenant}/{cell}/{route}`: unique per event,
    /// stable across replays.
    pub idempotency_key: String,
    pub tenant: String,
    /// `None`: refused before a cell was chosen (a missing entitlement, a suspended tenant...).
    pub cell: Option<String>,
    /// The request's route class (the first `[[limits.routes]]` entry its method and path
    /// match), `None` when it matches none.
    #[serde(default)]
    pub route: Option<String>,
    /// Unix seconds.
    pub window_start: u64,
    pub window_end: u64,
    pub part: u32,
    pub node: String,
    pub requests: u64,
    pub status_1xx: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub rate_limited: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream_ms: f64,
}

/// Which node, and which run of it, emits.
#[derive(Debug, Clone)]
pub struct Origin {
    pub node: String,
    /// The process's start, unix milliseconds: tells runs of one node apart.
    pub run: u64,
    /// The route classes' names (`[[limits.routes]]`, in config order).
    pub routes: Arc<[Arc<str>]>,
}

/// A window part: its start and part number.
type Part = (u64, u32);
/// Usage by (tenant, cell, route class), ordered.
type ByTenant = BTreeMap<(String, Option<Arc<str>>, Option<u8>), Usage>;

/// The events of `windows` (from any number of workers), emitted as `batch` (a number the
/// emitter never reuses in one run), oldest window first, then by tenant, cell and route class.
#[must_use]
pub fn events(origin: &Origin, batch: u64, windows: Vec<Closed>) -> Vec<UsageEvent> {
    let mut merged: BTreeMap<Part, (u64, ByTenant)> = BTreeMap::new();
    for w in windows {
        let (end, by) = merged.entry((w.start, w.part)).or_default();
        *end = (*end).max(w.end);
        for e in w.usage {
            by.entry((e.tenant.as_str().to_owned(), e.cell, e.route))
                .or_default()
                .add(&e.usage);
        }
    }
    let mut out = Vec::new();
    for ((start, part), (end, by)) in merged {
        for ((tenant, cell, route), u) in by {
            let cell_text = cell.as_deref().unwrap_or("-");
            let route = route.and_then(|r| origin.routes.get(usize::from(r)));
            let route_text = route.map_or("-", |r| &**r);
            out.push(UsageEvent {
                idempotency_key: format!(
                    "{}.{}/{batch}/{start}/{part}/{tenant}/{cell_text}/{route_text}",
                    origin.node, origin.run
                ),
                tenant: tenant.clone(),
                cell: cell.map(|c| c.to_string()),
                route: route.map(|r| r.to_string()),
                window_start: start,
                window_end: end,
                part,
                node: origin.node.clone(),
                requests: u.requests,
                status_1xx: u.by_class[0],
                status_2xx: u.by_class[1],
                status_3xx: u.by_class[2],
                status_4xx: u.by_class[3],
                status_5xx: u.by_class[4],
                rate_limited: u.rate_limited,
                bytes_in: u.bytes_in,
                bytes_out: u.bytes_out,
                #[allow(clippy::cast_precision_loss)]
                upstream_ms: u.upstream_micros as f64 / 1e3,
            });
        }
    }
    out
}

/// An event with `n` requests, for the sinks' and the spool's tests.
#[cfg(test)]
pub(crate) fn sample(n: u64) -> UsageEvent {
    UsageEvent {
        idempotency_key: format!("n.1/{n}/0/0/acme/cell-1/-"),
        tenant: "acme".to_owned(),
        cell: Some("cell-1".to_owned()),
        route: None,
        window_start: 0,
        window_end: 60,
        part: 0,
        node: "n".to_owned(),
        requests: n,
        status_1xx: 0,
        status_2xx: n,
        status_3xx: 0,
        status_4xx: 0,
        status_5xx: 0,
        rate_limited: 0,
        bytes_in: 0,
        bytes_out: 0,
        upstream_ms: 0.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;
    use crate::metering::{Meter, Sample};
    use crate::tenant::TenantId;

    #[test]
    fn workers_windows_merge_into_one_event_per_tenant_cell_and_part() {
        let cell: Arc<str> = Arc::from("cell-2");
        let (a, b) = (
            Meter::new(Duration::from_secs(60), 100, 0),
            Meter::new(Duration::from_secs(60), 100, 0),
        );
        let s = |t: &str, status| Sample {
            tenant: TenantId::parse(t).unwrap(),
            cell: Some(&cell),
            route: (t == "globex").then_some(1),
            status,
            bytes_in: 1,
            bytes_out: 2,
            upstream: Some(Duration::from_millis(3)),
        };
        a.record(&s("acme", 200), 1);
        b.record(&s("acme", 200), 2);
        b.record(&s("globex", 500), 3);
        a.record(&s("acme", 200), 61);
        let mut windows = a.take(120, false);
        windows.extend(b.take(120, false));
        let origin = Origin {
            node: "node-1".to_owned(),
            run: 42,
            routes: Arc::from([Arc::from("writes"), Arc::from("export")]),
        };
        let ev = events(&origin, 7, windows);
        let summary: Vec<(&str, u64, u64)> = ev
            .iter()
            .map(|e| (e.tenant.as_str(), e.window_start, e.requests))
            .collect();
        assert_eq!(summary, [("acme", 0, 2), ("globex", 0, 1), ("acme", 60, 1)]);
        assert_eq!(ev[0].idempotency_key, "node-1.42/7/0/0/acme/cell-2/-");
        assert_eq!(
            ev[1].idempotency_key,
            "node-1.42/7/0/0/globex/cell-2/export"
        );
        assert_eq!(
            (ev[0].route.as_deref(), ev[1].route.as_deref()),
            (None, Some("export"))
        );
        assert_eq!((ev[0].status_2xx, ev[1].status_5xx), (2, 1));
        assert!((ev[0].upstream_ms - 6.0).abs() < 1e-9);
        let keys: HashSet<&str> = ev.iter().map(|e| e.idempotency_key.as_str()).collect();
        assert_eq!(keys.len(), ev.len(), "keys are unique");
        let line = serde_json::to_string(&ev[0]).unwrap();
        assert!(line.contains("\"window_end\":60"), "{line}");
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::metering::{Meter, Sample};
    use crate::tenant::TenantId;

    proptest! {
        /// Whatever the traffic, the bound and when the windows are taken, every request is in
        /// exactly one event, no window part holds more pairs than the bound, and no two events
        /// share a key.
        #[test]
        fn every_request_is_metered_exactly_once(
            steps in proptest::collection::vec((0usize..6, 0u64..40, any::<bool>(), 100u16..600), 1..300),
            max_keys in 1usize..5,
            workers in 1usize..3,
        ) {
            let cell: Arc<str> = Arc::from("cell-1");
            let meters: Vec<Meter> = (0..workers)
                .map(|_| Meter::new(Duration::from_secs(10), max_keys, 0))
                .collect();
            let origin = Origin { node: "n".to_owned(), run: 1, routes: Arc::from([]) };
            let (mut now, mut sent, mut batch) = (0u64, 0u64, 0u64);
            let mut ev = Vec::new();
            for (i, (tenant, dt, take, status)) in steps.into_iter().enumerate() {
                now += dt;
                let s = Sample {
                    tenant: TenantId::parse(&format!("t{tenant}")).unwrap(),
                    cell: (tenant % 2 == 0).then_some(&cell),
                    route: None,
                    status,
                    bytes_in: 1,
                    bytes_out: 1,
                    upstream: None,
                };
                meters[i % workers].record(&s, now);
                sent += 1;
                // One worker at a time, as an emitter meets them: a part one worker closed
                // early may be emitted batches before its neighbour's part of the same number.
                if take {
                    let m = &meters[i % workers];
                    let windows = m.take(now, false);
                    for w in &windows {
                        prop_assert!(w.usage.len() <= max_keys);
                        prop_assert!(w.start <= w.end && w.end <= w.start + 10);
                    }
                    batch += 1;
                    ev.extend(events(&origin, batch, windows));
                }
            }
            for m in &meters {
                batch += 1;
                ev.extend(events(&origin, batch, m.take(now, true)));
                prop_assert_eq!(m.dropped(), 0);
            }
            let metered: u64 = ev.iter().map(|e| e.requests).sum();
            prop_assert_eq!(metered, sent);
            let keys: HashSet<&str> = ev.iter().map(|e| e.idempotency_key.as_str()).collect();
            prop_assert_eq!(keys.len(), ev.len());
        }
    }
}
