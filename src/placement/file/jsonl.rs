//! The JSON Lines registry format (`.jsonl`, `.ndjson`): one record per line, read as a stream.
//!
//! Each line is `{"tenant": {...}}`, `{"cell": {...}}` or `{"apikey": {...}}` with the fields
//! of a TOML `[[tenants]]`, `[[cells]]` or `[[apikeys]]` entry ([`Line`]); blank lines and lines starting with `#` are
//! skipped. The file source ([`super::FileSource`]) reads it on the blocking pool one line at a
//! time into a reused buffer and pushes each record into [`RegistryData`] as soon as it is
//! checked, so a load holds one line and the records, never the file's text or a document
//! tree: this is the format for registries of a million tenants. Errors name the file, the
//! line and the field (`registry.jsonl: line 12: tenant.tier = "x y": ...`); a line that is
//! not JSON, or has an unknown field, is a parse error naming the line and column.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use super::shape::Line;
use crate::placement::record::{key_record, tenant_record};
use crate::placement::{Cell, KeyRecord, RegistryData, RegistryError, TenantRecord};

/// The longest line accepted, newline included: a cell with hundreds of targets fits; a file
/// with no newlines (not JSON Lines at all) is refused before it is buffered whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Read buffer: large reads, few system calls.
const READ_BUFFER: usize = 1 << 20;

/// Where checked records go: the registry being loaded, or a search for one tenant.
trait Sink {
    /// `false`: a tenant with this id was taken already.
    fn tenant(&mut self, t: TenantRecord) -> bool;
    /// `false`: a key with this id was taken already.
    fn key(&mut self, k: KeyRecord) -> bool;
    fn cell(&mut self, c: Cell);
}

impl Sink for RegistryData {
    fn tenant(&mut self, t: TenantRecord) -> bool {
        self.push_tenant(t)
    }

    fn key(&mut self, k: KeyRecord) -> bool {
        self.push_key(k)
    }

    fn cell(&mut self, c: Cell) {
        self.push_cell(c);
    }
}

/// Keeps only the tenant asked for (a lookup), so it holds one record, not the registry.
struct Find<'a> {
    id: &'a str,
    found: Option<TenantRecord>,
}

impl Sink for Find<'_> {
    fn tenant(&mut self, t: TenantRecord) -> bool {
        if t.id != self.id {
            return true;
        }
        if self.found.is_some() {
            return false;
        }
        self.found = Some(t);
        true
    }

    fn key(&mut self, _: KeyRecord) -> bool {
        true
    }

    fn cell(&mut self, _: Cell) {}
}

/// Keeps only the API key asked for (a lookup).
struct FindKey<'a> {
    id: &'a str,
    found: Option<KeyRecord>,
}

impl Sink for FindKey<'_> {
    fn tenant(&mut self, _: TenantRecord) -> bool {
        true
    }

    fn key(&mut self, k: KeyRecord) -> bool {
        if k.id != self.id {
            return true;
        }
        if self.found.is_some() {
            return false;
        }
        self.found = Some(k);
        true
    }

    fn cell(&mut self, _: Cell) {}
}

/// Why a read stopped early: an error to report as is, a duplicate tenant whose first line is
/// looked up afterwards (remembering every id's line would cost memory on every load), or
/// what was looked for was found.
enum Stop {
    Error(RegistryError),
    Duplicate { id: String, line: usize },
    Done,
}

impl From<RegistryError> for Stop {
    fn from(e: RegistryError) -> Self {
        Self::Error(e)
    }
}

/// Parses and validates a JSON Lines registry held in memory; `file` names it in errors.
pub fn parse_jsonl(text: &str, file: &str) -> Result<RegistryData, RegistryError> {
    let mut data = RegistryData::new();
    match read(text.as_bytes(), file, &mut data) {
        Ok(()) => Ok(data),
        Err(stop) => Err(resolve(stop, file, text.as_bytes())),
    }
}

/// Reads and validates the JSON Lines registry at `path`, streaming (blocking: call it on the
/// blocking pool); `file` names it in errors.
pub fn read_jsonl(path: &Path, file: &str) -> Result<RegistryData, RegistryError> {
    let mut data = RegistryData::new();
    match read(open(path, file)?, file, &mut data) {
        Ok(()) => Ok(data),
        Err(stop) => Err(resolve_at(stop, path, file)),
    }
}

/// One tenant's record from the JSON Lines registry at `path` (blocking). The whole file is
/// read and checked as a load would, but only the wanted record is kept.
pub fn find_tenant_jsonl(
    path: &Path,
    file: &str,
    id: &str,
) -> Result<Option<TenantRecord>, RegistryError> {
    let mut find = Find { id, found: None };
    match read(open(path, file)?, file, &mut find) {
        Ok(()) => Ok(find.found),
        Err(stop) => Err(resolve_at(stop, path, file)),
    }
}

/// One API key's record from the JSON Lines registry at `path` (blocking).
pub fn find_key_jsonl(
    path: &Path,
    file: &str,
    id: &str,
) -> Result<Option<KeyRecord>, RegistryError> {
    let mut find = FindKey { id, found: None };
    match read(open(path, file)?, file, &mut find) {
        Ok(()) => Ok(find.found),
        Err(stop) => Err(resolve_at(stop, path, file)),
    }
}

/// Writes `line` as one line of a JSON Lines registry.
pub fn write_line<W: Write + ?Sized>(out: &mut W, line: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

fn open(path: &Path, file: &str) -> Result<BufReader<File>, RegistryError> {
    File::open(path)
        .map(|f| BufReader::with_capacity(READ_BUFFER, f))
        .map_err(|error| RegistryError::Read {
            file: file.to_owned(),
            error,
        })
}

fn invalid(file: &str, line: usize, key: &str, value: &str, reason: &str) -> RegistryError {
    RegistryError::Invalid {
        file: file.to_owned(),
        key: format!("line {line}: {key}"),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Calls `each` with every line that holds a record (its number, from 1, and its bytes
/// trimmed), skipping blank lines, `#` comments and a leading byte-order mark.
fn lines<R: BufRead>(
    mut reader: R,
    file: &str,
    mut each: impl FnMut(usize, &[u8]) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let mut buf = Vec::with_capacity(512);
    let mut number = 0;
    loop {
        buf.clear();
        let got = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|error| RegistryError::Read {
                file: file.to_owned(),
                error,
            })?;
        if got == 0 {
            return Ok(());
        }
        number += 1;
        if buf.len() > MAX_LINE_BYTES {
            return Err(Stop::Error(RegistryError::Parse {
                file: file.to_owned(),
                message: format!(
                    "line {number}: longer than {MAX_LINE_BYTES} bytes (one record per line)"
                ),
            }));
        }
        let mut line = buf.trim_ascii();
        if number == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        each(number, line)?;
    }
}

/// A line that is not a record: serde's message, placed at the file's line and the column.
fn syntax(file: &str, line: usize, e: &serde_json::Error) -> RegistryError {
    let text = e.to_string();
    // serde_json appends "at line 1 column N" (of the one-line document): re-placed here.
    let bare = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    let hint = if e.is_syntax() || e.is_eof() {
        "; each line is one {\"tenant\": {...}}, {\"cell\": {...}} or {\"apikey\": {...}} object"
    } else {
        ""
    };
    RegistryError::Parse {
        file: file.to_owned(),
        message: format!("line {line}, column {}: {bare}{hint}", e.column()),
    }
}

fn read<R: BufRead>(reader: R, file: &str, sink: &mut impl Sink) -> Result<(), Stop> {
    // Cells are few: each id's line is kept, so a duplicate names both.
    let mut cells: HashMap<String, usize> = HashMap::new();
    lines(reader, file, |n, bytes| {
        match serde_json::from_slice::<Line>(bytes).map_err(|e| syntax(file, n, &e))? {
            Line::Tenant(t) => {
                let record = tenant_record(t.into_raw()).map_err(|b| {
                    invalid(file, n, &format!("tenant.{}", b.field), &b.value, &b.reason)
                })?;
                let id = record.id.clone();
                if !sink.tenant(record) {
                    return Err(Stop::Duplicate { id, line: n });
                }
            }
            Line::Apikey(k) => {
                let record = key_record(k.into_raw()).map_err(|b| {
                    invalid(file, n, &format!("apikey.{}", b.field), &b.value, &b.reason)
                })?;
                let id = record.id.clone();
                if !sink.key(record) {
                    return Err(invalid(file, n, "apikey.id", &id, "duplicate API key id").into());
                }
            }
            Line::Cell(c) => {
                let cell =
                    c.to_cell(&format!("line {n}: cell"))
                        .map_err(|f| RegistryError::Invalid {
                            file: file.to_owned(),
                            key: f.key,
                            value: f.value,
                            reason: f.reason,
                        })?;
                if let Some(first) = cells.insert(c.id.clone(), n) {
                    let reason = format!("duplicate cell id (first on line {first})");
                    return Err(invalid(file, n, "cell.id", &c.id, &reason).into());
                }
                sink.cell(cell);
            }
        }
        Ok(())
    })
}

/// [`resolve`] over the file at `path`, opened again (if it cannot be, the duplicate's first
/// line goes unnamed).
fn resolve_at(stop: Stop, path: &Path, file: &str) -> RegistryError {
    match open(path, file) {
        Ok(again) => resolve(stop, file, again),
        Err(_) => resolve(stop, file, std::io::empty()),
    }
}

/// The error for `stop`; for a duplicate tenant, `again` (the same text, from the start) is
/// read up to the id's first line so the error names both.
fn resolve(stop: Stop, file: &str, again: impl BufRead) -> RegistryError {
    let (id, line) = match stop {
        Stop::Error(e) => return e,
        Stop::Duplicate { id, line } => (id, line),
        Stop::Done => {
            return RegistryError::Parse {
                file: file.to_owned(),
                message: "the read stopped early".to_owned(),
            };
        }
    };
    let mut first = None;
    let _ = lines(again, file, |n, bytes| {
        if n >= line {
            return Err(Stop::Done);
        }
        if let Ok(Line::Tenant(t)) = serde_json::from_slice::<Line>(bytes)
            && t.id == id
        {
            first = Some(n);
            return Err(Stop::Done);
        }
        Ok(())
    });
    let reason = first.map_or_else(
        || "duplicate tenant id".to_owned(),
        |f| format!("duplicate tenant id (first on line {f})"),
    );
    invalid(file, line, "tenant.id", &id, &reason)
}
