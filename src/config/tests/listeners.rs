//! Listener and admin addresses, the --listen override, PROXY protocol on the admin listener.

use super::*;

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
fn admin_proxy_protocol_is_off_by_default() {
    assert!(!parse(MINIMAL).unwrap().admin.proxy_protocol);
}

#[test]
fn admin_proxy_protocol_needs_trusted_hops() {
    let f = invalid(&minimal_plus("[admin]\nproxy_protocol = true"));
    assert_eq!(kv(&f), ("admin.proxy_protocol", "true"));
    assert!(f.reason.contains("server.trusted_hops"), "{}", f.reason);
    // An empty list is no better than none.
    let f = invalid(&minimal_plus(
        "[server]\ntrusted_hops = []\n[admin]\nproxy_protocol = true",
    ));
    assert_eq!(f.key, "admin.proxy_protocol");
}

#[test]
fn admin_proxy_protocol_with_trusted_hops_survives_the_admin_override() {
    let text = minimal_plus(
        "[server]\ntrusted_hops = [\"10.0.0.0/24\"]\n[admin]\naddress = \"127.0.0.1:9191\"\nproxy_protocol = true",
    );
    assert!(parse(&text).unwrap().admin.proxy_protocol);
    // CELLGATE_ADMIN_LISTEN (as the Terraform module sets it) replaces the address only.
    let o = Overrides {
        admin: Some("0.0.0.0:9090".to_owned()),
        ..Overrides::default()
    };
    let cfg = parse_with(&text, &o).unwrap();
    assert_eq!(cfg.admin.address, "0.0.0.0:9090".parse().unwrap());
    assert!(cfg.admin.proxy_protocol);
}
