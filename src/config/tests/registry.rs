//! The registry section: file and DynamoDB sources, lookups, the migrating policy, cells.

use super::*;

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
fn a_cell_protocol_outside_the_three_names_the_key_and_value() {
    let cell = |protocol: &str| {
        minimal_plus(&format!(
            "[[cells]]\nid = \"c1\"\ntargets = [\"https://10.0.0.1\"]\nprotocol = \"{protocol}\"\n"
        ))
    };
    let text = cell("h3");
    let f = invalid(&text);
    assert_eq!(kv(&f), ("cells[0].protocol", "h3"));
    assert!(f.reason.contains("http1, http2 or auto"), "{f:?}");
    let shown = parse(&text).unwrap_err().to_string();
    assert!(
        shown.contains("cells[0].protocol") && shown.contains("\"h3\""),
        "{shown}"
    );
    // The registry's spelling only: no other case.
    assert_eq!(kv(&invalid(&cell("HTTP2"))), ("cells[0].protocol", "HTTP2"));
    for name in ["http1", "http2", "auto"] {
        let cfg = parse(&cell(name)).unwrap();
        assert_eq!(cfg.cells[0].protocol.as_deref(), Some(name));
    }
}
