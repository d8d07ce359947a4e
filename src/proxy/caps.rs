//! Connection caps: how many client connections the proxy holds at once, in all and per client
//! address (`server.max_connections`, `server.max_connections_per_ip`).
//!
//! A connection over a cap is closed as soon as it is accepted, before any byte is read or a
//! TLS handshake is spent on it, and counted in `cellgate_connections_refused_total`. One
//! client address cannot take every slot, and a flood of connections ends at a known number of
//! sockets rather than at the file-descriptor limit. The counts are shared by all workers: an
//! atomic for the total, a sharded map for the addresses (touched once per connection, never
//! per request). A [`Slot`] gives its places back when the connection ends.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::ConnectionLimits;

const SHARDS: usize = 16;

/// Which cap a refused connection hit; `reason` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("server.max_connections reached")]
    Total,
    #[error("server.max_connections_per_ip reached for this address")]
    PerIp,
}

impl Refused {
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerIp => "max_connections_per_ip",
        }
    }
}

/// The open-connection counts behind the caps.
#[derive(Debug)]
pub struct ConnectionCaps {
    limits: ConnectionLimits,
    open: AtomicUsize,
    hasher: foldhash::fast::FixedState,
    by_ip: Box<[Mutex<HashMap<IpAddr, usize, foldhash::fast::FixedState>>]>,
}

impl ConnectionCaps {
    #[must_use]
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: AtomicUsize::new(0),
            hasher: foldhash::fast::FixedState::default(),
            by_ip: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes a place under the total cap.
    pub fn admit(self: &Arc<Self>) -> Result<Slot, Refused> {
        let prev = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            caps: Arc::clone(self),
            ip: None,
        };
        if prev >= self.limits.max {
            return Err(Refused::Total);
        }
        Ok(slot)
    }

    /// Open connections now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, usize, foldhash::fast::FixedState>> {
        &self.by_ip[(self.hasher.hash_one(ip) as usize) % SHARDS]
    }
}

/// A connection's places under the caps, given back on drop.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<ConnectionCaps>,
    ip: Option<IpAddr>,
}

impl Slot {
    /// Takes the client address's place (once its address is known: the socket's, or the one a
    /// PROXY protocol header from a trusted hop gave).
    pub fn claim_ip(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let per_ip = self.caps.limits.per_ip;
        if per_ip == 0 || self.ip.is_some() {
            return Ok(());
        }
        let mut map = self
            .caps
            .shard(&ip)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut map = self
                .caps
                .shard(&ip)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max: usize, per_ip: usize) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps::new(ConnectionLimits { max, per_ip }))
    }

    #[test]
    fn total_cap_refuses_beyond_max_and_frees_on_drop() {
        let c = caps(2, 0);
        let a = c.admit().unwrap();
        let _b = c.admit().unwrap();
        assert_eq!(c.admit().unwrap_err(), Refused::Total);
        assert_eq!(c.open(), 2, "a refused slot gives its place back");
        drop(a);
        assert!(c.admit().is_ok());
    }

    #[test]
    fn per_ip_cap_counts_each_address_alone() {
        let c = caps(100, 2);
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let mut slots = Vec::new();
        for _ in 0..2 {
            let mut s = c.admit().unwrap();
            s.claim_ip(ip1).unwrap();
            slots.push(s);
        }
        let mut third = c.admit().unwrap();
        assert_eq!(third.claim_ip(ip1).unwrap_err(), Refused::PerIp);
        let mut other = c.admit().unwrap();
        other.claim_ip(ip2).unwrap();
        slots.pop();
        third.claim_ip(ip1).unwrap();
        drop(slots);
        drop(third);
        drop(other);
        assert_eq!(c.open(), 0);
        assert!(c.by_ip.iter().all(|m| m.lock().unwrap().is_empty()));
    }

    #[test]
    fn per_ip_zero_means_no_cap() {
        let c = caps(10, 0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..10)
            .map(|_| {
                let mut s = c.admit().unwrap();
                s.claim_ip(ip).unwrap();
                s
            })
            .collect();
        assert_eq!(slots.len(), 10);
    }
}
