//! The full read of the registry table: a parallel, paginated, strongly consistent `Scan` whose
//! pages become records as they arrive. Called by [`super::DynamoSource`]'s `load` (at start,
//! after a gap in the change log, and every `full_refresh`).
//!
//! Each segment runs as its own task: it reads a page (at most 1 MB, or `scan_page_size`
//! items), converts it to records on the spot, and sends them over a bounded channel to the one
//! task that pushes them into [`RegistryData`]. So at any time the load holds the records read
//! so far plus a few pages per segment, never the whole table as items (an item map is about
//! ten times the size of its record); a slow consumer holds the segments back instead of
//! letting pages pile up. An invalid item is skipped with a warning naming it and its field,
//! never half-used; the count of skipped items is logged once per load.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use tokio::sync::mpsc;

use super::error::{DynamoError, describe};
use super::schema::{Item, PK, cell_from_item, key_from_item, kind, tenant_from_item};
use crate::placement::record::BadField;
use crate::placement::{Cell, KeyRecord, RegistryData, RegistryError, TenantRecord};

/// Pages in flight per segment between the segment tasks and the consumer.
const PAGES_PER_SEGMENT: usize = 2;

/// A registry record read from one item.
#[derive(Debug)]
pub(super) enum Record {
    Tenant(TenantRecord),
    Key(KeyRecord),
    Cell(Cell),
}

/// One page, converted.
struct Page {
    records: Vec<Record>,
    skipped: usize,
}

/// The record an item holds; `Ok(None)` for items that are no record (the epoch, change items).
pub(super) fn record_of(item: &Item) -> Result<Option<Record>, BadField> {
    match kind(item) {
        Some("tenant") => tenant_from_item(item).map(|t| Some(Record::Tenant(t))),
        Some("apikey") => key_from_item(item).map(|k| Some(Record::Key(k))),
        Some("cell") => cell_of(item).map(|c| Some(Record::Cell(c))),
        _ => Ok(None),
    }
}

/// A cell item as the data plane uses it (validated like a config file's cell).
pub(super) fn cell_of(item: &Item) -> Result<Cell, BadField> {
    cell_from_item(item).and_then(|c| {
        Cell::from_file(&c.to_file_cell(), "cell").map_err(|f| BadField {
            field: f.key,
            value: f.value,
            reason: f.reason,
        })
    })
}

/// Logs an item that cannot be used; the caller leaves it out.
pub(super) fn skip(source: &str, item: &str, b: &BadField) {
    tracing::warn!(
        registry.source = %source, item = %item, field = %b.field, value = %b.value,
        reason = %b.reason, "invalid registry item skipped"
    );
}

/// Converts a page's items (which it consumes) into records, skipping the invalid ones.
fn convert(items: Vec<Item>, source: &str) -> Page {
    let mut page = Page {
        records: Vec::with_capacity(items.len()),
        skipped: 0,
    };
    for item in items {
        match record_of(&item) {
            Ok(Some(r)) => page.records.push(r),
            Ok(None) => {}
            Err(b) => {
                let pk = match item.get(PK) {
                    Some(AttributeValue::S(k)) => k.as_str(),
                    _ => "(no pk)",
                };
                skip(source, pk, &b);
                page.skipped += 1;
            }
        }
    }
    page
}

/// What one scan reads.
#[derive(Debug, Clone)]
pub(super) struct ScanPlan {
    pub table: String,
    pub segments: u32,
    pub page_size: Option<u32>,
    /// The source's name, for warnings and errors.
    pub source: String,
}

/// Reads the whole table into registry data, page by page, `plan.segments` segments at once.
pub(super) async fn scan(client: &Client, plan: &ScanPlan) -> Result<RegistryData, RegistryError> {
    let total = plan.segments.max(1);
    let remote = |message: String| RegistryError::Remote {
        source_name: plan.source.clone(),
        message,
    };
    let (tx, mut rx) = mpsc::channel(PAGES_PER_SEGMENT * total as usize);
    let mut tasks = tokio::task::JoinSet::new();
    for segment in 0..total {
        tasks.spawn(read_segment(
            client.clone(),
            plan.clone(),
            segment,
            total,
            tx.clone(),
        ));
    }
    drop(tx);
    let mut data = RegistryData::new();
    let mut skipped = 0usize;
    // Dropping `tasks` on an early return aborts the segments still reading.
    while let Some(page) = rx.recv().await {
        let page = page.map_err(|e| remote(e.to_string()))?;
        skipped += page.skipped;
        for r in page.records {
            match r {
                // A segment page repeated by a retry yields a record twice: the data keeps one.
                Record::Tenant(t) => {
                    data.push_tenant(t);
                }
                Record::Key(k) => {
                    data.push_key(k);
                }
                Record::Cell(c) => data.push_cell(c),
            }
        }
    }
    // A segment that ended without sending its error (a panic) shows here.
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| remote(format!("scan task: {e}")))?;
    }
    if skipped > 0 {
        tracing::warn!(
            registry.source = %plan.source, registry.skipped = skipped,
            "registry scan skipped invalid items"
        );
    }
    data.count_skipped(skipped);
    Ok(data)
}

/// One segment's pages, converted and sent as they arrive; an error ends the segment (sent
/// last). Returns when the segment is read or the consumer has gone.
async fn read_segment(
    client: Client,
    plan: ScanPlan,
    segment: u32,
    total: u32,
    tx: mpsc::Sender<Result<Page, DynamoError>>,
) {
    let mut start = None;
    loop {
        let sent = client
            .scan()
            .table_name(&plan.table)
            .segment(i32::try_from(segment).unwrap_or(0))
            .total_segments(i32::try_from(total).unwrap_or(1))
            .consistent_read(true)
            .set_limit(plan.page_size.and_then(|l| i32::try_from(l).ok()))
            .set_exclusive_start_key(start)
            .send()
            .await;
        let page = match sent {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(describe("Scan", &plan.table, &e))).await;
                return;
            }
        };
        start = page.last_evaluated_key;
        let converted = convert(page.items.unwrap_or_default(), &plan.source);
        if tx.send(Ok(converted)).await.is_err() || start.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::placement::TenantStatus;
    use crate::placement::dynamo::schema::tenant_item;

    #[test]
    fn a_page_becomes_records_and_bad_items_are_skipped_and_counted() {
        let good = TenantRecord {
            id: "acme".to_owned(),
            cell: "cell-1".to_owned(),
            status: TenantStatus::Active,
            tier: "standard".to_owned(),
            version: 1,
            issuers: Vec::new(),
            limits: crate::ratelimit::TenantLimits::default(),
            arm: None,
            entitlements: Vec::new(),
        };
        let mut bad = tenant_item(&good, "t");
        bad.insert("status".to_owned(), AttributeValue::S("UP".to_owned()));
        let epoch = Item::from([
            (PK.to_owned(), AttributeValue::S("epoch".to_owned())),
            ("epoch".to_owned(), AttributeValue::N("3".to_owned())),
        ]);
        let page = convert(vec![tenant_item(&good, "t"), bad, epoch], "test");
        assert_eq!(page.skipped, 1);
        assert_eq!(page.records.len(), 1);
        assert!(matches!(&page.records[0], Record::Tenant(t) if *t == good));
    }
}
