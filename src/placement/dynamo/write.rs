//! The registry's write path: table creation and versioned, change-logged writes.
//!
//! Used by the operator CLI. Every write is one `TransactWriteItems`:
//! 1. the record, conditional on its version (`attribute_not_exists(pk)` for a new one, else
//!    `version = :expected`), so two operators racing on one record cannot both win;
//! 2. the `epoch` item, `SET epoch = :new` conditional on `epoch = :old`;
//! 3. a `change#<new>` item naming the record's key, expiring after a day (TTL).
//!
//! A lost race on the record is a [`WriteError::Conflict`] (the caller re-reads and decides); a
//! lost race on the epoch only (another record was written at the same moment) is retried. Every
//! other failed call is a [`DynamoError`]: one line, with a hint ([`super::error`]).
//!
//! [`Registry::commit_batch`] writes up to [`MAX_BATCH`] records in one transaction the same
//! way, with one epoch bump and one change item whose `keys` lists them all. A mass evacuation
//! needs it: in DynamoDB one item takes about 1,000 write units a second and a transaction
//! costs two per item, so single writes, all bumping the `epoch` item, top out at a few hundred
//! a second; batched, the epoch moves once per 98 records. Proxies read `keys` since this
//! change; older ones read only `key` and would miss a batch until their next full reload, so
//! upgrade the proxies before writing batches.
//!
//! [`Registry::commit_guarded`] adds counter updates ([`Guarded`]: a cell's `tenants` and
//! `load`, each under its own condition) to the records of one transaction; a failed condition
//! is a [`WriteError::Condition`] naming the item and what no longer held. Table creation is
//! in `write/init.rs`.

mod init;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::error::{DynamoError, describe};
pub use super::guarded::Guarded;
use super::schema::{EPOCH_KEY, Item, PK, TTL_ATTRIBUTE, change_key, get_n, kind};
use super::{EpochError, read_epoch};

/// How long a change item is kept: a node further behind than this reloads in full.
pub const CHANGE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Attempts when only the epoch race is lost.
const EPOCH_RETRIES: usize = 20;
/// Records per [`Registry::commit_batch`]: DynamoDB's 100 actions per transaction, less the
/// epoch and the change item.
pub const MAX_BATCH: usize = 98;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A DynamoDB call failed (one line: operation, table, the service's words, a hint).
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
    #[error(transparent)]
    Epoch(#[from] EpochError),
    /// Something other than a call: a request that could not be built, a table that stayed
    /// CREATING.
    #[error("table {table}: {message}")]
    Other { table: String, message: String },
    #[error(
        "{key}: the record changed underneath (expected version {}, found {}); re-read and retry",
        fmt_version(*.expected), fmt_version(*.found)
    )]
    Conflict {
        key: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    /// A guarded update's condition failed: the item moved on since it was read.
    #[error("{key}: {meaning} no longer holds; re-read and retry")]
    Condition { key: String, meaning: String },
    #[error("table {table}: the epoch kept moving ({EPOCH_RETRIES} attempts); try again")]
    Busy { table: String },
}

fn fmt_version(v: Option<u64>) -> String {
    v.map_or_else(|| "none (new record)".to_owned(), |v| v.to_string())
}

/// What `init` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Created,
    AlreadyExists,
}

/// Operator access to one registry table.
#[derive(Debug, Clone)]
pub struct Registry {
    client: Client,
    table: String,
}

/// The `updated_at` value for a record written now.
#[must_use]
pub fn updated_at() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Registry {
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    fn other(&self, e: impl std::fmt::Display) -> WriteError {
        WriteError::Other {
            table: self.table.clone(),
            message: e.to_string(),
        }
    }

    /// The one-line form of a failed `operation` on this table.
    fn failed<E>(&self, operation: &'static str, e: &SdkError<E, HttpResponse>) -> WriteError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        WriteError::Dynamo(describe(operation, &self.table, e))
    }

    /// One item by key (strongly consistent).
    pub async fn get(&self, key: &str) -> Result<Option<Item>, WriteError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map(|o| o.item)
            .map_err(|e| self.failed("GetItem", &e))
    }

    /// Every item of `kind` (`tenant`, `cell`), paginated.
    pub async fn list(&self, of_kind: &str) -> Result<Vec<Item>, WriteError> {
        self.scan_kind(of_kind, None).await
    }

    /// Every item of `kind` whose string attribute `attr` is `value` (e.g. the `apikey` items
    /// of one `tenant`). A filtered Scan: it reads, and is billed for, the whole table.
    pub async fn list_where(
        &self,
        of_kind: &str,
        attr: &str,
        value: &str,
    ) -> Result<Vec<Item>, WriteError> {
        self.scan_kind(of_kind, Some((attr, value))).await
    }

    async fn scan_kind(
        &self,
        of_kind: &str,
        also: Option<(&str, &str)>,
    ) -> Result<Vec<Item>, WriteError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#k = :k")
                .expression_attribute_names("#k", "kind")
                .expression_attribute_values(":k", AttributeValue::S(of_kind.to_owned()));
            if let Some((attr, value)) = also {
                scan = scan
                    .filter_expression("#k = :k AND #a = :a")
                    .expression_attribute_names("#a", attr)
                    .expression_attribute_values(":a", AttributeValue::S(value.to_owned()));
            }
            let page = scan
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.failed("Scan", &e))?;
            let wanted = |i: &Item| {
                kind(i) == Some(of_kind)
                    && also.is_none_or(
                        |(a, v)| matches!(i.get(a), Some(AttributeValue::S(s)) if s == v),
                    )
            };
            out.extend(page.items.unwrap_or_default().into_iter().filter(wanted));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// One page of segment `segment` of `total` of a parallel, strongly consistent scan of every
    /// item, from `start` (`None`: the segment's first page); with the key to continue from
    /// (`None`: the segment is done). Callers handle a page before asking for the next, so a
    /// whole-table read holds a page per segment, not the table.
    pub async fn scan_page(
        &self,
        segment: u32,
        total: u32,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), WriteError> {
        let page = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(i32::try_from(segment).map_err(|e| self.other(e))?)
            .total_segments(i32::try_from(total).map_err(|e| self.other(e))?)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| self.failed("Scan", &e))?;
        Ok((page.items.unwrap_or_default(), page.last_evaluated_key))
    }

    /// The current epoch (strongly consistent).
    pub async fn epoch(&self) -> Result<u64, WriteError> {
        Ok(read_epoch(&self.client, &self.table, true).await?)
    }

    /// Writes `item` (whose `version` must be `expected + 1`, or 1 for a new record) in one
    /// transaction with the epoch bump and the change item. Returns the new epoch.
    pub async fn commit(&self, item: Item, expected: Option<u64>) -> Result<u64, WriteError> {
        self.commit_all(vec![(item, expected)], Vec::new(), false)
            .await
    }

    /// Writes records as [`Self::commit_batch`] does and, in the same transaction, the
    /// counter updates `updates` (each on an item none of the records is); all or nothing. A
    /// record whose version moved is a [`WriteError::Conflict`], an update whose condition no
    /// longer holds a [`WriteError::Condition`]. Returns the new epoch.
    pub async fn commit_guarded(
        &self,
        writes: Vec<(Item, Option<u64>)>,
        updates: Vec<Guarded>,
    ) -> Result<u64, WriteError> {
        if writes.len() + updates.len() > MAX_BATCH || writes.len() + updates.len() == 0 {
            return Err(self.other(format!(
                "a transaction holds 1 to {MAX_BATCH} records and updates, not {}",
                writes.len() + updates.len()
            )));
        }
        let batch = writes.len() + updates.len() > 1;
        self.commit_all(writes, updates, batch).await
    }

    /// Writes up to [`MAX_BATCH`] records (each as [`Self::commit`] takes it: the item and the
    /// version it replaces) in one transaction with one epoch bump and one change item listing
    /// their keys (`keys`). All or nothing: a record whose version moved fails the whole batch
    /// with a [`WriteError::Conflict`] naming the first such record. Returns the new epoch.
    pub async fn commit_batch(&self, writes: Vec<(Item, Option<u64>)>) -> Result<u64, WriteError> {
        if writes.is_empty() || writes.len() > MAX_BATCH {
            return Err(self.other(format!(
                "a batch holds 1 to {MAX_BATCH} records, not {}",
                writes.len()
            )));
        }
        self.commit_all(writes, Vec::new(), true).await
    }

    async fn commit_all(
        &self,
        writes: Vec<(Item, Option<u64>)>,
        updates: Vec<Guarded>,
        batch: bool,
    ) -> Result<u64, WriteError> {
        let mut keys = Vec::with_capacity(writes.len() + updates.len());
        let named = writes
            .iter()
            .map(|(item, _)| match item.get(PK) {
                Some(AttributeValue::S(k)) => Some(k.clone()),
                _ => None,
            })
            .chain(updates.iter().map(|u| Some(u.key.clone())));
        for key in named {
            match key {
                Some(k) if !keys.contains(&k) => keys.push(k),
                Some(k) => return Err(self.other(format!("{k} appears twice in one batch"))),
                None => return Err(self.other("the item has no pk")),
            }
        }
        let mut records = Vec::with_capacity(writes.len() + 2);
        for (item, expected) in &writes {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item.clone()));
            let put = match expected {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(v) => put
                    .condition_expression("#v = :expected")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
            };
            records.push(
                TransactWriteItem::builder()
                    .put(put.build().map_err(|e| self.other(e))?)
                    .build(),
            );
        }
        let stamp = updated_at();
        for u in &updates {
            records.push(u.action(&self.table, &stamp).map_err(|e| self.other(e))?);
        }
        for _ in 0..EPOCH_RETRIES {
            let old = self.epoch().await?;
            let new = old + 1;
            let mut items = records.clone();
            items.push(self.epoch_bump(old, new)?);
            items.push(self.change_item(new, &keys, batch)?);
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let e = match sent {
                Ok(_) => return Ok(new),
                Err(e) => e,
            };
            let Some(failed) = cancelled(&e) else {
                return Err(self.failed("TransactWriteItems", &e));
            };
            if let Some(&i) = failed.iter().find(|&&i| i < writes.len()) {
                let found = self
                    .get(&keys[i])
                    .await?
                    .and_then(|i| get_n(&i, "version").ok().flatten());
                return Err(WriteError::Conflict {
                    key: keys[i].clone(),
                    expected: writes[i].1,
                    found,
                });
            }
            if let Some(&i) = failed.iter().find(|&&i| i < writes.len() + updates.len()) {
                let u = &updates[i - writes.len()];
                return Err(WriteError::Condition {
                    key: u.key.clone(),
                    meaning: u.meaning.clone(),
                });
            }
            // Only the epoch moved (or the transaction collided): read it and retry.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(5..50))).await;
        }
        Err(WriteError::Busy {
            table: self.table.clone(),
        })
    }

    /// `SET epoch = new`, conditional on it still being `old`.
    fn epoch_bump(&self, old: u64, new: u64) -> Result<TransactWriteItem, WriteError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(EPOCH_KEY.to_owned()))
            .update_expression("SET #e = :new")
            .condition_expression("#e = :old")
            .expression_attribute_names("#e", "epoch")
            .expression_attribute_values(":new", AttributeValue::N(new.to_string()))
            .expression_attribute_values(":old", AttributeValue::N(old.to_string()))
            .build()
            .map_err(|e| self.other(e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The `change#<epoch>` item: `key` for a single write (readable by every proxy), `keys`
    /// for a batch; it expires after [`CHANGE_TTL`].
    fn change_item(
        &self,
        epoch: u64,
        keys: &[String],
        batch: bool,
    ) -> Result<TransactWriteItem, WriteError> {
        let expires = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + CHANGE_TTL.as_secs();
        let named = match keys {
            [one] if !batch => ("key", AttributeValue::S(one.clone())),
            _ => (
                "keys",
                AttributeValue::L(keys.iter().cloned().map(AttributeValue::S).collect()),
            ),
        };
        let put = Put::builder()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(change_key(epoch)))
            .item("kind", AttributeValue::S("change".to_owned()))
            .item(named.0, named.1)
            .item("epoch", AttributeValue::N(epoch.to_string()))
            .item(TTL_ATTRIBUTE, AttributeValue::N(expires.to_string()))
            .item("updated_at", AttributeValue::S(updated_at()))
            .build()
            .map_err(|e| self.other(e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// For a cancelled transaction: the positions of the actions whose condition failed.
fn cancelled(e: &SdkError<TransactWriteItemsError>) -> Option<Vec<usize>> {
    let TransactWriteItemsError::TransactionCanceledException(c) = e.as_service_error()? else {
        return None;
    };
    Some(
        c.cancellation_reasons()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
            .map(|(i, _)| i)
            .collect(),
    )
}
