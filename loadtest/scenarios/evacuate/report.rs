//! What the evacuate scenario's answers say: per move, the propagation (write acknowledged ->
//! first answer from the new cell, timed at that request's send) and how finely it was seen
//! (first new answer received - the last old answer sent, for the tenant or its batch's
//! representative: the switch lies between the two); answers from an old cell sent after the
//! tenant's first new-cell answer had come back; answers from a cell the tenant never had; and
//! requests that got no cell.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::load::{Batch, NO_CELL, Obs, new_cell, old_cell};

#[derive(Debug, Default)]
pub struct Analysis {
    /// Sorted, one per acknowledged move that propagated.
    pub propagation: Vec<Duration>,
    /// Sorted, one per propagated move.
    pub resolution: Vec<Duration>,
    /// Moves acknowledged but never answered from the new cell.
    pub unpropagated: usize,
    /// Moved tenants' new-cell answers whose request left before the write was acknowledged.
    pub before_ack: usize,
    /// Old-cell answers for moved tenants, sent after their first new-cell answer came back.
    pub stale: usize,
    /// Answers from a cell the tenant never had (moved or not).
    pub wrong_cell: usize,
    /// Requests with no cell in the answer (error status, no answer, unreadable body).
    pub failed_probe: usize,
    pub failed_traffic: usize,
    /// The failed requests by status (0: no answer).
    pub failed_by_status: std::collections::BTreeMap<u16, usize>,
    /// The slowest answer, and the slowest failed one.
    pub slowest: Duration,
    pub slowest_failed: Duration,
    pub probes: usize,
    pub traffic: usize,
}

/// Reads the answers against the batches as written.
pub fn analyse(obs: &[Obs], batches: &[Batch], tenants: usize) -> Analysis {
    let mut a = Analysis::default();
    let mut moved_at: Vec<Option<(Instant, Instant, usize)>> = vec![None; tenants];
    for (k, b) in batches.iter().enumerate() {
        if let Some(ack) = b.acked {
            for &i in &b.tenants {
                moved_at[i] = Some((b.started, ack, k));
            }
        }
    }
    let mut by_tenant: HashMap<u32, Vec<Obs>> = HashMap::new();
    for o in obs {
        if o.probe {
            a.probes += 1;
        } else {
            a.traffic += 1;
        }
        a.slowest = a.slowest.max(o.recv - o.sent);
        if o.cell == NO_CELL {
            *a.failed_by_status.entry(o.status).or_default() += 1;
            a.slowest_failed = a.slowest_failed.max(o.recv - o.sent);
            if o.probe {
                a.failed_probe += 1;
            } else {
                a.failed_traffic += 1;
            }
            continue;
        }
        let i = o.tenant as usize;
        let moved = moved_at.get(i).copied().flatten().is_some();
        if o.cell != old_cell(i) && !(moved && o.cell == new_cell(i)) {
            a.wrong_cell += 1;
        }
        if moved {
            by_tenant.entry(o.tenant).or_default().push(*o);
        }
    }
    for v in by_tenant.values_mut() {
        v.sort_by_key(|o| o.sent);
    }
    // The last old answer sent before the switch, per tenant.
    let last_old = |i: usize, before: Instant| -> Option<Instant> {
        by_tenant.get(&(i as u32)).and_then(|v| {
            v.iter()
                .filter(|o| o.cell == old_cell(i) && o.sent < before)
                .map(|o| o.sent)
                .max()
        })
    };
    for b in batches {
        let Some(ack) = b.acked else { continue };
        let rep = b.tenants[0];
        for &i in &b.tenants {
            let v = by_tenant.get(&(i as u32)).map_or(&[][..], Vec::as_slice);
            let Some(first) = v
                .iter()
                .find(|o| o.cell == new_cell(i) && o.sent >= b.started)
            else {
                a.unpropagated += 1;
                continue;
            };
            if first.sent < ack {
                a.before_ack += 1;
            }
            a.propagation
                .push(first.sent.saturating_duration_since(ack));
            let floor = [
                last_old(i, first.sent),
                last_old(rep, first.sent),
                Some(b.started),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(b.started);
            a.resolution
                .push(first.recv.saturating_duration_since(floor));
            a.stale += v
                .iter()
                .filter(|o| o.cell == old_cell(i) && o.sent > first.recv)
                .count();
        }
    }
    a.propagation.sort_unstable();
    a.resolution.sort_unstable();
    a
}
