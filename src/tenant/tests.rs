//! Tenant ids and reading them from hosts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn domains(list: &[&str]) -> Vec<String> {
    list.iter().map(|d| (*d).to_owned()).collect()
}

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

// ---- TenantId -------------------------------------------------------------------------------

#[test]
fn valid_ids_parse() {
    for id in ["acme", "a", "0", "acme-corp_2", &"x".repeat(MAX_TENANT_LEN)] {
        let t = TenantId::parse(id).unwrap();
        assert_eq!((t.as_str(), t.to_string().as_str()), (id, id));
    }
    assert_eq!(format!("{:?}", tid("acme")), "TenantId(acme)");
}

#[test]
fn invalid_ids_are_rejected() {
    let too_long = "x".repeat(MAX_TENANT_LEN + 1);
    // The first entry is the empty id.
    let bad = "|Acme|ACME|-acme|_acme|acme.corp|acme/..|a b|ac\u{e9}|a\0".split('|');
    for id in bad.chain([too_long.as_str()]) {
        let got = TenantId::parse(id);
        assert!(matches!(got, Err(TenantError::Invalid(_))), "{id:?}");
    }
}

#[test]
fn host_labels_fold_case_but_keep_the_other_rules() {
    let folded = TenantId::from_host_label(b"AcMe").unwrap();
    assert_eq!(folded, tid("acme"));
    let set: std::collections::HashSet<TenantId> = [tid("acme"), folded].into();
    assert_eq!(set.len(), 1, "equal ids hash equal");
    for label in [&b""[..], b"-acme", b"a.b", b"a/b"] {
        assert!(TenantId::from_host_label(label).is_err(), "{label:?}");
    }
}

// ---- hosts ----------------------------------------------------------------------------------

#[test]
fn ports_are_stripped_from_hosts() {
    let strip = |h: &'static str| std::str::from_utf8(host_without_port(h.as_bytes())).unwrap();
    assert_eq!(strip("acme.example.com:8443"), "acme.example.com");
    assert_eq!(strip("acme.example.com"), "acme.example.com");
    assert_eq!(strip("[::1]:8080"), "[::1]");
    assert_eq!(strip("[::1]"), "[::1]");
}

#[test]
fn tenant_from_host_cases() {
    let d = domains(&["example.com"]);
    let got = |h: &str| tenant_from_host(h.as_bytes(), &d);
    let acme = Some(tid("acme"));
    let hosts = "acme.example.com acme.example.com:8443 acme.example.com. acme.example.com.:443";
    for host in hosts.split(' ').chain(["ACME.Example.COM"]) {
        assert_eq!(got(host).unwrap(), acme, "{host}");
    }
    // The base domain itself, a foreign domain, a look-alike suffix, an IP: no tenant.
    let hosts = "example.com example.com:80 acme.example.org acme.badexample.com .example.com";
    for host in hosts.split(' ').chain(["[::1]:80"]) {
        assert_eq!(got(host).unwrap(), None, "{host}");
    }
    // Two labels above the base domain, or a label that is not an id: an error.
    for host in ["a.b.example.com", "-x.example.com", "a_b!.example.com"] {
        assert!(matches!(got(host), Err(TenantError::Invalid(_))), "{host}");
    }
}

#[test]
fn most_specific_base_domain_wins_when_sorted_longest_first() {
    let d = domains(&["eu.example.com", "example.com"]);
    let got = |h: &str| tenant_from_host(h.as_bytes(), &d).unwrap();
    assert_eq!(got("acme.eu.example.com"), Some(tid("acme")));
    assert_eq!(got("globex.example.com"), Some(tid("globex")));
    // Sorted the other way, the shorter domain would claim two labels and fail.
    let wrong_order = domains(&["example.com", "eu.example.com"]);
    assert!(tenant_from_host(b"acme.eu.example.com", &wrong_order).is_err());
}

// ---- identify -------------------------------------------------------------------------------
