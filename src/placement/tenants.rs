//! A tenant as the map of a generation holds it: a [`Slot`] of table handles (see
//! `tables.rs`), 29 bytes encoded, in the persistent trie of `trie/`.

use super::trie::{Map, MapBuilder, Packed};

/// The tenants of a generation.
pub type TenantMap = Map<Slot>;
/// The tenants of a full load being filled.
pub type TenantMapBuilder = MapBuilder<Slot>;

/// A tenant's record in the map, with the table handles it names (see `tables.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    version: u64,
    pub cell: u32,
    pub issuers: u32,
    pub limits: u32,
    pub entitlements: u32,
    pub tier: u16,
    pub arm: u16,
    pub status: u8,
}

/// The handles a slot holds besides its version and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handles {
    pub cell: u32,
    pub issuers: u32,
    pub limits: u32,
    pub entitlements: u32,
    pub tier: u16,
    pub arm: u16,
}

impl Slot {
    /// A slot with its fields.
    #[must_use]
    pub const fn new(version: u64, status: u8, h: Handles) -> Self {
        Self {
            version,
            cell: h.cell,
            issuers: h.issuers,
            limits: h.limits,
            entitlements: h.entitlements,
            tier: h.tier,
            arm: h.arm,
            status,
        }
    }

    #[must_use]
    pub const fn version(&self) -> u64 {
        self.version
    }
}

impl Packed for Slot {
    const SIZE: usize = 29;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.cell.to_le_bytes());
        out.extend_from_slice(&self.issuers.to_le_bytes());
        out.extend_from_slice(&self.limits.to_le_bytes());
        out.extend_from_slice(&self.entitlements.to_le_bytes());
        out.extend_from_slice(&self.tier.to_le_bytes());
        out.extend_from_slice(&self.arm.to_le_bytes());
        out.push(self.status);
    }

    fn decode(b: &[u8]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            version: u64::from(u32_at(0)) | (u64::from(u32_at(4)) << 32),
            cell: u32_at(8),
            issuers: u32_at(12),
            limits: u32_at(16),
            entitlements: u32_at(20),
            tier: u16_at(24),
            arm: u16_at(26),
            status: b[28],
        }
    }
}
