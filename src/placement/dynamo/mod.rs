//! The DynamoDB placement source and the registry's write path.
//!
//! Design (the "Registry on DynamoDB" section of docs/registry.md is the public version):
//! - **Start**: a full snapshot from a paginated, parallel `Scan` (`scan_segments` segments,
//!   strongly consistent), after reading the `epoch` item so no write can slip between the two
//!   unnoticed.
//! - **Change detection**: every write ([`write::Registry`]) is one `TransactWriteItems` that
//!   puts the record (conditional on its version), bumps the `epoch` item (conditional on its
//!   old value) and appends a `change#<epoch>` item. Each proxy polls only the `epoch` item
//!   (`GetItem`, one eventually consistent read of a tiny item, 0.5 RCU) every `poll_interval`,
//!   so the read cost per node is fixed whatever the number of tenants, and no node tails the
//!   Stream (which allows about two readers per shard).
//! - **Deltas**: when the epoch moved by at most [`MAX_DELTA`], the node reads the change items
//!   in between and then only the records they name (`BatchGetItem`, strongly consistent), so a
//!   change costs reads in proportion to the change, not to the table; a gap in the log (an
//!   expired change item) falls back to a full reload.
//! - **Safety net**: a full reload every `full_refresh`.
//!
//! The source itself is thin: `changed` is the epoch poll, `load` the scan; the refresh service
//! ([`super::refresh`]) decides when to call them and keeps the last good snapshot on failure.

pub mod error;
pub mod schema;
pub mod write;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::types::AttributeValue;

use self::error::{DynamoError, describe};
use self::schema::{
    EPOCH_KEY, Item, PK, cell_from_item, change_key, get_n, kind, tenant_from_item,
};
use super::{Cell, Delta, PlacementSource, RegistryData, RegistryError, TenantRecord};
use crate::config::DynamoSettings;

/// A DynamoDB client over the proxy's own TLS stack (rustls + ring), honouring the standard
/// AWS environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials chain).
pub async fn client(region: Option<&str>, endpoint_url: Option<&str>) -> Client {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        );
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    if let Some(e) = endpoint_url {
        loader = loader.endpoint_url(e);
    }
    Client::new(&loader.load().await)
}

/// Why the epoch could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
    #[error("table {table}: the epoch item's {field} is invalid: {reason}")]
    Invalid {
        table: String,
        field: String,
        reason: String,
    },
}

/// The `epoch` item's value (0 when the table has none yet).
pub async fn read_epoch(client: &Client, table: &str, consistent: bool) -> Result<u64, EpochError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(PK, AttributeValue::S(EPOCH_KEY.to_owned()))
        .consistent_read(consistent)
        .send()
        .await
        .map_err(|e| describe("GetItem", table, &e))?;
    match out.item {
        None => Ok(0),
        Some(item) => get_n(&item, "epoch")
            .map(Option::unwrap_or_default)
            .map_err(|b| EpochError::Invalid {
                table: table.to_owned(),
                field: b.field,
                reason: b.reason,
            }),
    }
}

/// Placements from a DynamoDB table.
#[derive(Debug)]
pub struct DynamoSource {
    client: Client,
    settings: DynamoSettings,
    /// The epoch the snapshot reflects (the last load, or the last delta read).
    seen: Mutex<Option<u64>>,
    /// The newest epoch a poll saw.
    latest: Mutex<Option<u64>>,
}

/// Beyond this many changes since the last read, a full reload is cheaper than the change log.
pub const MAX_DELTA: u64 = 500;
/// Keys per `BatchGetItem` (DynamoDB's limit).
const BATCH: usize = 100;

impl DynamoSource {
    pub async fn new(settings: DynamoSettings) -> Self {
        let client = client(settings.region.as_deref(), settings.endpoint_url.as_deref()).await;
        Self {
            client,
            settings,
            seen: Mutex::new(None),
            latest: Mutex::new(None),
        }
    }

    /// Reads `keys` (strongly consistent), 100 per call, retrying unprocessed keys.
    async fn batch_get(&self, keys: Vec<String>) -> Result<Vec<Item>, RegistryError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|k| Item::from([(PK.to_owned(), AttributeValue::S(k.clone()))]))
                .collect();
            for attempt in 0..8 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| self.err(e.to_string()))?;
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.settings.table, request)
                    .send()
                    .await
                    .map_err(|e| self.err(describe("BatchGetItem", &self.settings.table, &e)))?;
                if let Some(mut r) = got.responses {
                    out.extend(r.remove(&self.settings.table).unwrap_or_default());
                }
                if let Some(mut u) = got.unprocessed_keys
                    && let Some(k) = u.remove(&self.settings.table)
                {
                    pending = k.keys;
                }
            }
            if !pending.is_empty() {
                return Err(self.err("batch get: keys left unprocessed after retries"));
            }
        }
        Ok(out)
    }

    fn err(&self, message: impl ToString) -> RegistryError {
        RegistryError::Remote {
            source_name: self.describe(),
            message: message.to_string(),
        }
    }

    async fn scan(&self) -> Result<Vec<Item>, RegistryError> {
        let total = self.settings.scan_segments.max(1);
        let mut tasks = tokio::task::JoinSet::new();
        for segment in 0..total {
            let client = self.client.clone();
            let table = self.settings.table.clone();
            let limit = self.settings.scan_page_size;
            tasks.spawn(async move {
                let mut items = Vec::new();
                let mut start = None;
                loop {
                    let page = client
                        .scan()
                        .table_name(&table)
                        .segment(i32::try_from(segment).unwrap_or(0))
                        .total_segments(i32::try_from(total).unwrap_or(1))
                        .consistent_read(true)
                        .set_limit(limit.and_then(|l| i32::try_from(l).ok()))
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(|e| describe("Scan", &table, &e))?;
                    items.extend(page.items.unwrap_or_default());
                    start = page.last_evaluated_key;
                    if start.is_none() {
                        return Ok::<_, DynamoError>(items);
                    }
                }
            });
        }
        let mut all = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let items = joined
                .map_err(|e| self.err(format!("scan task: {e}")))?
                .map_err(|e| self.err(e))?;
            all.extend(items);
        }
        Ok(all)
    }
}

/// Splits scanned items into records; an invalid item is skipped with a warning (one bad write
/// must not take the whole registry down), never half-used.
#[must_use]
pub fn registry_data(items: &[Item], source: &str) -> RegistryData {
    let mut data = RegistryData::default();
    for item in items {
        let pk = match item.get(PK) {
            Some(AttributeValue::S(k)) => k.as_str(),
            _ => "(no pk)",
        };
        // A scan segment repeated by a retry yields a record twice: the data keeps one.
        let parsed = match kind(item) {
            Some("tenant") => tenant_from_item(item).map(|t| {
                data.push_tenant(t);
            }),
            Some("cell") => cell_from_item(item).and_then(|c| {
                Cell::from_file(&c.to_file_cell(), "cell")
                    .map(|cell| data.push_cell(cell))
                    .map_err(|f| schema_bad(&f.key, &f.value, &f.reason))
            }),
            _ => Ok(()),
        };
        if let Err(b) = parsed {
            skip(source, pk, &b);
        }
    }
    data
}

fn skip(source: &str, key: &str, b: &super::record::BadField) {
    tracing::warn!(
        registry.source = %source, item = %key, field = %b.field, value = %b.value,
        reason = %b.reason, "invalid registry item skipped"
    );
}

fn schema_bad(field: &str, value: &str, reason: &str) -> super::record::BadField {
    super::record::BadField {
        field: field.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

impl PlacementSource for DynamoSource {
    fn describe(&self) -> String {
        format!("dynamodb:{}", self.settings.table)
    }

    async fn load(&self) -> Result<RegistryData, RegistryError> {
        // The epoch first: a write that lands during the scan bumps it past what is remembered,
        // so the next poll loads again.
        let epoch = read_epoch(&self.client, &self.settings.table, true).await;
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = epoch.as_ref().ok().copied();
        epoch.map_err(|e| self.err(format!("reading the epoch: {e}")))?;
        let items = self.scan().await?;
        Ok(registry_data(&items, &self.describe()))
    }

    async fn changed(&self) -> Result<bool, RegistryError> {
        let epoch = read_epoch(&self.client, &self.settings.table, false)
            .await
            .map_err(|e| self.err(format!("polling the epoch: {e}")))?;
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch);
        // An eventually consistent read may lag the last load: only a newer epoch counts.
        let seen = *self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(seen.is_none_or(|s| epoch > s))
    }

    async fn fetch_tenant(&self, id: &str) -> Result<Option<TenantRecord>, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.settings.table)
            .key(PK, AttributeValue::S(schema::tenant_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                self.err(format!(
                    "{id}: {}",
                    describe("GetItem", &self.settings.table, &e)
                ))
            })?;
        match out.item {
            None => Ok(None),
            Some(item) => tenant_from_item(&item).map(Some).map_err(|b| {
                self.err(format!(
                    "tenant#{id}: {} = `{}`: {}",
                    b.field, b.value, b.reason
                ))
            }),
        }
    }

    /// Reads the change items between the snapshot's epoch and the newest one polled, then
    /// the records they name: a cost in reads proportional to the changes, not the tenants.
    async fn delta(&self) -> Result<Option<Delta>, RegistryError> {
        let seen = *self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = *self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(from), Some(to)) = (seen, latest) else {
            return Ok(None);
        };
        if to <= from || to - from > MAX_DELTA {
            return Ok(None);
        }
        let changes = self
            .batch_get(((from + 1)..=to).map(change_key).collect())
            .await?;
        if u64::try_from(changes.len()).unwrap_or(0) < to - from {
            // A change item expired (or a write is not visible yet): the log cannot be trusted.
            return Ok(None);
        }
        let mut keys: Vec<String> = changes
            .iter()
            .filter_map(|c| match c.get("key") {
                Some(AttributeValue::S(k)) => Some(k.clone()),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        let records = self.batch_get(keys.clone()).await?;
        let by_key: std::collections::HashMap<&str, &Item> = records
            .iter()
            .filter_map(|i| match i.get(PK) {
                Some(AttributeValue::S(k)) => Some((k.as_str(), i)),
                _ => None,
            })
            .collect();
        let mut delta = Delta::default();
        for key in &keys {
            let item = by_key.get(key.as_str()).copied();
            if let Some(id) = key.strip_prefix("tenant#") {
                match item.map(tenant_from_item) {
                    None => delta.tenants.push((id.to_owned(), None)),
                    Some(Ok(t)) => delta.tenants.push((id.to_owned(), Some(t))),
                    Some(Err(b)) => skip(&self.describe(), key, &b),
                }
            } else if let Some(id) = key.strip_prefix("cell#") {
                let parsed = item.map(|i| {
                    cell_from_item(i).and_then(|c| {
                        Cell::from_file(&c.to_file_cell(), "cell")
                            .map_err(|f| schema_bad(&f.key, &f.value, &f.reason))
                    })
                });
                match parsed {
                    None => delta.cells.push((id.to_owned(), None)),
                    Some(Ok(c)) => delta.cells.push((id.to_owned(), Some(c))),
                    Some(Err(b)) => skip(&self.describe(), key, &b),
                }
            }
        }
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(to);
        Ok(Some(delta))
    }
}
