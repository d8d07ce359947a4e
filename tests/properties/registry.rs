//! Registry files: the same records written as TOML and as JSON Lines load the same, or are
//! refused for the same field of the same record. Records are drawn from pools of good and bad
//! values per field (ids that repeat, cells named `none`, statuses in lower case, rates out of
//! range, empty issuers), cells first in both files so the first error is the same one. And
//! JSON-ish junk never panics the JSON Lines reader, whose errors name a line of the text.

use cellgate::placement::file::jsonl::parse_jsonl;
use cellgate::placement::file::parse_registry;
use cellgate::placement::{Cell, RegistryData, RegistryError, TenantRecord};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

#[derive(Debug, Clone)]
struct Tenant {
    id: String,
    cell: &'static str,
    status: Option<&'static str>,
    tier: Option<&'static str>,
    version: Option<u64>,
    issuers: Vec<&'static str>,
    limits: Option<(Option<f64>, Option<u32>, Option<u32>)>,
    arm: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct CellSpec {
    id: String,
    state: Option<&'static str>,
    targets: Vec<&'static str>,
    wave: Option<u32>,
}

/// Mostly a good value, now and then a bad one: most registries load, and every check is hit.
fn pick<T: Clone + std::fmt::Debug + 'static>(
    good: &'static [T],
    bad: &'static [T],
) -> impl Strategy<Value = T> + Clone {
    prop_oneof![16 => select(good), 1 => select(bad)]
}

fn tenant() -> impl Strategy<Value = Tenant> {
    let limits = (
        option::of(pick(&[0.5, 50.0, 1e6], &[-1.0, 1e-12, 2e6])),
        option::of(pick(&[1u32, 20], &[0, 2_000_000])),
        option::of(pick(&[1u32, 100], &[0])),
    );
    (
        prop_oneof![24 => (0u32..40).prop_map(|i| format!("t{i}")), 1 => select(&["Acme", "-a", ""][..]).prop_map(str::to_owned)],
        pick(&["cell-1", "cell-2", "c.3"], &["none", "cell 1"]),
        option::of(pick(
            &["ACTIVE", "SUSPENDED", "MIGRATING", "OFFBOARDED"],
            &["active", "PAUSED"],
        )),
        option::of(pick(&["standard", "gold"], &["gold plated", ""])),
        option::of(0u64..10),
        vec(pick(&["https://idp.example", "iss-2"], &[""]), 0..3),
        option::of(limits),
        option::of(pick(&["canary", "stable"], &["can ary"])),
    )
        .prop_map(
            |(id, cell, status, tier, version, issuers, limits, arm)| Tenant {
                id,
                cell,
                status,
                tier,
                version,
                issuers,
                limits,
                arm,
            },
        )
}

fn cell() -> impl Strategy<Value = CellSpec> {
    (
        prop_oneof![24 => (1u32..12).prop_map(|i| format!("cell-{i}")), 1 => select(&["none", "c 1"][..]).prop_map(str::to_owned)],
        option::of(pick(&["ACTIVE", "DRAINING", "DOWN"], &["UP"])),
        vec(pick(&["http://10.0.0.1:80", "https://cell.example"], &["ftp://x"]), 1..3),
        option::of(0u32..4),
    )
        .prop_map(|(id, state, targets, wave)| CellSpec {
            id,
            state,
            targets,
            wave,
        })
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

/// `(key, value)` pairs of a tenant, each value valid as both TOML and JSON.
fn tenant_fields(t: &Tenant) -> Vec<(&'static str, String)> {
    let mut f = vec![("id", q(&t.id)), ("cell", q(t.cell))];
    if let Some(s) = t.status {
        f.push(("status", q(s)));
    }
    if let Some(s) = t.tier {
        f.push(("tier", q(s)));
    }
    if let Some(v) = t.version {
        f.push(("version", v.to_string()));
    }
    if !t.issuers.is_empty() {
        f.push(("issuers", list(&t.issuers)));
    }
    if let Some(a) = t.arm {
        f.push(("arm", q(a)));
    }
    f
}

fn limit_fields(l: (Option<f64>, Option<u32>, Option<u32>)) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    if let Some(r) = l.0 {
        f.push(("rate", format!("{r:?}")));
    }
    if let Some(b) = l.1 {
        f.push(("burst", b.to_string()));
    }
    if let Some(c) = l.2 {
        f.push(("concurrency", c.to_string()));
    }
    f
}

fn cell_fields(c: &CellSpec) -> Vec<(&'static str, String)> {
    let mut f = vec![("id", q(&c.id)), ("targets", list(&c.targets))];
    if let Some(s) = c.state {
        f.push(("state", q(s)));
    }
    if let Some(w) = c.wave {
        f.push(("wave", w.to_string()));
    }
    f
}

fn toml_table(fields: &[(&str, String)], sep: &str) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

fn json_object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {v}", q(k)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn render(cells: &[CellSpec], tenants: &[Tenant]) -> (String, String) {
    let (mut toml, mut jsonl) = (String::new(), String::new());
    for c in cells {
        let f = cell_fields(c);
        toml.push_str(&format!("[[cells]]\n{}\n\n", toml_table(&f, "\n")));
        jsonl.push_str(&format!("{{\"cell\": {}}}\n", json_object(&f)));
    }
    for t in tenants {
        let mut f = tenant_fields(t);
        let mut json = f.clone();
        if let Some(l) = t.limits {
            let lf = limit_fields(l);
            f.push(("limits", format!("{{ {} }}", toml_table(&lf, ", "))));
            json.push(("limits", json_object(&lf)));
        }
        toml.push_str(&format!("[[tenants]]\n{}\n\n", toml_table(&f, "\n")));
        jsonl.push_str(&format!("{{\"tenant\": {}}}\n", json_object(&json)));
    }
    (toml, jsonl)
}

fn tenants(d: &RegistryData) -> Vec<TenantRecord> {
    let mut t: Vec<TenantRecord> = d.tenants().collect();
    t.sort_by(|a, b| a.id.cmp(&b.id));
    t
}

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

/// A TOML key (`tenants[3].tier`, `cells[0].state`) as the JSON Lines reader names it, given
/// the number of cell lines before the tenants.
fn as_jsonl_key(key: &str, cells: usize) -> String {
    let (table, rest) = key.split_once('[').unwrap();
    let (index, field) = rest.split_once("].").unwrap();
    let index: usize = index.parse().unwrap();
    match table {
        "tenants" => format!("line {}: tenant.{field}", cells + index + 1),
        _ => format!("line {}: cell.{field}", index + 1),
    }
}

proptest! {
    #![proptest_config(crate::cases(400))]

    #[test]
    fn toml_and_jsonl_load_the_same_or_refuse_the_same_field(
        cells in vec(cell(), 0..3),
        ts in vec(tenant(), 0..6),
    ) {
        let (toml, jsonl) = render(&cells, &ts);
        match (parse_registry(&toml, "r"), parse_jsonl(&jsonl, "r")) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(tenants(&a), tenants(&b));
                let views = |d: &RegistryData| d.cells().iter().map(cell_view).collect::<Vec<_>>();
                prop_assert_eq!(views(&a), views(&b));
            }
            (
                Err(RegistryError::Invalid { key: ka, value: va, .. }),
                Err(RegistryError::Invalid { key: kb, value: vb, .. }),
            ) => {
                prop_assert_eq!(as_jsonl_key(&ka, cells.len()), kb, "\n{}\n{}", toml, jsonl);
                prop_assert_eq!(va, vb);
            }
            (a, b) => prop_assert!(false, "TOML: {a:?}\nJSONL: {b:?}\n{toml}\n{jsonl}"),
        }
    }
}

/// Lines that are sometimes records: fragments of real ones with junk between them.
fn jsonl_ish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        select(
            &[
                "{\"tenant\": {\"id\": \"acme\", \"cell\": \"c\"}}",
                "{\"cell\": {\"id\": \"c\", \"state\": \"DOWN\"}}",
                "{\"tenant\": ",
                "{\"cell\": {",
                "\"limits\": {\"rate\": 1e400}",
                "\"id\": \"\\u0000\"",
                "}}",
                "# comment",
                "\u{feff}",
                "\r",
                "[]",
                "null"
            ][..]
        )
        .prop_map(str::to_owned),
        Just("\n".to_owned()),
        ".{0,8}",
    ];
    vec(piece, 0..16).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(crate::cases(300))]

    #[test]
    fn jsonl_junk_never_panics_and_errors_name_a_line_of_it(text in jsonl_ish()) {
        let lines = text.split('\n').count();
        match parse_jsonl(&text, "r") {
            Ok(_) => {}
            Err(RegistryError::Parse { message, .. }) => {
                let n: usize = message
                    .strip_prefix("line ")
                    .and_then(|m| m.split([',', ':']).next())
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(0);
                prop_assert!((1..=lines).contains(&n), "{message}:\n{text:?}");
            }
            Err(RegistryError::Invalid { key, .. }) => {
                prop_assert!(key.starts_with("line "), "{key}:\n{text:?}");
            }
            Err(e) => prop_assert!(false, "{e}:\n{text:?}"),
        }
    }
}
