//! The record map of a generation: a persistent hash trie of fixed depth, shared between
//! generations, generic over the fixed-size record it holds ([`Packed`]: a tenant's slot, an
//! API key's).
//!
//! An id's 64-bit hash picks one of 256 branches at the root (its top byte), one of 256 leaves
//! below that (the next byte), and a 16-bit tag (the two bytes after) to compare before the id
//! itself. A leaf is one shared buffer, held in its branch: its entries' tags, their encoded
//! records (each behind a 5-byte header saying where its id and tail live), then their ids and
//! tails, so an entry costs its record, its id, its tail (an API key's tenant; empty for a
//! tenant) and a share of its leaf, with no allocation of its own, and a lookup reads the
//! branch's line and the leaf's buffer. A new generation shares every node it does not change:
//! changing one entry copies the root (256 pointers), one branch (256 leaf handles) and one leaf
//! (about N / 65,536 entries), whatever N is; a batch copies each touched node once
//! (`Arc::make_mut`). Readers never lock: a generation is immutable once published.
//!
//! At 1M entries a leaf holds about 15; at 16M about 250, when a third level would start to
//! pay. [`MapBuilder`] fills the leaves in place for a full load, then freezes them.

use std::sync::Arc;

mod leaf;

use self::leaf::BuildLeaf;
pub use self::leaf::{Found, Leaf};

/// Branches per node (the root and each branch).
const FANOUT: usize = 256;
/// A record of fixed encoded size, as a leaf stores it.
pub trait Packed: Copy + std::fmt::Debug {
    /// Encoded bytes.
    const SIZE: usize;
    /// Appends exactly [`Self::SIZE`] bytes.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads what [`Self::encode`] wrote (`b` is exactly [`Self::SIZE`] bytes).
    fn decode(b: &[u8]) -> Self;
}

#[derive(Debug, Clone)]
struct Branch<V> {
    leaves: [Option<Leaf<V>>; FANOUT],
}

impl<V> Branch<V> {
    const fn new() -> Self {
        Self {
            leaves: [const { None }; FANOUT],
        }
    }
}

#[derive(Debug, Clone)]
struct Root<V> {
    branches: [Option<Arc<Branch<V>>>; FANOUT],
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
    // Fixed seed: the map lives in one process. Ids are the operator's (tenants) or random
    // (API key ids); a client can only ask, never insert.
    let h = foldhash::fast::FixedState::with_seed(0x6365_6c6c_6761_7465).hash_one(id);
    #[allow(clippy::cast_possible_truncation)]
    Place {
        branch: (h >> 56) as usize,
        leaf: ((h >> 48) & 0xff) as usize,
        tag: (h >> 32) as u16,
    }
}

/// The map of one generation (cheap to clone: one reference count).
#[derive(Debug, Clone)]
pub struct Map<V> {
    root: Arc<Root<V>>,
    len: usize,
}

impl<V: Packed> Map<V> {
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

    /// The entry of `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Found<'_, V>> {
        let p = place(id.as_bytes());
        let branch = self.root.branches[p.branch].as_deref()?;
        let leaf = branch.leaves[p.leaf].as_ref()?;
        let (span, value) = leaf.find(p.tag, id.as_bytes())?;
        Some(Found { leaf, span, value })
    }

    /// Sets `id` to `value` with its tail (`None`: removes it), copying only the nodes on its
    /// path that this map still shares with another generation. Returns the record it replaced.
    pub fn set(&mut self, id: &str, value: Option<(V, &[u8])>) -> Option<V> {
        let held = self.get(id).map(|f| f.value);
        if held.is_none() && value.is_none() {
            return None;
        }
        let p = place(id.as_bytes());
        let root = Arc::make_mut(&mut self.root);
        let branch =
            Arc::make_mut(root.branches[p.branch].get_or_insert_with(|| Arc::new(Branch::new())));
        let entry = &mut branch.leaves[p.leaf];
        *entry = match entry.take() {
            Some(leaf) => leaf.with(p.tag, id.as_bytes(), value),
            None => value.and_then(|(v, tail)| {
                let mut b = BuildLeaf::default();
                b.push(p.tag, v, id.as_bytes(), tail);
                b.freeze()
            }),
        };
        match (held.is_some(), value.is_some()) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
        held
    }

    /// Every entry: its id, record and tail, in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, V, &[u8])> {
        self.root
            .branches
            .iter()
            .flatten()
            .flat_map(|b| b.leaves.iter().flatten())
            .flat_map(|leaf| {
                leaf.entries().map(move |(s, v)| {
                    // Ids are stored from `&str`s: the bytes are UTF-8.
                    let id = std::str::from_utf8(leaf.bytes(s.id())).unwrap_or_default();
                    (id, v, leaf.bytes(s.tail()))
                })
            })
    }

    /// Bytes the map holds (nodes and leaf buffers; not allocator overhead).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let mut n = std::mem::size_of::<Root<V>>();
        for b in self.root.branches.iter().flatten() {
            n += std::mem::size_of::<Branch<V>>();
            n += b
                .leaves
                .iter()
                .flatten()
                .map(|l| l.buf.len())
                .sum::<usize>();
        }
        n
    }
}

impl<V: Packed> Default for Map<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Fills a map in place for a full load (no node is shared yet), then [`Self::freeze`]s it.
/// A branch's 256 leaves are allocated when its first entry arrives, so a small registry (or
/// a one-record lookup that reads a whole TOML file) costs kilobytes, not the 65,536 leaves a
/// million tenants fill.
#[derive(Debug)]
pub struct MapBuilder<V> {
    branches: Vec<Option<Box<[BuildLeaf<V>]>>>,
    len: usize,
}

impl<V> Default for MapBuilder<V> {
    fn default() -> Self {
        Self {
            branches: Vec::new(),
            len: 0,
        }
    }
}

impl<V: Packed> MapBuilder<V> {
    /// Adds `id`; `false` when it is already held (the first one stays).
    pub fn insert(&mut self, id: &str, value: V, tail: &[u8]) -> bool {
        if self.branches.is_empty() {
            self.branches = (0..FANOUT).map(|_| None).collect();
        }
        let p = place(id.as_bytes());
        let branch = self.branches[p.branch]
            .get_or_insert_with(|| (0..FANOUT).map(|_| BuildLeaf::default()).collect());
        let leaf = &mut branch[p.leaf];
        if leaf.find(p.tag, id.as_bytes()).is_some() {
            return false;
        }
        leaf.push(p.tag, value, id.as_bytes(), tail);
        self.len += 1;
        true
    }

    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// The record held for `id`, with its tail.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<(V, &[u8])> {
        let p = place(id.as_bytes());
        let leaf = self.branches.get(p.branch)?.as_ref()?.get(p.leaf)?;
        leaf.entries
            .iter()
            .find(|(s, _)| s.tag == p.tag && &leaf.data[s.id()] == id.as_bytes())
            .map(|(s, v)| (*v, &leaf.data[s.tail()]))
    }

    /// Every entry held so far: id, record and tail.
    pub fn iter(&self) -> impl Iterator<Item = (&str, V, &[u8])> {
        self.branches.iter().flatten().flat_map(|branch| {
            branch.iter().flat_map(|leaf| {
                leaf.entries.iter().map(move |(s, v)| {
                    let id = std::str::from_utf8(&leaf.data[s.id()]).unwrap_or_default();
                    (id, *v, &leaf.data[s.tail()])
                })
            })
        })
    }

    /// The finished map; each leaf is moved, not copied twice.
    #[must_use]
    pub fn freeze(self) -> Map<V> {
        let mut root = Root {
            branches: [const { None }; FANOUT],
        };
        for (slot, built) in root.branches.iter_mut().zip(self.branches) {
            let Some(built) = built else { continue };
            let mut branch = Branch::new();
            let mut any = false;
            for (entry, leaf) in branch.leaves.iter_mut().zip(built.into_vec()) {
                if let Some(leaf) = leaf.freeze() {
                    *entry = Some(leaf);
                    any = true;
                }
            }
            if any {
                *slot = Some(Arc::new(branch));
            }
        }
        Map {
            root: Arc::new(root),
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests;
