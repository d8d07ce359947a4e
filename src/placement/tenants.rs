//! The tenant map: a persistent hash trie of fixed depth, shared between generations.
//!
//! A tenant id's 64-bit hash picks one of 256 branches at the root (its top byte), one of 256
//! leaves below that (the next byte), and a 16-bit tag (the two bytes after) to compare before
//! the id itself. A leaf is one shared buffer, held in its branch: its tenants' 32-byte encoded
//! [`Slot`]s, then their ids, so a tenant costs its slot, its id and a share of its leaf, with no
//! allocation of its own, and a lookup reads the branch's line and the leaf's buffer. A new
//! generation shares every node it does not change: changing one tenant copies the root (256
//! pointers), one branch (256 leaf handles) and one leaf (about N / 65,536 tenants), whatever
//! the number of tenants; a batch copies each touched node once (`Arc::make_mut`). Readers
//! never lock: a generation is immutable once published.
//!
//! At 1M tenants a leaf holds about 15; at 16M about 250, when a third level would start to
//! pay. [`TenantMapBuilder`] fills the leaves in place for a full load, then freezes them.

use std::sync::Arc;

use bytes::Bytes;

/// Branches per node (the root and each branch).
const FANOUT: usize = 256;

/// Bytes of one encoded slot (its tag is kept apart, with the other tags).
const SLOT: usize = 29;
/// Bytes of one tag.
const TAG: usize = 2;
/// Bytes before the first slot of a leaf (the slot count).
const HEAD: usize = 4;

/// A tenant's record in the map, with the table handles it names (see `tables.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    version: u64,
    pub cell: u32,
    pub issuers: u32,
    pub limits: u32,
    pub tier: u16,
    pub arm: u16,
    tag: u16,
    id_at: u32,
    id_len: u8,
    pub status: u8,
}

impl Slot {
    /// A slot with its fields; the map sets where its id lives.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        version: u64,
        status: u8,
        cell: u32,
        tier: u16,
        arm: u16,
        issuers: u32,
        limits: u32,
    ) -> Self {
        Self {
            version,
            cell,
            issuers,
            limits,
            tier,
            arm,
            tag: 0,
            id_at: 0,
            id_len: 0,
            status,
        }
    }

    #[must_use]
    pub const fn version(&self) -> u64 {
        self.version
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.cell.to_le_bytes());
        out.extend_from_slice(&self.issuers.to_le_bytes());
        out.extend_from_slice(&self.limits.to_le_bytes());
        out.extend_from_slice(&self.tier.to_le_bytes());
        out.extend_from_slice(&self.arm.to_le_bytes());
        // Ids of one leaf take far less than 16 MiB: 24 bits of offset.
        out.extend_from_slice(&self.id_at.to_le_bytes()[..3]);
        out.push(self.id_len);
        out.push(self.status);
    }

    fn decode(b: &[u8], tag: u16) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            version: u64::from(u32_at(0)) | (u64::from(u32_at(4)) << 32),
            cell: u32_at(8),
            issuers: u32_at(12),
            limits: u32_at(16),
            tier: u16_at(20),
            arm: u16_at(22),
            tag,
            id_at: u32::from_le_bytes([b[24], b[25], b[26], 0]),
            id_len: b[27],
            status: b[28],
        }
    }
}

/// A leaf: its slot count, its slots' tags, its encoded slots, then their ids, in one shared
/// buffer (a lookup scans the tags, one cache line for a typical leaf, then reads one slot).
#[derive(Debug, Clone, Default)]
pub struct Leaf(Bytes);

impl Leaf {
    fn count(&self) -> usize {
        self.0
            .get(..HEAD)
            .map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)
    }

    fn slots_start(&self) -> usize {
        HEAD + self.count() * TAG
    }

    fn ids_start(&self) -> usize {
        HEAD + self.count() * (TAG + SLOT)
    }

    fn slot(&self, i: usize, tag: u16) -> Slot {
        let at = self.slots_start() + i * SLOT;
        Slot::decode(&self.0[at..at + SLOT], tag)
    }

    fn tags(&self) -> impl Iterator<Item = u16> + '_ {
        self.0
            .get(HEAD..self.slots_start())
            .unwrap_or_default()
            .chunks_exact(TAG)
            .map(|t| u16::from_le_bytes([t[0], t[1]]))
    }

    fn id(&self, s: &Slot) -> &[u8] {
        let at = self.ids_start() + s.id_at as usize;
        &self.0[at..at + usize::from(s.id_len)]
    }

    /// The id of `s` as shared bytes (a reference count, no copy).
    #[must_use]
    pub fn id_bytes(&self, s: &Slot) -> Bytes {
        let at = self.ids_start() + s.id_at as usize;
        self.0.slice(at..at + usize::from(s.id_len))
    }

    /// The slot of `id` (the request path: one pass over the tags, one slot decoded).
    fn find(&self, tag: u16, id: &[u8]) -> Option<Slot> {
        let n = self.count();
        let (slots_at, ids_at) = (HEAD + n * TAG, HEAD + n * (TAG + SLOT));
        let tags = self.0.get(HEAD..slots_at)?;
        let want = tag.to_le_bytes();
        for (i, t) in tags.chunks_exact(TAG).enumerate() {
            if t != want {
                continue;
            }
            let at = slots_at + i * SLOT;
            let s = Slot::decode(self.0.get(at..at + SLOT)?, tag);
            let from = ids_at + s.id_at as usize;
            if self.0.get(from..from + usize::from(s.id_len)) == Some(id) {
                return Some(s);
            }
        }
        None
    }

    fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.tags().enumerate().map(|(i, t)| self.slot(i, t))
    }

    /// This leaf with `id` set to `slot` (`None`: removed); `None` when nothing is left.
    fn with(&self, tag: u16, id: &[u8], slot: Option<Slot>) -> Option<Self> {
        let mut b = BuildLeaf::default();
        for s in self.slots() {
            let own = self.id(&s);
            if !(s.tag == tag && own == id) {
                b.push(s, own);
            }
        }
        if let Some(mut s) = slot {
            s.tag = tag;
            b.push(s, id);
        }
        b.freeze()
    }
}

/// A leaf being filled (owned, growable).
#[derive(Debug, Default, Clone)]
struct BuildLeaf {
    slots: Vec<Slot>,
    ids: Vec<u8>,
}

impl BuildLeaf {
    fn push(&mut self, mut s: Slot, id: &[u8]) {
        s.id_at = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        s.id_len = u8::try_from(id.len()).unwrap_or(u8::MAX);
        self.ids.extend_from_slice(id);
        self.slots.push(s);
    }

    fn contains(&self, tag: u16, id: &[u8]) -> bool {
        self.slots.iter().any(|s| {
            let at = s.id_at as usize;
            s.tag == tag && &self.ids[at..at + usize::from(s.id_len)] == id
        })
    }

    fn freeze(self) -> Option<Leaf> {
        if self.slots.is_empty() {
            return None;
        }
        let n = self.slots.len();
        let mut buf = Vec::with_capacity(HEAD + n * (TAG + SLOT) + self.ids.len());
        buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        for s in &self.slots {
            buf.extend_from_slice(&s.tag.to_le_bytes());
        }
        for s in &self.slots {
            s.encode(&mut buf);
        }
        debug_assert_eq!(buf.len(), HEAD + n * (TAG + SLOT));
        buf.extend_from_slice(&self.ids);
        Some(Leaf(Bytes::from(buf)))
    }
}

#[derive(Debug, Clone)]
struct Branch {
    leaves: [Option<Leaf>; FANOUT],
}

#[derive(Debug, Clone)]
struct Root {
    branches: [Option<Arc<Branch>>; FANOUT],
}

/// Where an id lives: root branch, leaf, tag.
#[derive(Debug, Clone, Copy)]
struct Place {
    branch: usize,
    leaf: usize,
    tag: u16,
}

fn place(id: &[u8]) -> Place {
    use std::hash::BuildHasher;
    // Fixed seed: the map lives in one process; the ids are the operator's, not a client's.
    let h = foldhash::fast::FixedState::with_seed(0x6365_6c6c_6761_7465).hash_one(id);
    #[allow(clippy::cast_possible_truncation)]
    Place {
        branch: (h >> 56) as usize,
        leaf: ((h >> 48) & 0xff) as usize,
        tag: (h >> 32) as u16,
    }
}

/// The tenant map of one generation (cheap to clone: one reference count).
#[derive(Debug, Clone)]
pub struct TenantMap {
    root: Arc<Root>,
    len: usize,
}

impl TenantMap {
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Arc::new(Root {
                branches: [const { None }; FANOUT],
            }),
            len: 0,
        }
    }

    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// The leaf and slot holding `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<(&Leaf, Slot)> {
        let p = place(id.as_bytes());
        let branch = self.root.branches[p.branch].as_deref()?;
        let leaf = branch.leaves[p.leaf].as_ref()?;
        Some((leaf, leaf.find(p.tag, id.as_bytes())?))
    }

    /// Sets `id` to `slot` (`None`: removes it), copying only the nodes on its path that this
    /// map still shares with another generation. Returns the slot it replaced.
    pub fn set(&mut self, id: &str, slot: Option<Slot>) -> Option<Slot> {
        let held = self.get(id).map(|(_, s)| s);
        if held.is_none() && slot.is_none() {
            return None;
        }
        let p = place(id.as_bytes());
        let root = Arc::make_mut(&mut self.root);
        let branch = Arc::make_mut(root.branches[p.branch].get_or_insert_with(|| {
            Arc::new(Branch {
                leaves: [const { None }; FANOUT],
            })
        }));
        let entry = &mut branch.leaves[p.leaf];
        *entry = entry
            .take()
            .unwrap_or_default()
            .with(p.tag, id.as_bytes(), slot);
        match (held.is_some(), slot.is_some()) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
        held
    }

    /// Every tenant: its id and slot, in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Slot)> {
        self.root
            .branches
            .iter()
            .flatten()
            .flat_map(|b| b.leaves.iter().flatten())
            .flat_map(|leaf| {
                leaf.slots().map(move |s| {
                    // Ids are stored from `&str`s: the bytes are UTF-8.
                    (std::str::from_utf8(leaf.id(&s)).unwrap_or_default(), s)
                })
            })
    }

    /// Bytes the map holds (nodes and leaf buffers; not allocator overhead).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let mut n = std::mem::size_of::<Root>();
        for b in self.root.branches.iter().flatten() {
            n += std::mem::size_of::<Branch>();
            n += b.leaves.iter().flatten().map(|l| l.0.len()).sum::<usize>();
        }
        n
    }
}

impl Default for TenantMap {
    fn default() -> Self {
        Self::new()
    }
}

/// Fills a map in place for a full load (no node is shared yet), then [`Self::freeze`]s it.
#[derive(Debug, Default)]
pub struct TenantMapBuilder {
    leaves: Vec<BuildLeaf>,
    len: usize,
}

impl TenantMapBuilder {
    /// Adds `id`; `false` when it is already held (the first one stays).
    pub fn insert(&mut self, id: &str, mut slot: Slot) -> bool {
        if self.leaves.is_empty() {
            self.leaves = vec![BuildLeaf::default(); FANOUT * FANOUT];
        }
        let p = place(id.as_bytes());
        let leaf = &mut self.leaves[p.branch * FANOUT + p.leaf];
        if leaf.contains(p.tag, id.as_bytes()) {
            return false;
        }
        slot.tag = p.tag;
        leaf.push(slot, id.as_bytes());
        self.len += 1;
        true
    }

    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// The slot held for `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Slot> {
        let p = place(id.as_bytes());
        let leaf = self.leaves.get(p.branch * FANOUT + p.leaf)?;
        leaf.slots.iter().copied().find(|s| {
            let at = s.id_at as usize;
            s.tag == p.tag && &leaf.ids[at..at + usize::from(s.id_len)] == id.as_bytes()
        })
    }

    /// Every tenant held so far: id and slot.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Slot)> {
        self.leaves.iter().flat_map(|leaf| {
            leaf.slots.iter().map(move |s| {
                let at = s.id_at as usize;
                let id = &leaf.ids[at..at + usize::from(s.id_len)];
                (std::str::from_utf8(id).unwrap_or_default(), *s)
            })
        })
    }

    /// The finished map; each leaf is moved, not copied twice.
    #[must_use]
    pub fn freeze(self) -> TenantMap {
        let mut root = Root {
            branches: [const { None }; FANOUT],
        };
        let mut leaves = self.leaves.into_iter();
        if leaves.len() == FANOUT * FANOUT {
            for slot in &mut root.branches {
                let mut branch = Branch {
                    leaves: [const { None }; FANOUT],
                };
                let mut any = false;
                for entry in &mut branch.leaves {
                    if let Some(leaf) = leaves.next().and_then(BuildLeaf::freeze) {
                        *entry = Some(leaf);
                        any = true;
                    }
                }
                if any {
                    *slot = Some(Arc::new(branch));
                }
            }
        }
        TenantMap {
            root: Arc::new(root),
            len: self.len,
        }
    }
}
