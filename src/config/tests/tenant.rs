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
