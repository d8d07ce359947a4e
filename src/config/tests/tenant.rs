//! Tenant sources: subdomain base domains, the trusted header and the jwt source.

use super::*;

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

#[test]
fn api_key_source_reads_a_header_that_is_not_reserved() {
    let base = MINIMAL.replace("[\"subdomain\"]", "[\"subdomain\", \"api_key\"]");
    let cfg = parse(&base).unwrap();
    assert_eq!(cfg.tenant.api_key.unwrap().header.as_str(), "x-api-key");
    let cfg = parse(&format!("{base}\n[tenant.api_key]\nheader = \"X-Key\"\n")).unwrap();
    assert_eq!(cfg.tenant.api_key.unwrap().header.as_str(), "x-key");
    for reserved in ["Authorization", "x-tenant-id", "host", "x-api-key-id"] {
        let f = invalid(&format!(
            "{base}\n[tenant.api_key]\nheader = \"{reserved}\"\n"
        ));
        assert_eq!(kv(&f), ("tenant.api_key.header", reserved));
    }
    let f = invalid(&format!(
        "{base}\n[tenant.api_key]\nheader = \"bad header\"\n"
    ));
    assert_eq!(f.key, "tenant.api_key.header");
    // The table without the source is a mistake worth naming.
    let f = invalid(&minimal_plus("[tenant.api_key]\nheader = \"x-key\"\n"));
    assert_eq!(f.key, "tenant.api_key");
}

#[test]
fn entitlement_routes_are_checked_up_front() {
    let route = |body: &str| minimal_plus(&format!("[[entitlements.routes]]\n{body}\n"));
    let cfg = parse(&route(
        "entitlement = \"billing\"\nmethods = [\"post\"]\npath_prefix = \"/v1/billing\"",
    ))
    .unwrap();
    let r = &cfg.entitlements.routes[0];
    assert_eq!(
        (r.entitlement.as_str(), r.methods[0].as_str()),
        ("billing", "POST")
    );
    let cases = [
        (
            "entitlement = \"a b\"\npath = \"/x\"",
            "entitlements.routes[0].entitlement",
        ),
        ("entitlement = \"a\"", "entitlements.routes[0]"),
        (
            "entitlement = \"a\"\npath = \"/x\"\npath_prefix = \"/y\"",
            "entitlements.routes[0]",
        ),
        (
            "entitlement = \"a\"\npath = \"x\"",
            "entitlements.routes[0].path",
        ),
        (
            "entitlement = \"a\"\npath_prefix = \"/x?y\"",
            "entitlements.routes[0].path_prefix",
        ),
        (
            "entitlement = \"a\"\npath = \"/x\"\nmethods = [\"GE T\"]",
            "entitlements.routes[0].methods[0]",
        ),
        (
            "entitlement = \"a\"\npath = \"/x\"\nmethods = [\"GET\", \"get\"]",
            "entitlements.routes[0].methods[1]",
        ),
    ];
    for (body, key) in cases {
        assert_eq!(invalid(&route(body)).key, key, "{body}");
    }
    let f = invalid(&minimal_plus("[entitlements]\ntoken_scope_claim = \"\"\n"));
    assert_eq!(f.key, "entitlements.token_scope_claim");
    let cfg = parse(&minimal_plus(
        "[entitlements]\ntoken_scope_claim = \"scp\"\n",
    ))
    .unwrap();
    assert!(cfg.auth.scope_claim.is_some() && cfg.entitlements.routes.is_empty());
}
