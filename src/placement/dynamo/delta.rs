//! Following the change log: after a poll saw the epoch move, read the `change#` items in
//! between and then only the records they name. Called by [`super::DynamoSource`]'s `delta`.
//!
//! A change item names the records one write changed: `key` (one `pk`, what a single write
//! sends) or `keys` (a list of them, what a batched write sends: up to
//! [`super::write::MAX_BATCH`]); a reader takes both, so old items stay readable. One delta
//! reads at most [`MAX_DELTA_RECORDS`] records: past that it stops at the last whole epoch
//! within the bound, and the next poll carries on from there, so a burst of batched writes
//! costs a bounded read (and snapshot update) per poll instead of one huge one. A gap in the
//! log (an expired change item) asks for a full reload.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::error::describe;
use super::scan::{cell_of, skip};
use super::schema::{Item, PK, change_key, key_from_item, tenant_from_item};
use crate::placement::{Delta, RegistryError};

/// Keys per `BatchGetItem` (DynamoDB's limit).
const BATCH: usize = 100;
/// `BatchGetItem` calls in flight at once while reading a delta's records.
const PARALLEL_BATCHES: usize = 8;
/// At most this many records per delta (whole epochs only; at least one epoch).
pub const MAX_DELTA_RECORDS: usize = 5_000;

/// Where a delta reads from, and the source's name for errors.
#[derive(Debug, Clone)]
pub(super) struct Log {
    pub client: Client,
    pub table: String,
    pub source: String,
}

impl Log {
    fn err(&self, message: impl ToString) -> RegistryError {
        RegistryError::Remote {
            source_name: self.source.clone(),
            message: message.to_string(),
        }
    }

    /// Reads `keys` (strongly consistent), up to [`BATCH`] per call and
    /// [`PARALLEL_BATCHES`] calls at once, retrying unprocessed keys.
    pub async fn batch_get(&self, keys: Vec<String>) -> Result<Vec<Item>, RegistryError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut chunks = keys.chunks(BATCH).map(<[String]>::to_vec);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() < PARALLEL_BATCHES {
                let Some(chunk) = chunks.next() else { break };
                let log = self.clone();
                tasks.spawn(async move { log.get_chunk(chunk).await });
            }
            let Some(joined) = tasks.join_next().await else {
                return Ok(out);
            };
            out.extend(joined.map_err(|e| self.err(format!("batch get task: {e}")))??);
        }
    }

    async fn get_chunk(&self, chunk: Vec<String>) -> Result<Vec<Item>, RegistryError> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut pending: Vec<Item> = chunk
            .into_iter()
            .map(|k| Item::from([(PK.to_owned(), AttributeValue::S(k))]))
            .collect();
        for attempt in 0..8 {
            if pending.is_empty() {
                return Ok(out);
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| self.err(e))?;
            let got = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| self.err(describe("BatchGetItem", &self.table, &e)))?;
            if let Some(mut r) = got.responses {
                out.extend(r.remove(&self.table).unwrap_or_default());
            }
            if let Some(mut u) = got.unprocessed_keys
                && let Some(k) = u.remove(&self.table)
            {
                pending = k.keys;
            }
        }
        if pending.is_empty() {
            Ok(out)
        } else {
            Err(self.err("batch get: keys left unprocessed after retries"))
        }
    }

    /// The changes of epochs `from + 1 ..= to` (whole epochs, at most [`MAX_DELTA_RECORDS`]
    /// records unless one epoch alone names more) and the epoch they reach; `None` when the log
    /// has a gap.
    pub async fn read(&self, from: u64, to: u64) -> Result<Option<(Delta, u64)>, RegistryError> {
        let mut keys: Vec<String> = Vec::new();
        let mut reached = from;
        'epochs: while reached < to {
            let last = to.min(reached + BATCH as u64);
            let mut changes = self
                .batch_get(((reached + 1)..=last).map(change_key).collect())
                .await?;
            if u64::try_from(changes.len()).unwrap_or(0) < last - reached {
                // A change item expired (or a write is not visible yet): the log cannot be
                // trusted.
                return Ok(None);
            }
            changes.sort_by_key(|c| super::schema::get_n(c, "epoch").ok().flatten());
            for c in &changes {
                let named = changed_keys(c);
                if reached > from && keys.len() + named.len() > MAX_DELTA_RECORDS {
                    break 'epochs;
                }
                keys.extend(named);
                reached += 1;
            }
        }
        keys.sort();
        keys.dedup();
        let records = self.batch_get(keys.clone()).await?;
        Ok(Some((self.delta_of(&keys, &records), reached)))
    }

    /// Each key's record as read now (`None`: deleted); invalid records are skipped.
    fn delta_of(&self, keys: &[String], records: &[Item]) -> Delta {
        let by_key: HashMap<&str, &Item> = records
            .iter()
            .filter_map(|i| match i.get(PK) {
                Some(AttributeValue::S(k)) => Some((k.as_str(), i)),
                _ => None,
            })
            .collect();
        let mut delta = Delta::default();
        for key in keys {
            let item = by_key.get(key.as_str()).copied();
            if let Some(id) = key.strip_prefix("tenant#") {
                match item.map(tenant_from_item) {
                    None => delta.tenants.push((id.to_owned(), None)),
                    Some(Ok(t)) => delta.tenants.push((id.to_owned(), Some(t))),
                    Some(Err(b)) => {
                        skip(&self.source, key, &b);
                        delta.skipped += 1;
                    }
                }
            } else if let Some(id) = key.strip_prefix("apikey#") {
                match item.map(key_from_item) {
                    None => delta.keys.push((id.to_owned(), None)),
                    Some(Ok(k)) => delta.keys.push((id.to_owned(), Some(k))),
                    Some(Err(b)) => {
                        skip(&self.source, key, &b);
                        delta.skipped += 1;
                    }
                }
            } else if let Some(id) = key.strip_prefix("cell#") {
                match item.map(cell_of) {
                    None => delta.cells.push((id.to_owned(), None)),
                    Some(Ok(c)) => delta.cells.push((id.to_owned(), Some(c))),
                    Some(Err(b)) => {
                        skip(&self.source, key, &b);
                        delta.skipped += 1;
                    }
                }
            }
        }
        delta
    }
}

/// The keys a change item names: its `key`, or each string of its `keys` (L of S, or SS).
#[must_use]
pub fn changed_keys(change: &Item) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(AttributeValue::S(k)) = change.get("key") {
        out.push(k.clone());
    }
    match change.get("keys") {
        Some(AttributeValue::L(list)) => out.extend(list.iter().filter_map(|v| match v {
            AttributeValue::S(k) => Some(k.clone()),
            _ => None,
        })),
        Some(AttributeValue::Ss(list)) => out.extend(list.iter().cloned()),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_item_names_its_key_or_its_keys() {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let one = Item::from([("key".to_owned(), s("tenant#a"))]);
        assert_eq!(changed_keys(&one), ["tenant#a"]);
        let many = Item::from([(
            "keys".to_owned(),
            AttributeValue::L(vec![s("tenant#a"), s("tenant#b")]),
        )]);
        assert_eq!(changed_keys(&many), ["tenant#a", "tenant#b"]);
        let set = Item::from([(
            "keys".to_owned(),
            AttributeValue::Ss(vec!["cell#c".to_owned()]),
        )]);
        assert_eq!(changed_keys(&set), ["cell#c"]);
        assert!(changed_keys(&Item::new()).is_empty());
    }
}
