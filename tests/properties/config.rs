//! Config text (`Config::from_toml`, then `server::preflight`): whatever the operator writes, parsing never panics, an
//! accepted config validates the same way twice, and a refused one names the key that was
//! wrong. Values come from a catalogue of good and bad values per key; every good value is
//! good on its own, whatever else is set, so the first error must name a key given a bad one.

use std::collections::BTreeMap;
use std::path::Path;

use cellgate::config::{Config, ConfigError, Overrides};
use cellgate::tenant::{TenantId, tenant_from_host};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const PATH: &str = "/nonexistent/cellgate-properties/cellgate.toml";

/// One key: its table, name, and TOML values that are valid and invalid on their own.
struct Field(
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const DUR_BAD: &[&str] = &[
    r#""soon""#,
    r#""""#,
    r#""30""#,
    r#""99999999999999999999999s""#,
];

#[rustfmt::skip]
const FIELDS: &[Field] = &[
    Field("server", "workers", &["1", "4"], &["257", "100000"]),
    Field("server", "shutdown_grace", &[r#""30s""#, r#""0s""#, r#""1m 30s""#], DUR_BAD),
    Field("server", "headers_with_underscores", &[r#""reject""#, r#""drop""#, r#""allow""#], &[r#""maybe""#, r#""Reject""#]),
    Field("admin", "address", &[r#""127.0.0.1:9090""#, r#""[::1]:0""#], &[r#""localhost:9090""#, r#""""#, r#""127.0.0.1""#]),
    Field("tenant", "sources", &[r#"["subdomain"]"#], &[r#"["cookie"]"#, r#"["subdomain", "subdomain"]"#, "[]", r#"["jwt"]"#, r#"["header"]"#]),
    Field("tenant", "base_domains", &[r#"["example.com"]"#, r#"[".Example.COM", "eu.example.com"]"#], &[r#"["bad domain"]"#, r#"["a..b"]"#, r#"[""]"#, r#"["."]"#]),
    Field("tenant", "migrating_refuses", &[r#""writes""#, r#""all""#], &[r#""none""#]),
    Field("registry", "poll_interval", &[r#""500ms""#, r#""1s""#], &[r#""1ms""#, r#""2h""#, r#""x""#]),
    Field("registry", "full_refresh", &[r#""60s""#], &[r#""500ms""#, r#""2days""#]),
    Field("registry", "negative_ttl", &[r#""5s""#], &[r#""1ms""#, r#""2h""#]),
    Field("registry", "negative_capacity", &["1", "100"], &["0", "10000001"]),
    Field("registry", "lookup_rate", &["20.0", "0.5"], &["0.0", "nan", "inf", "-1.0", "1e9"]),
    Field("registry", "lookup_burst", &["40.0", "1.0"], &["0.5", "nan", "1e6"]),
    Field("registry", "table", &[], &[r#""placements""#]),
    Field("registry", "scan_segments", &[], &["4"]),
    Field("access_log", "sample", &["0.5", "1.0", "0.0"], &["1.5", "nan", "-0.5", "inf"]),
    Field("access_log", "buffer", &["1", "16384"], &["0"]),
    Field("log", "level", &[r#""info""#, r#""cellgate=debug""#, r#""warn,cellgate=trace""#], &[]),
    Field("log", "format", &[r#""json""#, r#""text""#], &[r#""xml""#, r#""JSON""#]),
    Field("headers", "strip", &[r#"["x-debug"]"#, "[]"], &[r#"["bad header"]"#, r#"["x:y"]"#]),
    Field("limits", "max_tenants", &["64", "1000"], &["63", "0", "100000001"]),
    Field("limits", "sweep_interval", &[r#""10s""#], &[r#""1ms""#, r#""2h""#]),
    Field("limits", "default_tier", &[], &[r#""gold""#]),
    Field("upstream", "connect_timeout", &[r#""2s""#, r#""250ms""#], &[r#""0s""#, r#""x""#]),
    Field("upstream", "read_timeout", &[r#""30s""#, r#""10s""#], &[r#""0s""#]),
    Field("upstream", "total_timeout", &[r#""120s""#, r#""300s""#], &[r#""0s""#, r#""1ms""#]),
    Field("upstream", "pool_idle_timeout", &[r#""30s""#], &[r#""0s""#, r#""60s""#]),
    Field("upstream.retry", "max_attempts", &["1", "3", "5"], &["0", "6"]),
    Field("upstream.retry", "budget_ratio", &["0.2", "1.0"], &["-0.1", "1.5", "nan"]),
    Field("upstream.outlier", "consecutive_failures", &["0", "5"], &["1001"]),
    Field("upstream.outlier", "max_ejection_percent", &["0", "100"], &["101"]),
    Field("upstream.outlier", "base_ejection", &[r#""10s""#], &[r#""0s""#]),
    Field("upstream.outlier", "max_ejection", &[r#""300s""#], &[r#""1ms""#]),
    Field("upstream.health_check", "path", &[r#""/healthz""#], &[r#""healthz""#]),
    Field("upstream.health_check", "statuses", &[r#""200-299,302""#], &[r#""500-200""#, r#""abc""#, r#""99""#]),
    Field("upstream.health_check", "healthy_threshold", &["2"], &["0", "11"]),
    Field("upstream.dns", "min_ttl", &[r#""5s""#], &[r#""0s""#]),
    Field("upstream.dns", "max_ttl", &[r#""60s""#], &[r#""1ms""#]),
    Field("upstream.dns", "nameservers", &[r#"["10.0.0.2"]"#, r#"["127.0.0.1:5353"]"#], &[r#"["nope"]"#]),
    Field("canary", "hash_by", &[r#""tenant""#, r#""sub""#], &[r#""ip""#]),
    Field("auth", "max_token_bytes", &["8192"], &["0", "100000"]),
    Field("auth", "cache_max_entries", &["0"], &["10000001"]),
    Field("auth", "cache_max_ttl", &[r#""5m""#], &[r#""0s""#, r#""2h""#]),
];

/// Each top-level key of the file; every error key starts with one of them.
const TOP: &[&str] = &[
    "server",
    "listeners",
    "admin",
    "tenant",
    "auth",
    "registry",
    "cells",
    "canary",
    "limits",
    "upstream",
    "headers",
    "access_log",
    "log",
];

/// A pick: (field index, bad?, value index), resolved against `FIELDS`.
fn picks() -> impl Strategy<Value = Vec<(usize, bool, usize)>> {
    vec(
        (0..FIELDS.len(), prop::bool::weighted(0.15), any::<usize>()),
        0..10,
    )
}

/// Renders picks over the smallest valid config; returns the text and the keys given bad
/// values (a later pick of the same key replaces an earlier one).
fn render(picks: &[(usize, bool, usize)]) -> (String, Vec<String>) {
    let mut tables: BTreeMap<&str, BTreeMap<&str, (&str, bool)>> = BTreeMap::new();
    tables
        .entry("tenant")
        .or_default()
        .insert("sources", (r#"["subdomain"]"#, false));
    tables
        .entry("tenant")
        .or_default()
        .insert("base_domains", (r#"["example.com"]"#, false));
    tables
        .entry("registry")
        .or_default()
        .insert("source", (r#""file""#, false));
    for &(i, bad, v) in picks {
        let Field(table, key, good, wrong) = &FIELDS[i];
        let (pool, bad) = match (bad, good.is_empty(), wrong.is_empty()) {
            (true, _, false) | (false, true, false) => (wrong, true),
            _ => (good, false),
        };
        tables
            .entry(table)
            .or_default()
            .insert(key, (pool[v % pool.len()], bad));
    }
    let mut text = String::from("[[listeners]]\naddress = \"127.0.0.1:8080\"\n");
    let mut bad_keys = Vec::new();
    for (table, keys) in &tables {
        text.push_str(&format!("\n[{table}]\n"));
        for (key, (value, bad)) in keys {
            text.push_str(&format!("{key} = {value}\n"));
            if *bad {
                bad_keys.push(format!("{table}.{key}"));
            }
        }
    }
    (text, bad_keys)
}

/// Checked as `cellgate validate` checks it: loaded, then the preflight (config cells and
/// listener certificates).
fn parse(text: &str) -> Result<Config, ConfigError> {
    let config = Config::from_toml(text, Path::new(PATH), &Overrides::default())?;
    cellgate::server::preflight(&config)?;
    Ok(config)
}

/// Text that is sometimes TOML: fragments of real tables and keys with junk between them.
fn toml_ish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        select(
            &[
                "[server]",
                "[[listeners]]",
                "[tenant]",
                "[registry]",
                "[limits.tiers.gold]",
                "[[cells]]",
                "[upstream.dns]",
                "[auth]",
                "[[auth.issuers]]"
            ][..]
        )
        .prop_map(str::to_owned),
        select(
            &[
                "workers",
                "address",
                "sources",
                "base_domains",
                "source",
                "rate",
                "id",
                "targets",
                "issuer",
                "algorithms",
                "public_key_pem",
                "nameservers"
            ][..]
        )
        .prop_map(|k| format!("{k} = ")),
        select(
            &[
                "1",
                "-1",
                "1e400",
                "\"x\"",
                "\"127.0.0.1:1\"",
                "[\"a\"]",
                "{a=1}",
                "nan",
                "true",
                "\"-----BEGIN PUBLIC KEY-----\\nMII=\\n-----END PUBLIC KEY-----\""
            ][..]
        )
        .prop_map(str::to_owned),
        Just("\n".to_owned()),
        ".{0,8}",
    ];
    vec(piece, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(crate::cases(300))]

    #[test]
    fn a_refused_config_names_a_key_that_was_given_a_bad_value(picks in picks()) {
        let (text, bad_keys) = render(&picks);
        match parse(&text) {
            Ok(cfg) => {
                prop_assert!(bad_keys.is_empty(), "accepted with {bad_keys:?}:\n{text}");
                let again = parse(&text).unwrap();
                prop_assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
            }
            Err(ConfigError::Invalid { file, field }) => {
                prop_assert_eq!(file, Path::new(PATH));
                prop_assert!(!field.reason.is_empty());
                prop_assert!(
                    bad_keys.iter().any(|k| field.key.starts_with(k.as_str())),
                    "{} = {:?} ({}) names no bad key of {bad_keys:?}:\n{text}",
                    field.key, field.value, field.reason
                );
            }
            Err(e) => prop_assert!(false, "{e}:\n{text}"),
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_errors_name_a_file_and_key(text in prop_oneof![any::<String>(), toml_ish()]) {
        let first = parse(&text);
        match &first {
            Ok(_) => {}
            Err(ConfigError::Parse { message, .. }) => prop_assert!(!message.is_empty()),
            Err(ConfigError::Invalid { field, .. }) => {
                prop_assert!(!field.reason.is_empty());
                let top = field.key.split(['.', '[']).next().unwrap_or_default();
                prop_assert!(TOP.contains(&top), "{} is not under a known table", field.key);
            }
            Err(e @ ConfigError::Read { .. }) => prop_assert!(false, "{e}"),
        }
        let second = parse(&text);
        prop_assert_eq!(format!("{first:?}"), format!("{second:?}"));
    }

    #[test]
    fn base_domains_are_normalised_so_the_most_specific_one_wins(
        domains in proptest::sample::subsequence(vec!["example.com", "eu.example.com", "a.eu.example.com", "app.test"], 1..=4).prop_shuffle(),
        upper in vec(any::<bool>(), 4),
        dots in vec(any::<bool>(), 4),
        label in "[a-z0-9][a-z0-9-]{0,20}",
    ) {
        let written: Vec<String> = domains.iter().enumerate().map(|(i, d)| {
            let d = if upper[i] { d.to_ascii_uppercase() } else { (*d).to_owned() };
            format!("\"{}{d}\"", if dots[i] { "." } else { "" })
        }).collect();
        let text = format!(
            "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[tenant]\nsources = [\"subdomain\"]\nbase_domains = [{}]\n[registry]\nsource = \"file\"\n",
            written.join(", ")
        );
        let cfg = parse(&text).unwrap();
        let kept = &cfg.tenant.base_domains;
        prop_assert!(kept.windows(2).all(|w| w[0].len() >= w[1].len()), "{kept:?}");
        let mut sorted: Vec<&str> = kept.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let mut want = domains.clone();
        want.sort_unstable();
        prop_assert_eq!(sorted, want);
        for d in &domains {
            let host = format!("{label}.{d}");
            let got = tenant_from_host(host.as_bytes(), kept);
            let want = if domains.contains(&host.as_str()) { None } else { Some(TenantId::parse(&label).unwrap()) };
            prop_assert_eq!(got, Ok(want), "{}", host);
        }
    }
}

#[test]
fn every_catalogue_value_behaves_alone_as_listed() {
    // The catalogue is the oracle of the first property: check each entry on its own.
    for (i, Field(table, key, good, bad)) in FIELDS.iter().enumerate() {
        for (j, _) in good.iter().enumerate() {
            let (text, bad_keys) = render(&[(i, false, j)]);
            assert!(bad_keys.is_empty());
            assert!(
                parse(&text).is_ok(),
                "{table}.{key} good value {j}:\n{text}"
            );
        }
        for (j, _) in bad.iter().enumerate() {
            let (text, _) = render(&[(i, true, j)]);
            match parse(&text) {
                Err(ConfigError::Invalid { field, .. }) => {
                    assert!(
                        field.key.starts_with(&format!("{table}.{key}")),
                        "{field:?}"
                    );
                }
                other => panic!("{table}.{key} bad value {j}: {other:?}"),
            }
        }
    }
}
