//! A leaf of the trie: one shared buffer holding its entries' tags, their headers ([`Span`]:
//! where an entry's id and tail sit) and fixed-size records, then the ids and tails; the
//! borrowed view of one entry ([`Found`]); and the growable leaf a load fills ([`BuildLeaf`]).

use std::marker::PhantomData;

use bytes::Bytes;

use super::Packed;

/// Bytes of one tag.
const TAG: usize = 2;
/// Bytes before the first tag of a leaf (the entry count).
const HEAD: usize = 4;
/// Bytes of an entry's header: where its id starts (24 bits), the id's and the tail's length.
const ENTRY: usize = 5;

/// Where an entry's id and tail live in its leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) tag: u16,
    pub(super) at: u32,
    pub(super) id_len: u8,
    pub(super) tail_len: u8,
}

impl Span {
    pub(super) fn encode(self, out: &mut Vec<u8>) {
        // Ids of one leaf take far less than 16 MiB: 24 bits of offset.
        out.extend_from_slice(&self.at.to_le_bytes()[..3]);
        out.push(self.id_len);
        out.push(self.tail_len);
    }

    pub(super) fn decode(b: &[u8], tag: u16) -> Self {
        Self {
            tag,
            at: u32::from_le_bytes([b[0], b[1], b[2], 0]),
            id_len: b[3],
            tail_len: b[4],
        }
    }

    pub(super) fn id(self) -> std::ops::Range<usize> {
        let at = self.at as usize;
        at..at + usize::from(self.id_len)
    }

    pub(super) fn tail(self) -> std::ops::Range<usize> {
        let at = self.at as usize + usize::from(self.id_len);
        at..at + usize::from(self.tail_len)
    }
}

/// A leaf: its entry count, its entries' tags, their headers and records, then their ids and
/// tails, in one shared buffer (a lookup scans the tags, one cache line for a typical leaf,
/// then reads one entry).
#[derive(Debug, Clone)]
pub struct Leaf<V> {
    pub(super) buf: Bytes,
    pub(super) _v: PhantomData<V>,
}

impl<V: Packed> Leaf<V> {
    const STRIDE: usize = ENTRY + V::SIZE;

    pub(super) fn count(&self) -> usize {
        self.buf
            .get(..HEAD)
            .map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)
    }

    pub(super) fn entries_start(&self) -> usize {
        HEAD + self.count() * TAG
    }

    pub(super) fn data_start(&self) -> usize {
        HEAD + self.count() * (TAG + Self::STRIDE)
    }

    pub(super) fn entry(&self, i: usize, tag: u16) -> (Span, V) {
        let at = self.entries_start() + i * Self::STRIDE;
        let b = &self.buf[at..at + Self::STRIDE];
        (Span::decode(&b[..ENTRY], tag), V::decode(&b[ENTRY..]))
    }

    pub(super) fn tags(&self) -> impl Iterator<Item = u16> + '_ {
        self.buf
            .get(HEAD..self.entries_start())
            .unwrap_or_default()
            .chunks_exact(TAG)
            .map(|t| u16::from_le_bytes([t[0], t[1]]))
    }

    pub(super) fn bytes(&self, r: std::ops::Range<usize>) -> &[u8] {
        let base = self.data_start();
        &self.buf[base + r.start..base + r.end]
    }

    /// The entry of `id` (the request path: one pass over the tags, one entry decoded).
    pub(super) fn find(&self, tag: u16, id: &[u8]) -> Option<(Span, V)> {
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

    pub(super) fn entries(&self) -> impl Iterator<Item = (Span, V)> + '_ {
        self.tags().enumerate().map(|(i, t)| self.entry(i, t))
    }

    /// This leaf with `id` set to `value` (`None`: removed); `None` when nothing is left.
    pub(super) fn with(&self, tag: u16, id: &[u8], value: Option<(V, &[u8])>) -> Option<Self> {
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
    pub(super) leaf: &'a Leaf<V>,
    pub(super) span: Span,
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
pub(super) struct BuildLeaf<V> {
    pub(super) entries: Vec<(Span, V)>,
    pub(super) data: Vec<u8>,
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
    pub(super) fn push(&mut self, tag: u16, v: V, id: &[u8], tail: &[u8]) {
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

    pub(super) fn find(&self, tag: u16, id: &[u8]) -> Option<V> {
        self.entries
            .iter()
            .find(|(s, _)| s.tag == tag && &self.data[s.id()] == id)
            .map(|(_, v)| *v)
    }

    pub(super) fn freeze(self) -> Option<Leaf<V>> {
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
