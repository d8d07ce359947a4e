//! What the request path hands its worker's meter: an answer, counted once.
//!
//! A refusal is counted where it is written; a routed request when its response body ends, is
//! cut, or is dropped ([`Pending`], carried by the body), so its bytes out are known and it is
//! counted exactly once whatever became of the client. Both read the clock once (a vDSO call)
//! and take the worker's uncontended lock; nothing waits on the emitter.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::window::{Meter, Sample};
use crate::tenant::TenantId;

/// Unix seconds now.
#[must_use]
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bytes of a request body received so far (shared with the body that counts them).
pub type BytesIn = Option<Rc<Cell<u64>>>;

/// Reads a [`BytesIn`].
#[must_use]
pub fn bytes_in(b: &BytesIn) -> u64 {
    b.as_ref().map_or(0, |c| c.get())
}

/// A routed request's count, waiting for its response body to end.
#[derive(Debug)]
pub struct Pending {
    pub meter: Arc<Meter>,
    pub tenant: TenantId,
    pub cell: Arc<str>,
    pub route: Option<u8>,
    pub status: u16,
    pub upstream: Duration,
    pub bytes_in: BytesIn,
}

impl Pending {
    /// Counts the request, with `bytes_out` of response body sent.
    pub fn finish(self, bytes_out: u64) {
        self.meter.record(
            &Sample {
                tenant: self.tenant,
                cell: Some(&self.cell),
                route: self.route,
                status: self.status,
                bytes_in: bytes_in(&self.bytes_in),
                bytes_out,
                upstream: Some(self.upstream),
            },
            unix_secs(),
        );
    }
}
