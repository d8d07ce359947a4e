//! `cellgate registry export`: the DynamoDB registry as a JSON Lines registry file.
//!
//! The table is scanned in parallel segments, as the proxy's start-up scan does, and each page
//! is written as it arrives (a bounded channel to one writer thread), so memory holds a few
//! pages, never the table. Every tenant and cell item goes through the proxy's own conversions
//! (`tenant_from_item`; `cell_from_item` and `RegistryCell::to_cell`) and is written in the file
//! source's shape ([`Line`]); an item that fails them, or whose key does not match its id, is
//! skipped and named in the command's output. A file is written beside its destination and
//! renamed over it once complete and synced, so a proxy following the file never reads half of
//! one; `-` writes to stdout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{OpsError, invalid};
use crate::placement::dynamo::schema::{
    Item, PK, apikey_key, cell_from_item, cell_key, key_from_item, kind, tenant_from_item,
    tenant_key,
};
use crate::placement::dynamo::write::Registry;
use crate::placement::file::Format;
use crate::placement::file::jsonl::write_line;
use crate::placement::file::shape::{FileKey, FileTenant, Line};
use crate::placement::record::BadField;

/// Skipped items named in the output at most (all are counted).
const NAMED_SKIPS: usize = 100;
/// Output buffer: large writes, few system calls.
const WRITE_BUFFER: usize = 1 << 20;

/// Where the lines go: stdout, or a temporary file renamed over the destination at the end.
enum Out {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        writer: BufWriter<File>,
        pending: Pending,
        dest: PathBuf,
    },
}

/// A temporary file, removed unless it was renamed into place (a failed or interrupted export
/// leaves nothing behind).
struct Pending(Option<PathBuf>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn io_error(path: &Path, error: std::io::Error) -> OpsError {
    OpsError::Io {
        path: path.display().to_string(),
        error,
    }
}

impl Out {
    fn open(out: &str) -> Result<Self, OpsError> {
        if out == "-" {
            return Ok(Self::Stdout(BufWriter::with_capacity(
                WRITE_BUFFER,
                std::io::stdout(),
            )));
        }
        let dest = PathBuf::from(out);
        if Format::of(&dest) != Format::JsonLines {
            return Err(invalid(
                "--out",
                out,
                "a .jsonl or .ndjson file (the file source reads any other name as TOML), or -",
            ));
        }
        let name = dest
            .file_name()
            .map_or_else(|| "registry".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        Ok(Self::File {
            writer: BufWriter::with_capacity(WRITE_BUFFER, file),
            pending: Pending(Some(tmp)),
            dest,
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Self::Stdout(w) => w,
            Self::File { writer, .. } => writer,
        }
    }

    fn shown(&self) -> PathBuf {
        match self {
            Self::Stdout(_) => PathBuf::from("-"),
            Self::File { dest, .. } => dest.clone(),
        }
    }

    /// Flushes; a file is synced and renamed into place.
    fn finish(self) -> Result<(), OpsError> {
        match self {
            Self::Stdout(mut w) => w.flush().map_err(|e| io_error(Path::new("-"), e)),
            Self::File {
                writer,
                mut pending,
                dest,
            } => {
                let file = writer
                    .into_inner()
                    .map_err(|e| io_error(&dest, e.into_error()))?;
                file.sync_all().map_err(|e| io_error(&dest, e))?;
                let tmp = pending.0.take().unwrap_or_default();
                if let Err(e) = std::fs::rename(&tmp, &dest) {
                    pending.0 = Some(tmp);
                    return Err(io_error(&dest, e));
                }
                Ok(())
            }
        }
    }
}

/// What was written and what was skipped.
#[derive(Debug, Default)]
struct Counts {
    tenants: u64,
    cells: u64,
    apikeys: u64,
    skipped: u64,
    named: Vec<Value>,
}

impl Counts {
    fn skip(&mut self, item: &Item, b: &BadField) {
        self.skipped += 1;
        if self.named.len() < NAMED_SKIPS {
            let key = match item.get(PK) {
                Some(aws_sdk_dynamodb::types::AttributeValue::S(k)) => k.as_str(),
                _ => "(no pk)",
            };
            self.named.push(json!({
                "item": key, "field": b.field, "value": b.value, "reason": b.reason,
            }));
        }
    }
}

fn mismatch(pk: &str) -> BadField {
    BadField {
        field: PK.to_owned(),
        value: pk.to_owned(),
        reason: "the item's key does not match its id".to_owned(),
    }
}

/// The line for a tenant, API key or cell item (`None`: another kind of item, not exported).
fn line(item: &Item) -> Option<Result<Line, BadField>> {
    let pk = match item.get(PK) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(k)) => k.as_str(),
        _ => "",
    };
    match kind(item)? {
        "tenant" => Some(tenant_from_item(item).and_then(|t| {
            // Keys are unique, so ids that match them are too: the file has no duplicates.
            if pk == tenant_key(&t.id) {
                Ok(Line::Tenant(FileTenant::from_record(&t)))
            } else {
                Err(mismatch(pk))
            }
        })),
        "apikey" => Some(key_from_item(item).and_then(|k| {
            if pk == apikey_key(&k.id) {
                Ok(Line::Apikey(FileKey::from_record(&k)))
            } else {
                Err(mismatch(pk))
            }
        })),
        "cell" => Some(cell_from_item(item).and_then(|c| {
            if pk != cell_key(&c.id) {
                return Err(mismatch(pk));
            }
            let file_cell = c.to_registry_cell();
            match file_cell.to_cell("cell") {
                Ok(_) => Ok(Line::Cell(file_cell)),
                Err(f) => Err(BadField {
                    field: f.key,
                    value: f.value,
                    reason: f.reason,
                }),
            }
        })),
        _ => None,
    }
}

/// Writes every page received until the scan ends (every sender dropped).
fn write_pages(mut rx: mpsc::Receiver<Vec<Item>>, out: &mut Out) -> Result<Counts, OpsError> {
    let shown = out.shown();
    let w = out.writer();
    let mut counts = Counts::default();
    while let Some(page) = rx.blocking_recv() {
        for item in &page {
            match line(item) {
                None => {}
                Some(Err(b)) => counts.skip(item, &b),
                Some(Ok(l)) => {
                    write_line(w, &l).map_err(|e| io_error(&shown, e))?;
                    match l {
                        Line::Tenant(_) => counts.tenants += 1,
                        Line::Cell(_) => counts.cells += 1,
                        Line::Apikey(_) => counts.apikeys += 1,
                    }
                }
            }
        }
    }
    Ok(counts)
}

/// `registry export --out OUT --segments N`: prints `{"tenants", "cells", "apikeys", "skipped", "out", ...}`.
pub async fn export(reg: &Registry, out: &str, segments: u32) -> Result<Value, OpsError> {
    let mut sink = Out::open(out)?;
    let total = segments.max(1);
    let (tx, rx) = mpsc::channel::<Vec<Item>>(2 * total as usize);
    let writer = tokio::task::spawn_blocking(move || {
        let counts = write_pages(rx, &mut sink);
        (counts, sink)
    });
    let mut scans = tokio::task::JoinSet::new();
    for segment in 0..total {
        let (reg, tx) = (reg.clone(), tx.clone());
        scans.spawn(async move {
            let mut start = None;
            loop {
                let (items, next) = reg.scan_page(segment, total, start).await?;
                // The writer stopped (a write failed): its error is the one reported.
                if tx.send(items).await.is_err() {
                    return Ok(());
                }
                start = next;
                if start.is_none() {
                    return Ok::<(), OpsError>(());
                }
            }
        });
    }
    drop(tx);
    let mut failed = None;
    while let Some(joined) = scans.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(invalid(
                "scan",
                &e.to_string(),
                "a scan task did not complete",
            ))
        });
        if let Err(e) = result {
            failed.get_or_insert(e);
            // The rest are cancelled; their senders drop, so the writer ends.
            scans.abort_all();
        }
    }
    let (counts, sink) = writer
        .await
        .map_err(|e| invalid("export", &e.to_string(), "the writer did not complete"))?;
    if let Some(e) = failed {
        return Err(e);
    }
    let counts = counts?;
    let shown = sink.shown();
    tokio::task::spawn_blocking(move || sink.finish())
        .await
        .map_err(|e| invalid("export", &e.to_string(), "the rename did not complete"))??;
    Ok(json!({
        "table": reg.table(),
        "out": shown.display().to_string(),
        "tenants": counts.tenants,
        "cells": counts.cells,
        "apikeys": counts.apikeys,
        "skipped": counts.skipped,
        "skipped_items": counts.named,
    }))
}
