//! Long-lived exchanges whose tenant moves: WebSocket tunnels and streaming responses are
//! closed when a registry generation no longer sends their tenant to the cell they are open to.
//!
//! A request is routed once, but a WebSocket or a server-sent-event stream can stay open for
//! hours; after an evacuation flip it would keep talking to the old cell. Each worker keeps a
//! small registry of its open long-lived exchanges (a slab in a `RefCell`: the worker owns it,
//! no lock). A per-worker task follows published snapshot generations and, for each entry,
//! asks the new generation whether the tenant is still served by that cell; if not (moved,
//! suspended, offboarded, unknown, its cell DOWN, or MIGRATING when it was opened while
//! ACTIVE), the entry is marked closed and its task woken. A tunnel then shuts both sides down;
//! a streaming body ends (a clean end of stream, so the client reconnects, and lands in the new
//! cell). An exchange is also checked against the generation current when it registers, so a
//! move published between routing and the cell's answer is not missed. One opened by a
//! MIGRATING tenant (a read the freeze allows) stays open until the tenant leaves the cell.
//!
//! Only exchanges that can outlive a flip register: upgrades, and responses streamed without
//! a `Content-Length`. A fixed-length response is over in moments and costs nothing here.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::placement::{CellState, PlacementSnapshot, SnapshotHandle, TenantStatus};
use crate::shutdown::{Stop, stopped};
use crate::tenant::TenantId;

struct Entry {
    tenant: TenantId,
    cell: Arc<str>,
    /// Opened while the tenant was MIGRATING: the migration itself does not close it.
    migrating: bool,
    closed: bool,
    waker: Option<Waker>,
}

/// One worker's open long-lived exchanges.
#[derive(Default)]
pub struct LongLived {
    slots: RefCell<Vec<Option<Entry>>>,
    free: RefCell<Vec<usize>>,
}

impl std::fmt::Debug for LongLived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongLived")
            .field("open", &self.open())
            .finish()
    }
}

/// A registered exchange; dropping it unregisters.
pub struct Watch {
    reg: Rc<LongLived>,
    key: usize,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("key", &self.key).finish()
    }
}

impl LongLived {
    /// Registers an exchange of `tenant` open to `cell`, routed while the tenant was
    /// `migrating` or not; closed at once if the current generation already moved it.
    pub fn register(
        self: &Rc<Self>,
        tenant: TenantId,
        cell: &Arc<str>,
        migrating: bool,
        snapshot: &SnapshotHandle,
    ) -> Watch {
        let closed = !still_served(&snapshot.load(), &tenant, cell, migrating);
        let entry = Entry {
            tenant,
            cell: Arc::clone(cell),
            migrating,
            closed,
            waker: None,
        };
        let mut slots = self.slots.borrow_mut();
        let key = match self.free.borrow_mut().pop() {
            Some(k) => {
                slots[k] = Some(entry);
                k
            }
            None => {
                slots.push(Some(entry));
                slots.len() - 1
            }
        };
        Watch {
            reg: Rc::clone(self),
            key,
        }
    }

    /// Exchanges registered now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.slots.borrow().iter().filter(|s| s.is_some()).count()
    }

    /// Closes every exchange `snap` no longer routes to its cell; returns how many.
    pub fn sweep(&self, snap: &PlacementSnapshot) -> usize {
        let mut closed = 0;
        for e in self.slots.borrow_mut().iter_mut().flatten() {
            if !e.closed && !still_served(snap, &e.tenant, &e.cell, e.migrating) {
                e.closed = true;
                closed += 1;
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
            }
        }
        closed
    }
}

/// Whether `snap` still sends `tenant`'s traffic to `cell` (MIGRATING counts only for an
/// exchange opened while migrating).
fn still_served(snap: &PlacementSnapshot, tenant: &TenantId, cell: &str, migrating: bool) -> bool {
    snap.tenant(tenant.as_str()).is_some_and(|p| {
        (p.status() == TenantStatus::Active || (migrating && p.status() == TenantStatus::Migrating))
            && &**p.cell_id() == cell
            && p.cell().is_some_and(|c| c.state != CellState::Down)
    })
}

impl Watch {
    /// Ready once the exchange must close (its tenant left the cell).
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slots = self.reg.slots.borrow_mut();
        let Some(Some(e)) = slots.get_mut(self.key) else {
            return Poll::Ready(());
        };
        if e.closed {
            return Poll::Ready(());
        }
        if !e.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            e.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Resolves once the exchange must close.
    pub async fn closed(&self) {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(slot) = self.reg.slots.borrow_mut().get_mut(self.key) {
            *slot = None;
            self.reg.free.borrow_mut().push(self.key);
        }
    }
}

/// The per-worker task: sweeps the registry on every published generation until `stop`.
pub async fn follow(reg: Rc<LongLived>, snapshot: Arc<SnapshotHandle>, mut stop: Stop) {
    let mut changes = snapshot.subscribe();
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = stopped(&mut stop) => return,
        }
        if reg.open() == 0 {
            continue;
        }
        let n = reg.sweep(&snapshot.load());
        if n > 0 {
            tracing::info!(
                closed = n,
                "closed long-lived connections of tenants that left their cell"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::FileCell;
    use crate::placement::{Cell, RegistryData, TenantRecord};

    fn handle(cell: &str, status: TenantStatus) -> SnapshotHandle {
        let fc: FileCell = toml::from_str(&format!(
            "id = \"{cell}\"\ntargets = [\"http://127.0.0.1:1\"]"
        ))
        .unwrap();
        let data = RegistryData::from_records(
            vec![TenantRecord {
                id: "acme".into(),
                cell: cell.into(),
                status,
                tier: "standard".into(),
                version: 1,
                issuers: Vec::new(),
                limits: Default::default(),
                arm: None,
                entitlements: Vec::new(),
            }],
            vec![Cell::from_file(&fc, "cells[0]").unwrap()],
        );
        let h = SnapshotHandle::new();
        h.store(PlacementSnapshot::build(data, &[], 1));
        h
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn slots_are_reused_and_unregistered_on_drop() {
        let reg = Rc::new(LongLived::default());
        let snap = handle("c1", TenantStatus::Active);
        let cell: Arc<str> = Arc::from("c1");
        let a = reg.register(acme(), &cell, false, &snap);
        let b = reg.register(acme(), &cell, false, &snap);
        assert_eq!(reg.open(), 2);
        let key = a.key;
        drop(a);
        assert_eq!(reg.open(), 1);
        let c = reg.register(acme(), &cell, false, &snap);
        assert_eq!(c.key, key, "freed slot reused");
        drop((b, c));
        assert_eq!(reg.open(), 0);
    }

    #[test]
    fn a_move_closes_once_and_wakes() {
        let reg = Rc::new(LongLived::default());
        let w = reg.register(
            acme(),
            &Arc::from("c1"),
            false,
            &handle("c1", TenantStatus::Active),
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert!(w.poll_closed(&mut cx).is_pending());
        let moved = handle("c2", TenantStatus::Active);
        assert_eq!(reg.sweep(&moved.load()), 1);
        assert!(w.poll_closed(&mut cx).is_ready());
        assert_eq!(reg.sweep(&moved.load()), 0, "closed once");
    }

    #[test]
    fn registering_after_a_move_closes_at_once() {
        let reg = Rc::new(LongLived::default());
        let w = reg.register(
            acme(),
            &Arc::from("c1"),
            false,
            &handle("c2", TenantStatus::Active),
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert!(w.poll_closed(&mut cx).is_ready());
    }

    #[test]
    fn migrating_closes_only_what_was_opened_before_it() {
        let reg = Rc::new(LongLived::default());
        let cell: Arc<str> = Arc::from("c1");
        let active = handle("c1", TenantStatus::Active);
        let migrating = handle("c1", TenantStatus::Migrating);
        let before = reg.register(acme(), &cell, false, &active);
        let during = reg.register(acme(), &cell, true, &migrating);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(reg.sweep(&migrating.load()), 1);
        assert!(before.poll_closed(&mut cx).is_ready());
        assert!(
            during.poll_closed(&mut cx).is_pending(),
            "a read the freeze allows"
        );
        assert_eq!(reg.sweep(&handle("c2", TenantStatus::Migrating).load()), 1);
        assert!(
            during.poll_closed(&mut cx).is_ready(),
            "leaving the cell closes it"
        );
    }
}
