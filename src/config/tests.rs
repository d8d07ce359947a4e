#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use std::time::Duration;

use crate::tenant::TenantSource;

const CONFIG_PATH: &str = "/etc/cellgate/cellgate.toml";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

/// The smallest config that validates: one listener, one tenant source, a registry.
const MINIMAL: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"

[tenant]
sources = ["subdomain"]
base_domains = ["example.com"]

[registry]
source = "file"
"#;

/// The config, checked as `cellgate validate` checks it: loaded, then the preflight (the
/// config's cells and certificates).
fn parse_with(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    let config = Config::from_toml(text, Path::new(CONFIG_PATH), overrides)?;
    crate::server::preflight(&config)?;
    Ok(config)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, &Overrides::default())
}

/// The field named by an `Invalid` error; any other outcome fails the test.
fn invalid(text: &str) -> FieldError {
    match parse(text) {
        Err(ConfigError::Invalid { file, field }) => {
            assert_eq!(file, Path::new(CONFIG_PATH));
            field
        }
        Err(other) => panic!("expected ConfigError::Invalid, got {other}"),
        Ok(_) => panic!("expected ConfigError::Invalid, config was accepted"),
    }
}

fn kv(f: &FieldError) -> (&str, &str) {
    (f.key.as_str(), f.value.as_str())
}

/// `MINIMAL` with extra TOML appended (later tables may not repeat MINIMAL's).
fn minimal_plus(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}")
}

#[test]
fn minimal_config_parses_with_defaults() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.source_path, Path::new(CONFIG_PATH));
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.listeners[0].address, "127.0.0.1:8080".parse().unwrap());
    assert!(cfg.listeners[0].tls.is_none());
    assert_eq!(cfg.admin.address, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(cfg.tenant.sources, vec![TenantSource::Subdomain]);
    assert_eq!(cfg.tenant.base_domains, vec!["example.com".to_owned()]);
    assert!(!cfg.auth.required);
    assert!(cfg.auth.issuers.is_empty());
    assert_eq!(cfg.auth.max_token_bytes, 8192);
    assert_eq!(cfg.auth.cache_max_entries, 100_000);
    assert_eq!(cfg.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(cfg.upstream.pool_idle_timeout, Duration::from_secs(50));
    assert!(cfg.upstream.pool_idle_timeout <= MAX_POOL_IDLE);
    assert!(cfg.server.workers >= 1);
    assert_eq!(cfg.log.format, LogFormat::Json);
    // The registry path defaults to registry.toml next to the config file.
    let RegistryConfig::File {
        path,
        poll_interval,
        full_refresh,
    } = &cfg.registry
    else {
        panic!("expected the file registry")
    };
    assert_eq!(path, Path::new("/etc/cellgate/registry.toml"));
    assert_eq!(*poll_interval, Duration::from_millis(500));
    assert_eq!(*full_refresh, Duration::from_secs(60));
}

#[test]
fn migrating_policy_and_lookup_settings_are_checked() {
    let cfg =
        parse(&MINIMAL.replace("[tenant]\n", "[tenant]\nmigrating_refuses = \"all\"\n")).unwrap();
    assert!(cfg.tenant.route_policy.migrating_refuses_all);
    assert!(
        !parse(MINIMAL)
            .unwrap()
            .tenant
            .route_policy
            .migrating_refuses_all
    );
    let bad = MINIMAL.replace("[tenant]\n", "[tenant]\nmigrating_refuses = \"some\"\n");
    assert_eq!(invalid(&bad).key, "tenant.migrating_refuses");
    // The file registry does not look unknown tenants up unless asked; limits are checked.
    assert!(!parse(MINIMAL).unwrap().lookup.unknown);
    for (extra, key) in [
        ("lookup_rate = 0", "registry.lookup_rate"),
        ("lookup_burst = 0.5", "registry.lookup_burst"),
        ("negative_ttl = \"1ms\"", "registry.negative_ttl"),
        ("negative_capacity = 0", "registry.negative_capacity"),
    ] {
        let text = format!("{MINIMAL}{extra}\n");
        assert_eq!(invalid(&text).key, key, "{extra}");
    }
}

#[test]
fn dynamodb_registry_needs_a_table_and_keeps_file_keys_out() {
    let dynamo = |extra: &str| {
        MINIMAL.replace(
            "[registry]\nsource = \"file\"\n",
            &format!("[registry]\nsource = \"dynamodb\"\n{extra}"),
        )
    };
    let cfg = parse(&dynamo("table = \"cellgate-registry\"\n")).unwrap();
    let RegistryConfig::Dynamo {
        settings,
        poll_interval,
        full_refresh,
    } = &cfg.registry
    else {
        panic!("expected the DynamoDB registry")
    };
    assert_eq!(settings.table, "cellgate-registry");
    assert_eq!((settings.scan_segments, settings.scan_page_size), (4, None));
    assert_eq!(*poll_interval, Duration::from_millis(250));
    assert_eq!(*full_refresh, Duration::from_secs(300));
    assert_eq!(invalid(&dynamo("")).key, "registry.table");
    assert_eq!(invalid(&dynamo("table = \"a b\"\n")).key, "registry.table");
    let path = "table = \"t-1\"\npath = \"r.toml\"\n";
    assert_eq!(invalid(&dynamo(path)).key, "registry.path");
    let endpoint = "table = \"t-1\"\nendpoint_url = \"127.0.0.1:8000\"\n";
    assert_eq!(invalid(&dynamo(endpoint)).key, "registry.endpoint_url");
    let segments = "table = \"t-1\"\nscan_segments = 0\n";
    assert_eq!(invalid(&dynamo(segments)).key, "registry.scan_segments");
    let file_with_table = MINIMAL.replace(
        "[registry]\nsource = \"file\"\n",
        "[registry]\nsource = \"file\"\ntable = \"t\"\n",
    );
    assert_eq!(invalid(&file_with_table).key, "registry.table");
}

#[test]
fn unknown_key_is_a_parse_error_naming_the_key() {
    let text = minimal_plus("[server]\nwrokers = 2\n");
    match parse(&text) {
        Err(ConfigError::Parse { file, message }) => {
            assert_eq!(file, Path::new(CONFIG_PATH));
            assert!(message.contains("wrokers"), "message: {message}");
        }
        other => panic!("expected a Parse error, got {other:?}"),
    }
}

#[test]
fn bad_duration_names_key_and_value() {
    let f = invalid(&minimal_plus("[upstream]\nconnect_timeout = \"soon\"\n"));
    assert_eq!(f.key, "upstream.connect_timeout");
    assert_eq!(f.value, "soon");
}

#[test]
fn pool_idle_timeout_must_stay_below_the_alb_idle_timeout() {
    let f = invalid(&minimal_plus("[upstream]\npool_idle_timeout = \"70s\"\n"));
    assert_eq!(f.key, "upstream.pool_idle_timeout");
    assert_eq!(f.value, "1m 10s");
    // The limit itself is accepted.
    let cfg = parse(&minimal_plus("[upstream]\npool_idle_timeout = \"59s\"\n")).unwrap();
    assert_eq!(cfg.upstream.pool_idle_timeout, MAX_POOL_IDLE);
}

#[test]
fn zero_and_inverted_upstream_timeouts_are_rejected() {
    let f = invalid(&minimal_plus("[upstream]\nread_timeout = \"0s\"\n"));
    assert_eq!(f.key, "upstream.read_timeout");
    let f = invalid(&minimal_plus(
        "[upstream]\nread_timeout = \"60s\"\ntotal_timeout = \"10s\"\n",
    ));
    assert_eq!(f.key, "upstream.total_timeout");
}

#[test]
fn bad_listen_address_names_the_listener() {
    let f = invalid(&MINIMAL.replace("127.0.0.1:8080", "localhost:80"));
    assert_eq!(f.key, "listeners[0].address");
    assert_eq!(f.value, "localhost:80");
}

#[test]
fn no_listeners_is_rejected() {
    let text = MINIMAL.replace("[[listeners]]\naddress = \"127.0.0.1:8080\"\n", "");
    assert_eq!(invalid(&text).key, "listeners");
}

#[test]
fn listen_override_replaces_only_the_first_listener() {
    let text = format!("[[listeners]]\naddress = \"127.0.0.1:8081\"\n{MINIMAL}");
    let o = Overrides {
        listen: Some("0.0.0.0:9999".to_owned()),
        admin: Some("127.0.0.1:9191".to_owned()),
        registry_path: Some("/srv/reg.toml".to_owned()),
        log_level: Some("debug".to_owned()),
        ..Overrides::default()
    };
    let cfg = parse_with(&text, &o).unwrap();
    assert_eq!(cfg.listeners.len(), 2);
    assert_eq!(cfg.listeners[0].address, "0.0.0.0:9999".parse().unwrap());
    assert_eq!(cfg.listeners[1].address, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(cfg.admin.address, "127.0.0.1:9191".parse().unwrap());
    assert_eq!(cfg.log.level, "debug");
    let RegistryConfig::File { path, .. } = &cfg.registry else {
        panic!("expected the file registry")
    };
    assert_eq!(path, Path::new("/srv/reg.toml"));
}

#[test]
fn bad_listen_override_is_reported_against_the_first_listener() {
    let o = Overrides {
        listen: Some("nope".to_owned()),
        ..Overrides::default()
    };
    let Err(ConfigError::Invalid { field, .. }) = parse_with(MINIMAL, &o) else {
        panic!("a bad --listen was accepted");
    };
    assert_eq!(kv(&field), ("listeners[0].address", "nope"));
}

#[test]
fn subdomain_source_needs_base_domains() {
    let f = invalid(&MINIMAL.replace("base_domains = [\"example.com\"]\n", ""));
    assert_eq!(f.key, "tenant.base_domains");
}

#[test]
fn base_domains_are_normalised_and_sorted_longest_first() {
    let cfg = parse(&MINIMAL.replace(
        "base_domains = [\"example.com\"]",
        "base_domains = [\"Example.COM\", \".eu.example.com\"]",
    ))
    .unwrap();
    assert_eq!(
        cfg.tenant.base_domains,
        vec!["eu.example.com", "example.com"]
    );
    let f = invalid(&MINIMAL.replace("\"example.com\"", "\"exa mple.com\""));
    assert_eq!(f.key, "tenant.base_domains[0]");
}

#[test]
fn header_source_needs_trusted_sources() {
    let base = MINIMAL.replace("sources = [\"subdomain\"]", "sources = [\"header\"]");
    let f = invalid(&format!("{base}\n[tenant.header]\nname = \"X-Tenant\"\n"));
    assert_eq!(f.key, "tenant.header.trusted_sources");
    // Without the [tenant.header] table at all.
    assert_eq!(invalid(&base).key, "tenant.sources");
    // A bare address counts as a /32; header names are lower-cased.
    let nets = "trusted_sources = [\"10.0.0.0/8\", \"192.0.2.7\"]";
    let cfg = parse(&format!(
        "{base}\n[tenant.header]\nname = \"X-Tenant\"\n{nets}\n"
    ))
    .unwrap();
    let h = cfg.tenant.header.unwrap();
    assert_eq!(h.name.as_str(), "x-tenant");
    assert_eq!(h.trusted_sources.len(), 2);
    assert!(h.trusted_sources[1].contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap()));
    let f = invalid(&format!(
        "{base}\n[tenant.header]\nname = \"x-tenant\"\ntrusted_sources = [\"not-a-net\"]\n"
    ));
    assert_eq!(f.key, "tenant.header.trusted_sources[0]");
}

#[test]
fn unknown_or_repeated_tenant_source_is_rejected() {
    let f = invalid(&MINIMAL.replace("[\"subdomain\"]", "[\"subdomain\", \"cookie\"]"));
    assert_eq!(kv(&f), ("tenant.sources[1]", "cookie"));
    let f = invalid(&MINIMAL.replace("[\"subdomain\"]", "[\"subdomain\", \"subdomain\"]"));
    assert_eq!(f.key, "tenant.sources[1]");
}

#[test]
fn jwt_source_without_keys_is_rejected() {
    // `jwt` is also in the default source list.
    let explicit = MINIMAL.replace("[\"subdomain\"]", "[\"jwt\", \"subdomain\"]");
    let defaulted = MINIMAL.replace("sources = [\"subdomain\"]\n", "");
    for text in [explicit, defaulted] {
        let f = invalid(&text);
        assert_eq!(kv(&f), ("tenant.sources", "jwt"));
    }
    let f = invalid(&minimal_plus("[auth]\nrequired = true\n"));
    assert_eq!(f.key, "auth.required");
}

/// `MINIMAL` with the jwt source on and `[auth]` TOML appended.
fn with_auth(auth: &str) -> String {
    format!(
        "{}\n{auth}",
        MINIMAL.replace("[\"subdomain\"]", "[\"jwt\", \"subdomain\"]")
    )
}

const ISSUER_HEAD: &str = "[[auth.issuers]]\nissuer = \"https://idp.test\"\naudiences = [\"cg\"]\n";

#[test]
fn issuers_load_keys_from_absolute_and_relative_paths_with_defaults() {
    let text = with_auth(&format!(
        "{ISSUER_HEAD}[[auth.issuers.keys]]\nkid = \"rsa\"\nalgorithm = \"RS256\"\n\
         public_key_file = \"{KEYS}/rsa.pub.pem\"\n\
         [[auth.issuers.keys]]\nalgorithm = \"ES256\"\npublic_key_file = \"ec.pub.pem\"\n"
    ));
    // Relative key paths are anchored to the config file's directory.
    let path = Path::new(KEYS).join("cellgate.toml");
    let cfg = Config::from_toml(&text, &path, &Overrides::default()).unwrap();
    let iss = &cfg.auth.issuers[0];
    assert_eq!(
        (&*iss.name, &*iss.issuer),
        ("https://idp.test", "https://idp.test")
    );
    assert_eq!(iss.keys.len(), 2);
    assert_eq!(iss.keys[0].kid.as_deref(), Some("rsa"));
    assert_eq!(iss.keys[1].algorithms, crate::auth::AlgSet::ES256);
    // Defaults: the keys' own algorithms, tenant claim `tenant` (required), 60 s leeway.
    assert_eq!(iss.algorithms.names(), ["RS256", "ES256"]);
    assert_eq!(iss.tenant_claim.as_str(), "tenant");
    assert!(iss.tenant_claim_required);
    assert_eq!(iss.leeway, Duration::from_secs(60));
    assert!(iss.jwks.is_none() && iss.tenants.is_none());
    // The same relative path from elsewhere does not resolve.
    assert_eq!(
        invalid(&text).key,
        "auth.issuers[0].keys[1].public_key_file"
    );
}

#[test]
fn jwks_issuers_default_to_asymmetric_algorithms_and_need_https() {
    let jwks = |url: &str| {
        with_auth(&format!(
            "{ISSUER_HEAD}[auth.issuers.jwks]\nurl = \"{url}\"\n"
        ))
    };
    let cfg = parse(&jwks("https://idp.test/jwks.json")).unwrap();
    let iss = &cfg.auth.issuers[0];
    assert_eq!(iss.algorithms, crate::auth::AlgSet::ASYMMETRIC);
    let j = iss.jwks.as_ref().unwrap();
    assert_eq!(
        (j.refresh, j.cooldown),
        (Duration::from_secs(600), Duration::from_secs(30))
    );
    assert_eq!((j.max_keys, j.max_bytes), (64, 256 * 1024));
    assert!(parse(&jwks("http://127.0.0.1:8080/jwks")).is_ok());
    for url in ["http://idp.test/jwks", "ftp://idp.test/x", "not a url"] {
        assert_eq!(kv(&invalid(&jwks(url))), ("auth.issuers[0].jwks.url", url));
    }
}

#[test]
fn issuer_errors_name_their_keys() {
    let key = format!(
        "[[auth.issuers.keys]]\nkid = \"k\"\nalgorithm = \"RS256\"\npublic_key_file = \"{KEYS}/rsa.pub.pem\"\n"
    );
    #[rustfmt::skip]
    let cases = [
        (ISSUER_HEAD.to_owned(), "auth.issuers[0].keys"),
        (format!("[[auth.issuers]]\nissuer = \"x\"\n{key}"), "auth.issuers[0].audiences"),
        (format!("{ISSUER_HEAD}algorithms = [\"none\"]\n{key}"), "auth.issuers[0].algorithms[0]"),
        (format!("{ISSUER_HEAD}algorithms = [\"ES256\"]\n{key}"), "auth.issuers[0].keys[0].algorithm"),
        (format!("{ISSUER_HEAD}algorithms = [\"RS256\", \"HS256\"]\n{key}"), "auth.issuers[0].algorithms"),
        (format!("{ISSUER_HEAD}leeway = \"10m\"\n{key}"), "auth.issuers[0].leeway"),
        (format!("{ISSUER_HEAD}tenant_claim = \"\"\n{key}"), "auth.issuers[0].tenant_claim"),
        (format!("{ISSUER_HEAD}tenants = [\"Not Valid\"]\n{key}"), "auth.issuers[0].tenants[0]"),
        (format!("{ISSUER_HEAD}typ = \"\"\n{key}"), "auth.issuers[0].typ"),
        (format!("{ISSUER_HEAD}{key}{key}"), "auth.issuers[0].keys[1].kid"),
        (format!("{ISSUER_HEAD}{key}{ISSUER_HEAD}{key}"), "auth.issuers[1].issuer"),
        (format!("{ISSUER_HEAD}[auth.issuers.jwks]\nurl = \"https://i.test/\"\ncooldown = \"0s\"\n"), "auth.issuers[0].jwks.cooldown"),
        (format!("{ISSUER_HEAD}[auth.issuers.jwks]\nurl = \"https://i.test/\"\nmax_keys = 0\n"), "auth.issuers[0].jwks.max_keys"),
        (format!("[[auth.forward_claims]]\nclaim = \"sub\"\nheader = \"host\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[[auth.forward_claims]]\nclaim = \"org\"\nheader = \"X-Tenant-Id\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[[auth.forward_claims]]\nclaim = \"org\"\nheader = \"x-cell-id\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[[auth.forward_claims]]\nclaim = \"ip\"\nheader = \"x-forwarded-for\"\n{ISSUER_HEAD}{key}"), "auth.forward_claims[0].header"),
        (format!("[auth]\ncache_max_ttl = \"2h\"\n{ISSUER_HEAD}{key}"), "auth.cache_max_ttl"),
    ];
    for (auth, want) in cases {
        assert_eq!(invalid(&with_auth(&auth)).key, want, "{auth}");
    }
    // The jwt source with no issuer at all.
    assert_eq!(invalid(&with_auth("")).key, "tenant.sources");
}

#[test]
fn hmac_secret_env_errors_name_the_variable_not_the_secret() {
    // Positive HS256 verification is not tested here: it needs a secret in an environment
    // variable, and setting one from a test needs `unsafe` (forbidden in this crate).
    let hs = |extra: &str| {
        with_auth(&format!(
            "{ISSUER_HEAD}[[auth.issuers.keys]]\nalgorithm = \"HS256\"\n{extra}"
        ))
    };
    let missing = invalid(&hs(""));
    assert_eq!(
        kv(&missing),
        ("auth.issuers[0].keys[0].secret_env", "(missing)")
    );
    let var = "CELLGATE_UNIT_TEST_SECRET_THAT_IS_NEVER_SET_5c1e";
    let unset = invalid(&hs(&format!("secret_env = \"{var}\"\n")));
    assert_eq!(kv(&unset), ("auth.issuers[0].keys[0].secret_env", var));
    let with_pem = invalid(&hs(&format!("public_key_file = \"{KEYS}/rsa.pub.pem\"\n")));
    assert_eq!(with_pem.key, "auth.issuers[0].keys[0].algorithm");
}

#[test]
fn invalid_display_contains_file_key_and_value() {
    let err = parse(&minimal_plus("[upstream]\nconnect_timeout = \"soon\"\n")).unwrap_err();
    let shown = err.to_string();
    for part in [CONFIG_PATH, "upstream.connect_timeout", "\"soon\""] {
        assert!(shown.contains(part), "{shown:?} lacks {part:?}");
    }
}

#[test]
fn registry_and_cell_errors_name_their_keys() {
    let f = invalid(&MINIMAL.replace("source = \"file\"", "source = \"etcd\""));
    assert_eq!(kv(&f), ("registry.source", "etcd"));
    let f = invalid(&MINIMAL.replace(
        "source = \"file\"",
        "source = \"file\"\npoll_interval = \"1ms\"",
    ));
    assert_eq!(f.key, "registry.poll_interval");
    let no_registry = MINIMAL.replace("[registry]\nsource = \"file\"\n", "");
    assert_eq!(invalid(&no_registry).key, "registry");
    let cells = "[[cells]]\nid = \"c1\"\ntargets = [\"http://10.0.0.1:80\"]\n\
                 [[cells]]\nid = \"c1\"\nstate = \"DOWN\"\n";
    assert_eq!(invalid(&minimal_plus(cells)).key, "cells[1].id");
    let f = invalid(&minimal_plus("[[cells]]\nid = \"c1\"\nstate = \"OFF\"\n"));
    assert_eq!(f.key, "cells[0].state");
}

#[test]
fn misc_ranges_are_checked() {
    #[rustfmt::skip]
    let cases = [
        ("[server]\nworkers = 1000", "server.workers"),
        ("[server]\nshutdown_grace = \"5\"", "server.shutdown_grace"),
        ("[server]\nheaders_with_underscores = \"strip\"", "server.headers_with_underscores"),
        ("[server]\nmax_header_bytes = 1024", "server.max_header_bytes"),
        ("[server]\nmax_headers = 5000", "server.max_headers"),
        ("[server]\nmax_uri_bytes = 10", "server.max_uri_bytes"),
        ("[server]\nheader_timeout = \"10ms\"", "server.header_timeout"),
        ("[server]\nidle_timeout = \"2h\"", "server.idle_timeout"),
        ("[server]\nrequest_timeout = \"soon\"", "server.request_timeout"),
        ("[server]\nmax_connections = 0", "server.max_connections"),
        ("[server.http2]\nmax_concurrent_streams = 0", "server.http2.max_concurrent_streams"),
        ("[server.http2]\nstream_window = 100", "server.http2.stream_window"),
        ("[server.http2]\nmax_pending_resets = 0", "server.http2.max_pending_resets"),
        ("[server]\ntrust_x_forwarded_for = true", "server.trust_x_forwarded_for"),
        ("[[listeners]]\naddress = \"127.0.0.1:8081\"\nproxy_protocol = true", "listeners[1].proxy_protocol"),
        ("[server]\ntrusted_hops = [\"10.0.0.0/8\", \"nlb\"]", "server.trusted_hops[1]"),
        ("[access_log]\nsample = 1.5", "access_log.sample"),
        ("[access_log]\nbuffer = 0", "access_log.buffer"),
        ("[auth]\nmax_token_bytes = 10", "auth.max_token_bytes"),
        ("[auth]\ncache_max_entries = 99999999", "auth.cache_max_entries"),
        ("[log]\nformat = \"xml\"", "log.format"),
        ("[headers]\nstrip = [\"bad header\"]", "headers.strip[0]"),
        ("[admin]\naddress = \"9090\"", "admin.address"),
        ("[upstream]\nca_file = \"/nonexistent/ca.pem\"", "upstream.ca_file"),
    ];
    for (extra, key) in cases {
        assert_eq!(invalid(&minimal_plus(extra)).key, key, "{extra}");
    }
}

#[test]
fn ingress_defaults_are_the_documented_ones() {
    let c = parse(MINIMAL).unwrap();
    let l = c.server.limits;
    assert_eq!(
        (l.max_header_bytes, l.max_headers, l.max_uri_bytes),
        (32 * 1024, 100, 8192)
    );
    assert_eq!(l.max_body_bytes, 100 * 1024 * 1024);
    assert_eq!(l.header_timeout, Duration::from_secs(10));
    assert_eq!(
        (l.idle_timeout, l.request_timeout),
        (Duration::from_secs(60), Duration::from_secs(60))
    );
    assert_eq!(
        (c.server.connections.max, c.server.connections.per_ip),
        (10_000, 1024)
    );
    assert_eq!(c.server.http2.max_concurrent_streams, 100);
    assert_eq!(c.server.http2.max_pending_resets, 20);
}

#[test]
fn parse_helpers_report_key_and_value() {
    assert_eq!(parse_duration("k", "1m 30s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("k", "250ms").unwrap().as_millis(), 250);
    let e = parse_duration("server.shutdown_grace", "5").unwrap_err();
    assert_eq!(kv(&e), ("server.shutdown_grace", "5"));
    assert_eq!(parse_addr("a", "[::1]:80").unwrap().port(), 80);
    assert_eq!(
        kv(&parse_addr("a", "1.2.3.4").unwrap_err()),
        ("a", "1.2.3.4")
    );
}

const LIMITS: &str = r#"
[limits]
cell_max_in_flight = 500

[limits.tiers.free]
rate = 10
burst = 5
concurrency = 2

[limits.tiers.standard]
rate = 50.5

[[limits.routes]]
name = "writes"
methods = ["post", "DELETE"]
rate = 1
tiers = ["free"]

[[limits.routes]]
name = "export"
path_prefix = "/export"
rate = 0.5
burst = 3
"#;

#[test]
fn limits_parse_with_defaults() {
    let cfg = parse(&minimal_plus(LIMITS)).unwrap();
    let l = &cfg.limits;
    let names: Vec<_> = l.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["free", "standard"], "sorted by name");
    assert_eq!(
        l.tiers[l.default_tier].name, "standard",
        "standard is the default default"
    );
    assert_eq!(l.tiers[0].burst, Some(5));
    assert_eq!(
        l.tiers[1].burst, None,
        "one second's worth is applied by the limiter"
    );
    assert_eq!(l.cell_max_in_flight, Some(500));
    assert_eq!(l.max_tenants, 1 << 20);
    assert_eq!(l.sweep_interval, Duration::from_secs(10));
    assert_eq!(
        l.routes[0].methods,
        [http::Method::POST, http::Method::DELETE]
    );
    assert_eq!(l.routes[0].burst, 1);
    assert_eq!(l.routes[0].tiers, [0]);
    assert_eq!(l.routes[1].path_prefix.as_deref(), Some("/export"));
    assert!(l.routes[1].tiers.is_empty(), "every tier");
    // No [limits]: no tiers, no caps.
    let none = parse(MINIMAL).unwrap().limits;
    assert!(none.tiers.is_empty() && none.routes.is_empty());
    assert_eq!(none.cell_max_in_flight, None);
}

#[test]
fn limits_errors_name_the_key_and_value() {
    let cases: &[(&str, (&str, &str))] = &[
        (
            "[limits.tiers.gold]\nrate = 1\n",
            ("limits.default_tier", "(unset)"),
        ),
        (
            "[limits]\ndefault_tier = \"gold\"\n[limits.tiers.standard]\nrate = 1\n",
            ("limits.default_tier", "gold"),
        ),
        (
            "[limits.tiers.standard]\nrate = 0\n",
            ("limits.tiers.standard.rate", "0"),
        ),
        (
            "[limits.tiers.standard]\nburst = 5\n",
            ("limits.tiers.standard.burst", "5"),
        ),
        (
            "[limits.tiers.standard]\nrate = 5\nconcurrency = 0\n",
            ("limits.tiers.standard.concurrency", "0"),
        ),
        (
            "[limits.tiers.\"has space\"]\nrate = 5\n",
            ("limits.tiers.has space", "has space"),
        ),
        (
            "[limits.tiers.standard]\nrate = 1\n[[limits.routes]]\nname = \"w\"\nmethods = [\"P O S T\"]\nrate = 1\n",
            ("limits.routes[0].methods[0]", "P O S T"),
        ),
        (
            "[limits.tiers.standard]\nrate = 1\n[[limits.routes]]\nname = \"w\"\npath_prefix = \"export\"\nrate = 1\n",
            ("limits.routes[0].path_prefix", "export"),
        ),
        (
            "[limits.tiers.standard]\nrate = 1\n[[limits.routes]]\nname = \"w\"\nrate = 1\n",
            ("limits.routes[0]", "w"),
        ),
        (
            "[limits.tiers.standard]\nrate = 1\n[[limits.routes]]\nname = \"w\"\nmethods = [\"POST\"]\nrate = 1\ntiers = [\"gold\"]\n",
            ("limits.routes[0].tiers[0]", "gold"),
        ),
        (
            "[[limits.routes]]\nname = \"nt\"\nmethods = [\"POST\"]\nrate = 1\n",
            ("limits.routes[0].name", "nt"),
        ),
        ("[limits]\nmax_tenants = 1\n", ("limits.max_tenants", "1")),
        (
            "[limits]\nsweep_interval = \"1ms\"\n",
            ("limits.sweep_interval", "1ms"),
        ),
    ];
    for (text, want) in cases {
        let f = invalid(&minimal_plus(text));
        assert_eq!(kv(&f), *want, "{text}");
    }
    // A cell's own cap is checked where the cell is defined.
    let f = invalid(&minimal_plus(
        "[[cells]]\nid = \"c1\"\ntargets = [\"http://127.0.0.1:1\"]\nmax_in_flight = 0\n",
    ));
    assert_eq!(kv(&f), ("cells[0].max_in_flight", "0"));
    // Unknown keys are parse errors, not silently ignored.
    let err = parse(&minimal_plus("[limits.tiers.standard]\nrps = 5\n")).unwrap_err();
    assert!(err.to_string().contains("rps"), "{err}");
}

#[test]
fn canary_defaults_and_a_forced_arm_header_with_its_claim() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.canary.hash_by, HashBy::Tenant);
    assert!(cfg.canary.force.is_none() && cfg.auth.arm_claim.is_none());
    let key = format!(
        "[[auth.issuers.keys]]\nkid = \"k\"\nalgorithm = \"RS256\"\npublic_key_file = \"{KEYS}/rsa.pub.pem\"\n"
    );
    let canary = "[canary]\nhash_by = \"sub\"\nforce_header = \"X-Cellgate-Arm\"\n\
                  force_claim = \"canary_tester\"\n";
    let cfg = parse(&with_auth(&format!("{ISSUER_HEAD}{key}{canary}"))).unwrap();
    assert_eq!(cfg.canary.hash_by, HashBy::Sub);
    let force = cfg.canary.force.unwrap();
    assert_eq!(force.header.as_str(), "x-cellgate-arm");
    assert_eq!(force.claim.as_str(), "canary_tester");
    // The verifier gets the claim to capture with each token.
    assert_eq!(cfg.auth.arm_claim, Some(force.claim));
}

#[test]
fn canary_errors_name_the_key_and_value() {
    let key = format!(
        "[[auth.issuers.keys]]\nkid = \"k\"\nalgorithm = \"RS256\"\npublic_key_file = \"{KEYS}/rsa.pub.pem\"\n"
    );
    let issuer = format!("{ISSUER_HEAD}{key}");
    let claims = "[[auth.forward_claims]]\nclaim = \"sub\"\nheader = \"x-user\"\n";
    let force = |header: &str, claim: &str| {
        format!("[canary]\nforce_header = \"{header}\"\nforce_claim = \"{claim}\"\n")
    };
    #[rustfmt::skip]
    let cases = [
        (format!("{issuer}[canary]\nhash_by = \"user\"\n"), ("canary.hash_by", "user")),
        (format!("{issuer}[canary]\nforce_header = \"x-arm\"\n"), ("canary.force_claim", "(missing)")),
        (format!("{issuer}[canary]\nforce_claim = \"tester\"\n"), ("canary.force_header", "(missing)")),
        (format!("{issuer}{}", force("bad header", "tester")), ("canary.force_header", "bad header")),
        (format!("{issuer}{}", force("X-Tenant-Id", "tester")), ("canary.force_header", "X-Tenant-Id")),
        (format!("{issuer}{}", force("authorization", "tester")), ("canary.force_header", "authorization")),
        (format!("{issuer}{}", force("connection", "tester")), ("canary.force_header", "connection")),
        (format!("{claims}{issuer}{}", force("X-User", "tester")), ("canary.force_header", "X-User")),
        (format!("{issuer}{}", force("x-arm", "")), ("canary.force_claim", "")),
        (format!("{issuer}{}", force("x-arm", "/")), ("canary.force_claim", "/")),
    ];
    for (auth, want) in cases {
        assert_eq!(kv(&invalid(&with_auth(&auth))), want, "{auth}");
    }
    // A claim needs verified tokens.
    let f = invalid(&minimal_plus(&force("x-arm", "tester")));
    assert_eq!(kv(&f), ("canary.force_claim", "tester"));
    // Nor may the header be the trusted tenant header.
    let base = MINIMAL.replace(
        "sources = [\"subdomain\"]",
        "sources = [\"jwt\", \"header\"]",
    );
    let text = format!(
        "{base}\n[tenant.header]\nname = \"X-Org\"\ntrusted_sources = [\"10.0.0.0/8\"]\n\
         {issuer}{}",
        force("x-org", "tester")
    );
    assert_eq!(kv(&invalid(&text)), ("canary.force_header", "x-org"));
    // Unknown keys are parse errors.
    let err = parse(&minimal_plus("[canary]\nhash = \"sub\"\n")).unwrap_err();
    assert!(err.to_string().contains("hash"), "{err}");
}
