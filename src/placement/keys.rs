//! API keys as a generation holds them: the record a source hands over ([`KeyRecord`]), its
//! packed form in the key map ([`KeySlot`], 61 bytes plus its id and its tenant's id), and the
//! check of a presented key against it ([`KeyView::check`]).
//!
//! Keys live in the same kind of persistent trie as tenants and follow the same change path:
//! a full load, a delta from the change log, an on-demand read for an id the snapshot lacks.
//! So a revocation reaches every node within the placement propagation bound, and a key
//! created a moment ago works at once (one coalesced, rate-capped registry read). Only the hash
//! of a key's secret is ever held ([`KeyHash`]).

use std::sync::Arc;

use super::tables::Tables;
use super::trie::{Found, Packed};
use crate::apikey::{KeyHash, KeyRefusal, ParsedKey};

/// A key's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    /// Refused (401) on every node once the change has propagated.
    Revoked,
}

impl KeyStatus {
    /// The accepted names, for error messages.
    pub const EXPECTED: &'static str = "ACTIVE or REVOKED";

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "REVOKED" => Some(Self::Revoked),
            _ => None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Revoked => "REVOKED",
        }
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API key record as a source returns it (never the key itself: its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The public id (`cgk_<id>_...`).
    pub id: String,
    pub tenant: String,
    pub hash: KeyHash,
    pub status: KeyStatus,
    /// Unix seconds after which the key is refused (`None`: never).
    pub expires_at: Option<u64>,
    /// When not empty, the key reaches only routes needing one of these entitlements (or none).
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Monotonic record version (optimistic concurrency in the registry).
    pub version: u64,
}

impl KeyRecord {
    /// What may be shown of the record (the CLI, the admin listener): everything but the hash.
    #[must_use]
    pub fn public_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({
            "id": self.id,
            "tenant": self.tenant,
            "status": self.status.as_str(),
            "expires_at": self.expires_at,
            "scopes": self.scopes,
            "created_at": self.created_at,
            "version": self.version,
        });
        match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// A key's record in the map: the hash, times, state and the handle of its scope list; its
/// tenant's id is the entry's tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySlot {
    hash: [u8; 32],
    version: u64,
    expires_at: u64,
    created_at: u64,
    pub scopes: u32,
    status: u8,
}

impl KeySlot {
    /// The slot of `r`, its scope list at handle `scopes`.
    #[must_use]
    pub const fn new(r: &KeyRecord, scopes: u32) -> Self {
        Self {
            hash: r.hash.to_bytes(),
            version: r.version,
            // 0 is "never": no key is made to expire at the epoch.
            expires_at: match r.expires_at {
                Some(t) => t,
                None => 0,
            },
            created_at: r.created_at,
            scopes,
            status: match r.status {
                KeyStatus::Active => 0,
                KeyStatus::Revoked => 1,
            },
        }
    }

    #[must_use]
    pub const fn version(&self) -> u64 {
        self.version
    }
}

impl Packed for KeySlot {
    const SIZE: usize = 61;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.extend_from_slice(&self.scopes.to_le_bytes());
        out.push(self.status);
    }

    fn decode(b: &[u8]) -> Self {
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[..32]);
        Self {
            hash,
            version: u64_at(32),
            expires_at: u64_at(40),
            created_at: u64_at(48),
            scopes: u32::from_le_bytes([b[56], b[57], b[58], b[59]]),
            status: b[60],
        }
    }
}

/// One key as a generation holds it (borrowed from the snapshot).
#[derive(Debug, Clone, Copy)]
pub struct KeyView<'a> {
    pub(super) tables: &'a Tables,
    pub(super) found: Found<'a, KeySlot>,
}

impl<'a> KeyView<'a> {
    /// The tenant the key speaks for (validated when the record was read).
    #[must_use]
    pub fn tenant(&self) -> &'a str {
        std::str::from_utf8(self.found.tail()).unwrap_or_default()
    }

    /// The key's scopes (`None`: the key carries its tenant's whole entitlement).
    #[must_use]
    pub fn scopes(&self) -> Option<&'a Arc<[Box<str>]>> {
        self.tables.names.get(self.found.value.scopes).as_ref()
    }

    #[must_use]
    pub const fn status(&self) -> KeyStatus {
        if self.found.value.status == 0 {
            KeyStatus::Active
        } else {
            KeyStatus::Revoked
        }
    }

    #[must_use]
    pub const fn expires_at(&self) -> Option<u64> {
        match self.found.value.expires_at {
            0 => None,
            t => Some(t),
        }
    }

    /// Checks `key` (whose id found this record) at unix second `now`: the secret first, in
    /// constant time, so a client without it learns nothing of the key's state.
    pub fn check(&self, key: &ParsedKey<'_>, now: u64) -> Result<(), KeyRefusal> {
        if !KeyHash::from_bytes(self.found.value.hash).verifies(key) {
            return Err(KeyRefusal::WrongSecret);
        }
        if self.status() == KeyStatus::Revoked {
            return Err(KeyRefusal::Revoked);
        }
        if self.expires_at().is_some_and(|t| now >= t) {
            return Err(KeyRefusal::Expired);
        }
        Ok(())
    }

    /// The record as a source would hand it over.
    #[must_use]
    pub fn record(&self, id: &str) -> KeyRecord {
        record_of(self.tables, id, &self.found.value, self.found.tail())
    }
}

pub(super) fn record_of(tables: &Tables, id: &str, s: &KeySlot, tail: &[u8]) -> KeyRecord {
    KeyRecord {
        id: id.to_owned(),
        tenant: String::from_utf8_lossy(tail).into_owned(),
        hash: KeyHash::from_bytes(s.hash),
        status: if s.status == 0 {
            KeyStatus::Active
        } else {
            KeyStatus::Revoked
        },
        expires_at: (s.expires_at != 0).then_some(s.expires_at),
        scopes: tables
            .names
            .get(s.scopes)
            .as_deref()
            .map(|l| l.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default(),
        created_at: s.created_at,
        version: s.version,
    }
}
