//! The limits section: tiers, route classes and caps.

use super::*;

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
fn the_fleet_section_parses_and_its_errors_name_the_key() {
    let ok = minimal_plus(
        "[limits]\n[limits.tiers.standard]\nrate = 100\n\n[limits.fleet]\n\
         redis_url = \"rediss://cache.internal:6380/1\"\nmode = \"shadow\"\nsync_interval = \"10ms\"\n",
    );
    let cfg = parse(&ok).unwrap();
    let f = cfg.limits.fleet.as_ref().unwrap();
    assert_eq!(f.redis.to_string(), "rediss://cache.internal:6380/1");
    assert_eq!(f.mode, FleetMode::Shadow);
    assert_eq!(f.sync_interval, Duration::from_millis(10));
    assert!(
        parse(MINIMAL).unwrap().limits.fleet.is_none(),
        "off unless present"
    );

    let fleet = |body: &str| invalid(&minimal_plus(&format!("[limits.fleet]\n{body}\n")));
    let e = fleet("redis_url = \"redis://:hunter2@cache:6379\"");
    assert_eq!(kv(&e), ("limits.fleet.redis_url", "redis://***@cache:6379"));
    assert!(e.reason.contains("CELLGATE_REDIS_PASSWORD"), "{}", e.reason);
    assert_eq!(
        kv(&fleet("redis_url = \"redis://c\"\nkey_prefix = \"{t}\"")),
        ("limits.fleet.key_prefix", "{t}")
    );
    assert_eq!(
        fleet("redis_url = \"redis://c\"\nmode = \"off\"").key,
        "limits.fleet.mode"
    );
    assert_eq!(fleet("mode = \"shadow\"").key, "limits.fleet.redis_url");
}

#[test]
fn an_unreadable_or_empty_password_file_fails_validation_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.path().join("missing");
    for (path, why) in [(&empty, "empty"), (&missing, "cannot read")] {
        let e = invalid(&minimal_plus(&format!(
            "[limits.fleet]\nredis_url = \"redis://c\"\nredis_password_file = \"{}\"\n",
            path.display()
        )));
        assert_eq!(
            kv(&e),
            ("limits.fleet.redis_password_file", path.to_str().unwrap())
        );
        assert!(e.reason.contains(why), "{}", e.reason);
    }
}
