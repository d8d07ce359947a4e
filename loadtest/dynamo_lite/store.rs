//! dynamo-lite's tables: in memory, one string hash key per table, each item kept as its wire
//! JSON text (so a scan page is a concatenation, and a million tenant items take about 300 MB),
//! ordered by a stable hash of the key, which is how a `Scan` is cut into `TotalSegments`
//! disjoint segments and resumed from `ExclusiveStartKey`. Also the bulk seeding that builds
//! tenant and cell items with cellgate's own `schema` conversions.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use cellgate::placement::dynamo::schema::{self, CellRecord};
use cellgate::placement::{TenantRecord, TenantStatus};
use serde_json::{Value, json};

use super::wire::{self, Fault, WireItem};

/// DynamoDB's page cap for `Scan` (here counted on the items' JSON text).
pub const PAGE_BYTES: usize = 1 << 20;
/// DynamoDB's item size limit (here counted on the item's JSON text).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// One table.
pub struct Table {
    /// The hash key's attribute name.
    pub key: String,
    pub ttl: Option<String>,
    items: BTreeMap<(u64, String), Box<str>>,
}

/// Where an item sits in the table's order.
fn slot(pk: &str) -> (u64, String) {
    (cellgate::hash::stable_hash(pk.as_bytes()), pk.to_owned())
}

/// One scan page: the items' JSON texts, and the key to resume after (when the segment goes on).
pub struct Page<'a> {
    pub items: Vec<&'a str>,
    pub last: Option<String>,
}

impl Table {
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            ttl: None,
            items: BTreeMap::new(),
        }
    }

    /// The key value of an item or a `Key` map (a string attribute).
    pub fn key_of(&self, item: &WireItem) -> Result<String, Fault> {
        item.get(&self.key)
            .and_then(wire::as_s)
            .map(str::to_owned)
            .ok_or_else(|| {
                Fault::validation(format!(
                    "One of the required keys was not given a value: {} (a string)",
                    self.key
                ))
            })
    }

    pub fn get_text(&self, pk: &str) -> Option<&str> {
        self.items.get(&slot(pk)).map(AsRef::as_ref)
    }

    pub fn get(&self, pk: &str) -> Result<Option<WireItem>, Fault> {
        self.get_text(pk)
            .map(|t| {
                serde_json::from_str(t)
                    .map_err(|e| Fault::new("InternalServerError", format!("stored item: {e}")))
            })
            .transpose()
    }

    pub fn put(&mut self, item: &WireItem) -> Result<(), Fault> {
        let pk = self.key_of(item)?;
        let text = Value::Object(item.clone()).to_string();
        if text.len() > MAX_ITEM_BYTES {
            return Err(Fault::validation(
                "Item size has exceeded the maximum allowed size",
            ));
        }
        self.items.insert(slot(&pk), text.into_boxed_str());
        Ok(())
    }

    /// Stores an item already in wire text form (seeding).
    fn put_text(&mut self, pk: &str, text: String) {
        self.items.insert(slot(pk), text.into_boxed_str());
    }

    pub fn delete(&mut self, pk: &str) {
        self.items.remove(&slot(pk));
    }

    /// Segment `segment` of `total`, after `after`: up to `limit` items or [`PAGE_BYTES`].
    pub fn scan(
        &self,
        segment: u64,
        total: u64,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Page<'_> {
        let span = (u128::from(u64::MAX) + 1) / u128::from(total.max(1));
        let lo = u64::try_from(span * u128::from(segment)).unwrap_or(u64::MAX);
        let hi = u64::try_from(span * u128::from(segment + 1)).ok();
        let start = match after {
            Some(k) => Bound::Excluded(slot(k)),
            None => Bound::Included((lo, String::new())),
        };
        let end = match hi {
            Some(h) if segment + 1 < total => Bound::Excluded((h, String::new())),
            _ => Bound::Unbounded,
        };
        let mut page = Page {
            items: Vec::new(),
            last: None,
        };
        let mut bytes = 0;
        let mut range = self.items.range((start, end)).peekable();
        while let Some(((_, pk), text)) = range.next() {
            page.items.push(text);
            bytes += text.len();
            let full = bytes >= PAGE_BYTES || limit.is_some_and(|l| page.items.len() >= l);
            if full {
                if range.peek().is_some() {
                    page.last = Some(pk.clone());
                }
                break;
            }
        }
        page
    }

    /// `DescribeTable`'s `Table`.
    pub fn describe(&self, name: &str) -> Value {
        json!({
            "TableName": name,
            "TableStatus": "ACTIVE",
            "KeySchema": [{"AttributeName": self.key, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": self.key, "AttributeType": "S"}],
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "ItemCount": self.items.len(),
            "TableArn": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{name}"),
            "CreationDateTime": 0,
        })
    }
}

/// Every table, by name.
#[derive(Default)]
pub struct Store {
    pub tables: HashMap<String, Table>,
}

impl Store {
    pub fn table(&self, name: &str) -> Result<&Table, Fault> {
        self.tables.get(name).ok_or_else(|| Fault::no_table(name))
    }

    pub fn table_mut(&mut self, name: &str) -> Result<&mut Table, Fault> {
        self.tables
            .get_mut(name)
            .ok_or_else(|| Fault::no_table(name))
    }
}

/// The name of seeded tenant `i` (`tenant-0000001` ..).
pub fn tenant_name(i: usize) -> String {
    format!("tenant-{:07}", i + 1)
}

/// The cell of seeded tenant `i` among `cells`.
pub fn seeded_cell(i: usize, cells: usize) -> String {
    format!("cell-{}", i % cells.max(1) + 1)
}

/// A registry table `name` as `cellgate registry init` leaves it (key `pk`, TTL on
/// `expires_at`, epoch 0), holding `tenants` tenants (`tenant_name(i)` in `seeded_cell(i)`,
/// version 1) and `cells`; built in process with cellgate's `schema` item conversions.
pub fn seed(
    store: &mut Store,
    name: &str,
    tenants: usize,
    cell_count: usize,
    cells: &[CellRecord],
) {
    let mut table = Table::new(schema::PK);
    table.ttl = Some(schema::TTL_ATTRIBUTE.to_owned());
    let at = cellgate::placement::dynamo::write::updated_at();
    let epoch = WireItem::from_iter([
        (schema::PK.to_owned(), json!({"S": schema::EPOCH_KEY})),
        ("epoch".to_owned(), json!({"N": "0"})),
    ]);
    table.put_text(schema::EPOCH_KEY, Value::Object(epoch).to_string());
    for c in cells {
        let item = wire::item(&schema::cell_item(c, &at));
        table.put_text(&schema::cell_key(&c.id), Value::Object(item).to_string());
    }
    for i in 0..tenants {
        let r = TenantRecord {
            id: tenant_name(i),
            cell: seeded_cell(i, cell_count),
            status: TenantStatus::Active,
            tier: "standard".to_owned(),
            version: 1,
            issuers: Vec::new(),
            limits: cellgate::ratelimit::TenantLimits::default(),
            arm: None,
            entitlements: Vec::new(),
        };
        let item = wire::item(&schema::tenant_item(&r, &at));
        table.put_text(&schema::tenant_key(&r.id), Value::Object(item).to_string());
    }
    store.tables.insert(name.to_owned(), table);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn segments_split_the_table_and_pages_resume_where_they_stopped() {
        let mut t = Table::new("pk");
        for i in 0..1000 {
            let item = json!({"pk": {"S": format!("k{i}")}});
            t.put(item.as_object().unwrap()).unwrap();
        }
        let mut seen = Vec::new();
        for segment in 0..3 {
            let mut after: Option<String> = None;
            loop {
                let page = t.scan(segment, 3, after.as_deref(), Some(64));
                seen.extend(page.items.iter().map(|s| (*s).to_owned()));
                after = page.last;
                if after.is_none() {
                    break;
                }
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
    }
}
