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

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

/// Branches per node (the root and each branch).
const FANOUT: usize = 256;
/// Bytes of one tag.
const TAG: usize = 2;
/// Bytes before the first tag of a leaf (the entry count).
const HEAD: usize = 4;
/// Bytes of an entry's header: where its id starts (24 bits), the id's and the tail's length.
const ENTRY: usize = 5;

/// A record of fixed encoded size, as a leaf stores it.
pub trait Packed: Copy + std::fmt::Debug {
    /// Encoded bytes.
    const SIZE: usize;
    /// Appends exactly [`Self::SIZE`] bytes.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads what [`Self::encode`] wrote (`b` is exactly [`Self::SIZE`] bytes).
    fn decode(b: &[u8]) -> Self;
}

/// Where an entry's id and tail live in its leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    tag: u16,
    at: u32,
    id_len: u8,
    tail_len: u8,
}

impl Span {
    fn encode(self, out: &mut Vec<u8>) {
        // Ids of one leaf take far less than 16 MiB: 24 bits of offset.
        out.extend_from_slice(&self.at.to_le_bytes()[..3]);
        out.push(self.id_len);
        out.push(self.tail_len);
    }

    fn decode(b: &[u8], tag: u16) -> Self {
        Self {
            tag,
            at: u32::from_le_bytes([b[0], b[1], b[2], 0]),
            id_len: b[3],
            tail_len: b[4],
        }
    }

    fn id(self) -> std::ops::Range<usize> {
        let at = self.at as usize;
        at..at + usize::from(self.id_len)
    }

    fn tail(self) -> std::ops::Range<usize> {
        let at = self.at as usize + usize::from(self.id_len);
        at..at + usize::from(self.tail_len)
    }
}

/// A leaf: its entry count, its entries' tags, their headers and records, then their ids and
/// tails, in one shared buffer (a lookup scans the tags, one cache line for a typical leaf,
/// then reads one entry).
#[derive(Debug, Clone)]
pub struct Leaf<V> {
    buf: Bytes,
    _v: PhantomData<V>,
}

impl<V: Packed> Leaf<V> {
    const STRIDE: usize = ENTRY + V::SIZE;

    fn count(&self) -> usize {
        self.buf
            .get(..HEAD)
            .map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)
    }

    fn entries_start(&self) -> usize {
        HEAD + self.count() * TAG
    }

    fn data_start(&self) -> usize {
        HEAD + self.count() * (TAG + Self::STRIDE)
    }

    fn entry(&self, i: usize, tag: u16) -> (Span, V) {
        let at = self.entries_start() + i * Self::STRIDE;
        let b = &self.buf[at..at + Self::STRIDE];
        (Span::decode(&b[..ENTRY], tag), V::decode(&b[ENTRY..]))
    }

    fn tags(&self) -> impl Iterator<Item = u16> + '_ {
        self.buf
            .get(HEAD..self.entries_start())
            .unwrap_or_default()
            .chunks_exact(TAG)
            .map(|t| u16::from_le_bytes([t[0], t[1]]))
    }

    fn bytes(&self, r: std::ops::Range<usize>) -> &[u8] {
        let base = self.data_start();
        &self.buf[base + r.start..base + r.end]
    }

    /// The entry of `id` (the request path: one pass over the tags, one entry decoded).
    fn find(&self, tag: u16, id: &[u8]) -> Option<(Span, V)> {
        let n = self.count();
        let (entries_at, data_at) = (HEAD + n * TAG, HEAD + n * (TAG + Self::STRIDE));
        let tags = self.buf.get(HEAD..entries_at)?;
        let want = tag.to_le_bytes();
        for (i, t) in tags.chunks_exact(TAG).enumerate() {
            if t != want {
                continue;
            }
            let at = entries_at + i * Self::STRIDE;
            let span = Span::decode(self.buf.get(at..at + ENTRY)?, tag);
            let r = span.id();
            if self.buf.get(data_at + r.start..data_at + r.end) == Some(id) {
                let b = self.buf.get(at + ENTRY..at + Self::STRIDE)?;
                return Some((span, V::decode(b)));
            }
        }
        None
    }

    fn entries(&self) -> impl Iterator<Item = (Span, V)> + '_ {
        self.tags().enumerate().map(|(i, t)| self.entry(i, t))
    }

    /// This leaf with `id` set to `value` (`None`: removed); `None` when nothing is left.
    fn with(&self, tag: u16, id: &[u8], value: Option<(V, &[u8])>) -> Option<Self> {
        let mut b = BuildLeaf::default();
        for (span, v) in self.entries() {
            let own = self.bytes(span.id());
            if !(span.tag == tag && own == id) {
                b.push(span.tag, v, own, self.bytes(span.tail()));
            }
        }
        if let Some((v, tail)) = value {
            b.push(tag, v, id, tail);
        }
        b.freeze()
    }
}

/// One entry as a generation holds it: the record, and its id and tail borrowed from the leaf.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a, V> {
    leaf: &'a Leaf<V>,
    span: Span,
    pub value: V,
}

impl<'a, V: Packed> Found<'a, V> {
    /// The id as shared bytes (a reference count, no copy).
    #[must_use]
    pub fn id_bytes(&self) -> Bytes {
        let base = self.leaf.data_start();
        let r = self.span.id();
        self.leaf.buf.slice(base + r.start..base + r.end)
    }

    /// The entry's tail (an API key's tenant id).
    #[must_use]
    pub fn tail(&self) -> &'a [u8] {
        self.leaf.bytes(self.span.tail())
    }
}

/// A leaf being filled (owned, growable).
#[derive(Debug, Clone)]
struct BuildLeaf<V> {
    entries: Vec<(Span, V)>,
    data: Vec<u8>,
}

impl<V> Default for BuildLeaf<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl<V: Packed> BuildLeaf<V> {
    fn push(&mut self, tag: u16, v: V, id: &[u8], tail: &[u8]) {
        let span = Span {
            tag,
            at: u32::try_from(self.data.len()).unwrap_or(u32::MAX),
            id_len: u8::try_from(id.len()).unwrap_or(u8::MAX),
            tail_len: u8::try_from(tail.len()).unwrap_or(u8::MAX),
        };
        self.data.extend_from_slice(id);
        self.data.extend_from_slice(tail);
        self.entries.push((span, v));
    }

    fn find(&self, tag: u16, id: &[u8]) -> Option<V> {
        self.entries
            .iter()
            .find(|(s, _)| s.tag == tag && &self.data[s.id()] == id)
            .map(|(_, v)| *v)
    }

    fn freeze(self) -> Option<Leaf<V>> {
        if self.entries.is_empty() {
            return None;
        }
        let n = self.entries.len();
        let stride = ENTRY + V::SIZE;
        let mut buf = Vec::with_capacity(HEAD + n * (TAG + stride) + self.data.len());
        buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        for (s, _) in &self.entries {
            buf.extend_from_slice(&s.tag.to_le_bytes());
        }
        for (s, v) in &self.entries {
            s.encode(&mut buf);
            v.encode(&mut buf);
        }
        debug_assert_eq!(buf.len(), HEAD + n * (TAG + stride));
        buf.extend_from_slice(&self.data);
        Some(Leaf {
            buf: Bytes::from(buf),
            _v: PhantomData,
        })
    }
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
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A record of another size than a tenant's, to exercise the strides.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Rec(u64, u8);

    impl Packed for Rec {
        const SIZE: usize = 9;

        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_le_bytes());
            out.push(self.1);
        }

        fn decode(b: &[u8]) -> Self {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[..8]);
            Self(u64::from_le_bytes(w), b[8])
        }
    }

    type Model = BTreeMap<String, (Rec, Vec<u8>)>;

    fn same(map: &Map<Rec>, model: &Model) -> Result<(), TestCaseError> {
        prop_assert_eq!(map.len(), model.len());
        for (id, (rec, tail)) in model {
            let f = map.get(id).unwrap();
            prop_assert_eq!(f.value, *rec);
            prop_assert_eq!(f.tail(), &tail[..]);
            prop_assert_eq!(&f.id_bytes()[..], id.as_bytes());
        }
        let mut seen: Vec<(String, Rec, Vec<u8>)> = map
            .iter()
            .map(|(id, v, t)| (id.to_owned(), v, t.to_vec()))
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let want: Vec<(String, Rec, Vec<u8>)> = model
            .iter()
            .map(|(id, (v, t))| (id.clone(), *v, t.clone()))
            .collect();
        prop_assert_eq!(seen, want);
        Ok(())
    }

    /// One step: set an id to a record and tail, or remove it (`None`).
    type Op = (String, Option<(u64, u8, Vec<u8>)>);

    /// Ids from a small alphabet, so that sets and removals hit ids already held.
    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let id = "[a-d]{1,3}";
        let value = (
            any::<u64>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..8),
        );
        proptest::collection::vec((id, proptest::option::of(value)), 0..80)
    }

    proptest! {
        /// Any sequence of sets and removals leaves the map holding what a plain map would,
        /// every generation before it untouched, and a full build of the same entries equal.
        #[test]
        fn the_map_is_a_persistent_map(ops in ops()) {
            let mut map: Map<Rec> = Map::new();
            let mut model = Model::new();
            let mut history: Vec<(Map<Rec>, Model)> = Vec::new();
            for (id, op) in ops {
                history.push((map.clone(), model.clone()));
                let held = model.get(&id).map(|(r, _)| *r);
                let replaced = match op {
                    Some((a, b, tail)) => {
                        let r = Rec(a, b);
                        model.insert(id.clone(), (r, tail.clone()));
                        map.set(&id, Some((r, &tail)))
                    }
                    None => {
                        model.remove(&id);
                        map.set(&id, None)
                    }
                };
                prop_assert_eq!(replaced, held);
                same(&map, &model)?;
            }
            for (old, old_model) in &history {
                same(old, old_model)?;
            }
            let mut built = MapBuilder::default();
            for (id, (r, tail)) in &model {
                prop_assert!(built.insert(id, *r, tail));
                prop_assert!(!built.insert(id, *r, tail), "a second insert is refused");
                prop_assert_eq!(built.get(id), Some((*r, &tail[..])));
            }
            prop_assert_eq!(built.len(), model.len());
            prop_assert_eq!(built.iter().count(), model.len());
            same(&built.freeze(), &model)?;
        }
    }
}
