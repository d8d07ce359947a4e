//! The DynamoDB placement source and the registry's write path.
//!
//! Design (the "Registry on DynamoDB" section of docs/registry.md is the public version):
//! - **Start**: a full snapshot from a paginated, parallel `Scan` (`scan_segments` segments,
//!   strongly consistent), after reading the `epoch` item so no write can slip between the two
//!   unnoticed. Pages become records as they arrive (`scan.rs`), so the table is never held
//!   whole as items.
//! - **Change detection**: every write ([`write::Registry`]) is one `TransactWriteItems` that
//!   puts the record (conditional on its version), bumps the `epoch` item (conditional on its
//!   old value) and appends a `change#<epoch>` item. Each proxy polls only the `epoch` item
//!   (`GetItem`, one eventually consistent read of a tiny item, 0.5 RCU) every `poll_interval`,
//!   so the read cost per node is fixed whatever the number of tenants, and no node tails the
//!   Stream (which allows about two readers per shard).
//! - **Deltas** ([`delta`]): when the epoch moved by at most [`MAX_DELTA`], the node reads the
//!   change items in between and then only the records they name (`BatchGetItem`, strongly
//!   consistent), so a change costs reads in proportion to the change, not to the table, and at
//!   most [`delta::MAX_DELTA_RECORDS`] records per poll; a gap in the log (an expired change
//!   item) falls back to a full reload. A change item names one record (`key`, a single write)
//!   or up to [`write::MAX_BATCH`] (`keys`, a batched write such as a mass evacuation).
//! - **Safety net**: a full reload every `full_refresh`.
//!
//! The source itself is thin: `changed` is the epoch poll, `load` the scan; the refresh service
//! ([`super::refresh`]) decides when to call them and keeps the last good snapshot on failure.

pub mod delta;
pub mod error;
mod guarded;
mod scan;
pub mod schema;
pub mod write;

use std::sync::{Mutex, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use self::error::{DynamoError, describe};
use self::schema::{EPOCH_KEY, Item, PK, get_n, key_from_item, tenant_from_item};
use super::record::BadField;
use super::{Delta, KeyRecord, PlacementSource, RegistryData, RegistryError, TenantRecord};
use crate::config::DynamoSettings;

/// A DynamoDB client over the proxy's own TLS stack ([`crate::aws::sdk_config`]).
pub async fn client(region: Option<&str>, endpoint_url: Option<&str>) -> Client {
    Client::new(&crate::aws::sdk_config(region, endpoint_url).await)
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

/// Beyond this many changes (epochs) since the last read, a full reload is cheaper than the
/// change log.
pub const MAX_DELTA: u64 = 500;

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

    fn err(&self, message: impl ToString) -> RegistryError {
        RegistryError::Remote {
            source_name: self.describe(),
            message: message.to_string(),
        }
    }

    /// One item, read strongly consistent, converted by `convert`.
    async fn fetch<T>(
        &self,
        key: String,
        convert: fn(&Item) -> Result<T, BadField>,
    ) -> Result<Option<T>, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.settings.table)
            .key(PK, AttributeValue::S(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                self.err(format!(
                    "{key}: {}",
                    describe("GetItem", &self.settings.table, &e)
                ))
            })?;
        match out.item {
            None => Ok(None),
            Some(item) => convert(&item)
                .map(Some)
                .map_err(|b| self.err(format!("{key}: {} = `{}`: {}", b.field, b.value, b.reason))),
        }
    }

    fn log(&self) -> delta::Log {
        delta::Log {
            client: self.client.clone(),
            table: self.settings.table.clone(),
            source: self.describe(),
        }
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
        let plan = scan::ScanPlan {
            table: self.settings.table.clone(),
            segments: self.settings.scan_segments,
            page_size: self.settings.scan_page_size,
            source: self.describe(),
        };
        scan::scan(&self.client, &plan).await
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
        self.fetch(schema::tenant_key(id), tenant_from_item).await
    }

    async fn fetch_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
        self.fetch(schema::apikey_key(id), key_from_item).await
    }

    /// Reads the change items between the snapshot's epoch and the newest one polled, then
    /// the records they name: a cost in reads proportional to the changes, not the tenants, and
    /// bounded per call ([`delta::MAX_DELTA_RECORDS`]; the next poll reads the rest).
    async fn delta(&self) -> Result<Option<Delta>, RegistryError> {
        let seen = *self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = *self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(from), Some(to)) = (seen, latest) else {
            return Ok(None);
        };
        if to <= from || to - from > MAX_DELTA {
            return Ok(None);
        }
        let Some((delta, reached)) = self.log().read(from, to).await? else {
            return Ok(None);
        };
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(reached);
        Ok(Some(delta))
    }
}
