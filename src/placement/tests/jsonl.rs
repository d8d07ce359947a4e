//! The JSON Lines registry: good files, errors naming line and field, duplicates, comments,
//! the same records as TOML, and the file source choosing the format by extension.

use super::*;
use crate::placement::file::jsonl::{parse_jsonl, write_line};
use crate::placement::file::shape::{FileTenant, Line};
use crate::placement::file::{FileSource, Format, parse_registry};

/// [`GOOD`] (the TOML test registry) as JSON Lines, with a comment and a blank line.
const GOOD_JSONL: &str = r#"# two cells, two tenants
{"cell": {"id": "cell-1", "targets": ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]}}
{"cell": {"id": "cell-2", "state": "DRAINING", "targets": ["https://cell-2.internal.example"]}}

{"tenant": {"id": "acme", "cell": "cell-1", "tier": "enterprise", "version": 7}}
{"tenant": {"id": "globex", "cell": "cell-2", "status": "MIGRATING"}}
"#;

/// The (key, value, reason) of an `Invalid` error; any other outcome fails the test.
fn invalid(text: &str) -> (String, String, String) {
    match parse_jsonl(text, "reg.jsonl") {
        Err(RegistryError::Invalid {
            file,
            key,
            value,
            reason,
        }) => {
            assert_eq!(file, "reg.jsonl");
            (key, value, reason)
        }
        other => panic!("expected RegistryError::Invalid, got {other:?}"),
    }
}

/// The message of a `Parse` error; any other outcome fails the test.
fn parse_error(text: &str) -> String {
    match parse_jsonl(text, "reg.jsonl") {
        Err(RegistryError::Parse { file, message }) => {
            assert_eq!(file, "reg.jsonl");
            message
        }
        other => panic!("expected RegistryError::Parse, got {other:?}"),
    }
}

fn sorted(data: &RegistryData) -> Vec<TenantRecord> {
    let mut tenants: Vec<TenantRecord> = data.tenants().collect();
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    tenants
}

/// What the snapshot sees of a cell: id, state, groups (name, version, weight, targets).
fn cell_view(c: &Cell) -> String {
    let groups: Vec<String> = c
        .groups
        .iter()
        .map(|g| format!("{}/{}/{}/{:?}", g.name, g.version, g.weight, g.targets))
        .collect();
    let targets: Vec<&str> = c.targets.iter().map(|t| t.url.as_ref()).collect();
    format!(
        "{} {:?} {groups:?} {targets:?} {} {:?} {:?}",
        c.id, c.state, c.preserve_host, c.max_in_flight, c.wave
    )
}

#[test]
fn good_jsonl_parses_to_the_same_records_as_toml() {
    let jsonl = parse_jsonl(GOOD_JSONL, "reg.jsonl").unwrap();
    let toml = parse_registry(GOOD, "reg.toml").unwrap();
    assert_eq!(jsonl.tenant_count(), 2);
    assert_eq!(sorted(&jsonl), sorted(&toml));
    let cells = |d: &RegistryData| d.cells().iter().map(cell_view).collect::<Vec<_>>();
    assert_eq!(cells(&jsonl), cells(&toml));
    // Defaults as in TOML: ACTIVE, `standard`, version 0.
    let globex = sorted(&jsonl).pop().unwrap();
    assert_eq!((globex.tier.as_str(), globex.version), ("standard", 0));
    // Empty, blank-only and comment-only files hold nothing; CRLF and a BOM are fine.
    for empty in ["", "\n\n", "# nothing\n   \n\t# still nothing"] {
        assert_eq!(parse_jsonl(empty, "reg.jsonl").unwrap().tenant_count(), 0);
    }
    let crlf = "\u{feff}{\"tenant\": {\"id\": \"a\", \"cell\": \"c\"}}\r\n\r\n";
    assert_eq!(parse_jsonl(crlf, "reg.jsonl").unwrap().tenant_count(), 1);
}

#[test]
fn every_field_of_a_tenant_and_a_cell_is_read() {
    let text = r#"{"tenant": {"id": "acme", "cell": "c1", "status": "SUSPENDED", "tier": "gold", "version": 3, "issuers": ["https://idp"], "limits": {"rate": 50.5, "burst": 20, "concurrency": 7}, "arm": "canary"}}
{"cell": {"id": "c1", "state": "ACTIVE", "preserve_host": false, "max_in_flight": 800, "wave": 2, "groups": [{"name": "stable", "version": "v1", "weight": 95, "targets": ["http://10.0.0.1:80"]}, {"name": "canary", "weight": 5, "targets": ["http://10.0.0.2:80"]}]}}
"#;
    let data = parse_jsonl(text, "reg.jsonl").unwrap();
    let t = data.tenants().next().unwrap();
    assert_eq!(t.status, TenantStatus::Suspended);
    assert_eq!((t.tier.as_str(), t.version), ("gold", 3));
    assert_eq!(t.issuers, ["https://idp"]);
    assert_eq!(
        (t.limits.rate, t.limits.burst, t.limits.concurrency),
        (Some(50.5), Some(20), Some(7))
    );
    assert_eq!(t.arm.as_deref(), Some("canary"));
    let c = &data.cells()[0];
    assert_eq!(
        (c.preserve_host, c.max_in_flight, c.wave),
        (false, Some(800), Some(2))
    );
    let groups: Vec<_> = c
        .groups
        .iter()
        .map(|g| (&*g.name, &*g.version, g.weight))
        .collect();
    assert_eq!(groups, [("stable", "v1", 95), ("canary", "canary", 5)]);
}

#[test]
fn invalid_records_name_the_line_and_field() {
    let t =
        |fields: &str| format!("{{\"tenant\": {{\"id\": \"acme\", \"cell\": \"c\"{fields}}}}}\n");
    let at_3 = |line: String| format!("\n# comment\n{line}");
    let (key, value, reason) = invalid(&at_3(t(r#", "tier": "gold plated""#)));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("line 3: tenant.tier", "gold plated")
    );
    assert!(reason.contains("1-32 characters"), "{reason}");
    let e = parse_jsonl(&t(r#", "tier": "x y""#), "registry.jsonl").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("registry.jsonl: line 1: tenant.tier = \"x y\": "),
        "{e}"
    );
    assert_eq!(
        invalid(&t(r#", "status": "active""#)).0,
        "line 1: tenant.status"
    );
    assert_eq!(invalid(&t(r#", "arm": "can ary""#)).0, "line 1: tenant.arm");
    assert_eq!(
        invalid(&t(r#", "issuers": ["ok", ""]"#)).0,
        "line 1: tenant.issuers[1]"
    );
    let (key, value, _) = invalid(&t(r#", "limits": {"rate": -1}"#));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("line 1: tenant.limits.rate", "-1")
    );
    let bad_id = "{\"tenant\": {\"id\": \"Acme\", \"cell\": \"c\"}}";
    assert_eq!(invalid(bad_id).0, "line 1: tenant.id");
    let bad_cell = "{\"tenant\": {\"id\": \"acme\", \"cell\": \"none\"}}";
    assert_eq!(invalid(bad_cell).0, "line 1: tenant.cell");
    // Cells: Cell::from_file's keys, under the line.
    let c = |body: &str| format!("{{\"cell\": {{\"id\": \"c\", {body}}}}}");
    let (key, value, _) = invalid(&c(r#""state": "UP""#));
    assert_eq!((key.as_str(), value.as_str()), ("line 1: cell.state", "UP"));
    assert_eq!(
        invalid(&c(r#""state": "ACTIVE""#)).0,
        "line 1: cell.targets"
    );
    let heavy = r#""groups": [{"name": "a", "weight": 10001, "targets": ["http://10.0.0.1:80"]}]"#;
    assert_eq!(invalid(&c(heavy)).0, "line 1: cell.groups[0].weight");
    assert_eq!(
        invalid(r#"{"cell": {"id": "none", "state": "DOWN"}}"#).0,
        "line 1: cell.id"
    );
}

#[test]
fn malformed_lines_are_parse_errors_naming_line_and_column() {
    let ok = "{\"tenant\": {\"id\": \"a\", \"cell\": \"c\"}}\n";
    let m = parse_error(&format!(
        "{ok}# a\n{{\"tenant\": {{\"id\": \"b\", \"cell\": \"c\", \"colour\": \"red\"}}}}\n"
    ));
    assert!(
        m.starts_with("line 3, column ") && m.contains("unknown field `colour`"),
        "{m}"
    );
    let m = parse_error(&format!("{ok}{{\"tenant\": {{\"id\": \"b\"}}}}"));
    assert!(
        m.starts_with("line 2, column") && m.contains("missing field `cell`"),
        "{m}"
    );
    let m = parse_error(&format!(
        "{ok}{{\"tenants\": {{\"id\": \"b\", \"cell\": \"c\"}}}}"
    ));
    assert!(
        m.starts_with("line 2,") && m.contains("unknown variant `tenants`"),
        "{m}"
    );
    let m = parse_error("{\"tenant\": {\"id\": \"b\", \"cell\": \"c\"}, \"cell\": {}}");
    assert!(
        m.starts_with("line 1, column 35: expected value; "),
        "two records in one object: {m}"
    );
    let m = parse_error("{\"tenant\": {\"id\": \"b\", \"cell\": \"c\", \"version\": -1}}");
    assert!(m.starts_with("line 1, column") && m.contains("u64"), "{m}");
    // A TOML file given a .jsonl name, a truncated line, two records on a line.
    let m = parse_error("[[tenants]]\nid = \"a\"\n");
    assert!(
        m.starts_with("line 1, column 1: expected value; each line is one {\"tenant\""),
        "{m}"
    );
    assert!(parse_error(&format!("{ok}{{\"tenant\": {{\"id\"")).starts_with("line 2, "));
    assert!(parse_error(&format!("{}{ok}", ok.trim_end())).starts_with("line 1, "));
    // The message carries serde's text once, without its own "at line 1".
    let m = parse_error("{\"cell\": 1}");
    assert!(!m.contains("at line"), "{m}");
}

#[test]
fn duplicates_name_both_lines() {
    let text = "{\"tenant\": {\"id\": \"acme\", \"cell\": \"c\"}}\n\
                {\"tenant\": {\"id\": \"globex\", \"cell\": \"c\"}}\n\
                \n\
                {\"tenant\": {\"id\": \"acme\", \"cell\": \"d\"}}\n";
    assert_eq!(
        invalid(text),
        (
            "line 4: tenant.id".to_owned(),
            "acme".to_owned(),
            "duplicate tenant id (first on line 1)".to_owned()
        )
    );
    let cells = "{\"cell\": {\"id\": \"c\", \"state\": \"DOWN\"}}\n\
                 {\"cell\": {\"id\": \"c\", \"state\": \"DOWN\"}}\n";
    assert_eq!(
        invalid(cells),
        (
            "line 2: cell.id".to_owned(),
            "c".to_owned(),
            "duplicate cell id (first on line 1)".to_owned()
        )
    );
}

#[test]
fn written_lines_read_back_as_the_same_records() {
    let data = parse_registry(GOOD, "reg.toml").unwrap();
    let mut out = Vec::new();
    for c in [&GOOD_CELL_1, &GOOD_CELL_2] {
        let cell: crate::placement::file::shape::RegistryCell = serde_json::from_str(c).unwrap();
        write_line(&mut out, &Line::Cell(cell)).unwrap();
    }
    for t in data.tenants() {
        write_line(&mut out, &Line::Tenant(FileTenant::from_record(&t))).unwrap();
    }
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(!text.contains("null") && !text.contains("[]"), "{text}");
    let back = parse_jsonl(&text, "out.jsonl").unwrap();
    assert_eq!(sorted(&back), sorted(&data));
}

const GOOD_CELL_1: &str =
    r#"{"id": "cell-1", "targets": ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]}"#;
const GOOD_CELL_2: &str =
    r#"{"id": "cell-2", "state": "DRAINING", "targets": ["https://cell-2.internal.example"]}"#;

#[test]
fn the_format_follows_the_extension() {
    use std::path::Path;
    for (p, f) in [
        ("r.jsonl", Format::JsonLines),
        ("/x/r.NDJSON", Format::JsonLines),
        ("r.toml", Format::Toml),
        ("registry", Format::Toml),
        ("r.json", Format::Toml),
    ] {
        assert_eq!(Format::of(Path::new(p)), f, "{p}");
    }
}

#[tokio::test]
async fn the_file_source_loads_jsonl_and_notices_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.jsonl");
    std::fs::write(&path, GOOD_JSONL).unwrap();
    let src = FileSource::new(&path);
    assert!(src.changed().await.unwrap());
    let data = src.load().await.unwrap();
    assert_eq!((data.tenant_count(), data.cells().len()), (2, 2));
    assert!(!src.changed().await.unwrap());

    let acme = src.fetch_tenant("acme").await.unwrap().unwrap();
    assert_eq!((acme.cell.as_str(), acme.version), ("cell-1", 7));
    assert_eq!(src.fetch_tenant("initech").await.unwrap(), None);

    // Replaced by rename, as an exporter does: noticed, and a broken line names itself.
    let tmp = dir.path().join("next.tmp");
    std::fs::write(
        &tmp,
        format!("{GOOD_JSONL}{{\"tenant\": {{\"id\": \"x\"}}}}\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(src.changed().await.unwrap());
    let e = src.load().await.unwrap_err().to_string();
    assert!(e.contains("registry.jsonl: line 7, column"), "{e}");
    assert!(!src.changed().await.unwrap(), "a failed load is remembered");
    // A lookup reads the file as it is now: broken, so an error, not a half-read answer.
    assert!(src.fetch_tenant("acme").await.is_err());

    std::fs::write(
        &path,
        "{\"tenant\": {\"id\": \"acme\", \"cell\": \"cell-2\"}}\n",
    )
    .unwrap();
    assert!(src.changed().await.unwrap());
    assert_eq!(src.load().await.unwrap().tenant_count(), 1);
    // A duplicate of the wanted tenant is an error for a lookup too.
    std::fs::write(
        &path,
        "{\"tenant\": {\"id\": \"acme\", \"cell\": \"c\"}}\n{\"tenant\": {\"id\": \"acme\", \"cell\": \"d\"}}\n",
    )
    .unwrap();
    let e = src.fetch_tenant("acme").await.unwrap_err().to_string();
    assert!(
        e.contains("line 2: tenant.id") && e.contains("first on line 1"),
        "{e}"
    );
}

#[test]
fn a_line_past_the_limit_is_refused_before_it_is_buffered() {
    use crate::placement::file::jsonl::MAX_LINE_BYTES;
    let long = format!(
        "{{\"tenant\": {{\"id\": \"a\", \"cell\": \"c\", \"tier\": \"{}\"}}}}",
        "x".repeat(MAX_LINE_BYTES)
    );
    let m = parse_error(&format!("\n{long}\n"));
    assert!(m.starts_with("line 2: longer than"), "{m}");
}
