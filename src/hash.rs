//! The stable hash: FNV-1a with a SplitMix64 finish, fixed forever, so every node of a fleet on
//! mixed builds computes the same value. Canary arms ([`crate::routing`]) and target-group
//! seeds are chosen by it; it imports nothing of ours.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A hash of `bytes` that never changes between builds, processes or machines.
#[must_use]
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::new();
    h.write(bytes);
    h.finish()
}

/// [`stable_hash`] fed in parts: hashing `a` then `b` gives `stable_hash` of `a` followed by
/// `b`, without building the concatenation (the request path hashes a tenant and a `sub` this
/// way, allocation-free).
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    #[must_use]
    pub const fn new() -> Self {
        Self(FNV_OFFSET)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    #[must_use]
    pub const fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// SplitMix64's finaliser: spreads every input bit over the output.
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_forever() {
        // Changing these values reshuffles every tenant's arm across a fleet: do not.
        assert_eq!(stable_hash(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_eq!(stable_hash(b"acme"), stable_hash(b"acme"));
        assert_ne!(stable_hash(b"acme"), stable_hash(b"acmf"));
        assert_eq!(stable_hash(b"acme"), 0x130a_7622_2d44_27ef);
    }

    #[test]
    fn hashing_in_parts_equals_hashing_the_whole() {
        let mut h = StableHasher::new();
        h.write(b"ac");
        h.write(b"");
        h.write(b"me");
        assert_eq!(h.finish(), stable_hash(b"acme"));
    }
}
