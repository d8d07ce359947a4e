//! Shared harness for the API key and entitlement tests (`tests/apikey_proxy.rs`,
//! `tests/apikey_flood.rs`, `tests/entitlements.rs`): the proxy's config with chosen tenant
//! sources, registry text holding only the hashes of keys minted with
//! [`cellgate::apikey::generate`], an in-process proxy in front of three echo cells, requests
//! with a key, and checks for what a cell saw (a key's id, never the key) and for the proxy's
//! own refusals and their counters.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cellgate::apikey::{ID_LEN, NewKey, PREFIX, generate};
use cellgate::demo::spawn_cells;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::limits::sum;
use super::{Harness, Reply, base_config, cell_list};

pub const KEY_REJECTIONS: &str = "cellgate_api_key_rejections_total";
pub const LOOKUPS: &str = "cellgate_registry_lookups_total";

/// One tenant record: id, cell, entitlements.
pub type Tenant<'a> = (&'a str, &'a str, &'a [&'a str]);

/// The base config with `tenant.sources = sources` (a TOML array), `registry` lines added to
/// `[registry]` and `extra` appended.
pub fn config(sources: &str, registry: &str, extra: &str) -> String {
    let from = "sources = [\"jwt\", \"subdomain\"]";
    let poll = "poll_interval = \"20ms\"";
    let base = base_config(extra);
    assert!(
        base.contains(from) && base.contains(poll),
        "the base config changed"
    );
    base.replace(from, &format!("sources = {sources}"))
        .replace(poll, &format!("{poll}\n{registry}"))
}

/// Registry text: the cells, the tenants (with their entitlements), then `keys`.
pub fn registry_text(
    cells: &[(String, Vec<String>)],
    tenants: &[Tenant<'_>],
    keys: &str,
) -> String {
    let quoted = |v: &[&str]| {
        let q: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
        format!("[{}]", q.join(", "))
    };
    let mut s = String::new();
    for (id, targets) in cells {
        let t: Vec<&str> = targets.iter().map(String::as_str).collect();
        s.push_str(&format!(
            "[[cells]]\nid = \"{id}\"\ntargets = {}\n\n",
            quoted(&t)
        ));
    }
    for (i, (id, cell, ents)) in tenants.iter().enumerate() {
        s.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\ncell = \"{cell}\"\nstatus = \"ACTIVE\"\nversion = {}\n",
            i + 1
        ));
        if !ents.is_empty() {
            s.push_str(&format!("entitlements = {}\n", quoted(ents)));
        }
        s.push('\n');
    }
    s.push_str(keys);
    s
}

/// An `[[apikeys]]` entry for `k`: its id and hash (never the key), `fields` added.
pub fn key_entry(k: &NewKey, tenant: &str, fields: &str) -> String {
    format!(
        "[[apikeys]]\nid = \"{}\"\ntenant = \"{tenant}\"\nhash = \"{}\"\n{fields}\n\n",
        k.id, k.hash
    )
}

pub fn new_key() -> NewKey {
    generate().unwrap()
}

/// The secret part of a key's text.
pub fn secret(k: &NewKey) -> &str {
    &k.key[PREFIX.len() + ID_LEN + 1..]
}

/// The proxy (3 echo cells, one target each) with `sources`, `registry` settings, `extra`
/// config, `tenants` and the `keys` entries.
pub async fn start(
    sources: &str,
    registry: &str,
    extra: &str,
    tenants: &[Tenant<'_>],
    keys: &str,
) -> Harness {
    let cells = spawn_cells(3, 1).await.unwrap();
    let text = registry_text(&cell_list(&cells), tenants, keys);
    Harness::start_raw(&config(sources, registry, extra), &text, cells).await
}

/// `method path`, with `host` (else the proxy's address) and `headers`.
pub async fn call(
    h: &Harness,
    method: Method,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", h.addr));
    if let Some(host) = host {
        b = b.header("host", host);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    h.send(b.body(Full::default()).unwrap()).await
}

/// `GET path` presenting `key` in `x-api-key`.
pub async fn with_key(h: &Harness, path: &str, key: &str) -> Reply {
    call(h, Method::GET, None, path, &[("x-api-key", key)]).await
}

/// The echo cell `cell` answered for `tenant`; returns the headers it received.
pub fn from_cell(
    r: &Reply,
    cell: &str,
    tenant: &str,
    what: &str,
) -> serde_json::Map<String, Value> {
    assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.body);
    let v = r.json();
    assert_eq!(v["cell"], cell, "{what}: {}", r.body);
    assert_eq!(v["tenant"], tenant, "{what}: {}", r.body);
    v["headers"].as_object().unwrap().clone()
}

/// The cell saw `k`'s id in `x-api-key-id` and nothing of the key itself.
pub fn saw_only_the_id(headers: &serde_json::Map<String, Value>, k: &NewKey, what: &str) {
    assert_eq!(headers.get("x-api-key-id"), Some(&json!(k.id)), "{what}");
    assert!(!headers.contains_key("x-api-key"), "{what}: {headers:?}");
    if let Some(a) = headers.get("authorization") {
        let a = a.as_str().unwrap();
        assert!(!a.to_ascii_lowercase().starts_with("apikey"), "{what}: {a}");
    }
    let all = serde_json::to_string(headers).unwrap();
    assert!(
        !all.contains(secret(k)),
        "{what}: the secret reached the cell"
    );
}

/// The proxy itself answered `status` with `code` and a request id (an echo cell's JSON has
/// `target`); returns the body.
pub fn refused(r: &Reply, status: StatusCode, code: &str, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let v = r.json();
    assert_eq!(v["error"], code, "{what}: {}", r.body);
    assert!(
        v.get("target").is_none(),
        "{what}: reached a cell: {}",
        r.body
    );
    let id = v["request_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{what}: no request id: {}", r.body);
    v
}

pub fn key_rejections(text: &str, reason: &str) -> f64 {
    sum(text, KEY_REJECTIONS, &[("reason", reason)])
}
