//! The trie against a plain map: any sequence of sets and removals, every generation kept.
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
