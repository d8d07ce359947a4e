//! API keys and entitlements in the snapshot: records from both file formats, the packed form
//! round trip, deltas and lookups of keys, and the check of a presented key.

use super::*;
use crate::apikey::{KeyHash, KeyRefusal, generate, parse};
use crate::placement::file::jsonl::parse_jsonl;
use crate::placement::file::parse_registry;

fn key_record(tenant: &str, scopes: &[&str]) -> (String, KeyRecord) {
    let k = generate().unwrap();
    let record = KeyRecord {
        id: k.id.clone(),
        tenant: tenant.to_owned(),
        hash: k.hash,
        status: KeyStatus::Active,
        expires_at: None,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        created_at: 1_700_000_000,
        version: 1,
    };
    (k.key, record)
}

#[test]
fn keys_and_entitlements_parse_from_toml_and_round_trip_through_the_snapshot() {
    let hash = KeyHash::of("abcdefghijkl", "abcdefghijklmnopqrstuvwxyz");
    let text = format!(
        r#"{GOOD}
[[tenants]]
id = "initech"
cell = "cell-1"
entitlements = ["billing", "reports:read"]

[[apikeys]]
id = "abcdefghijkl"
tenant = "initech"
hash = "{hash}"
scopes = ["billing"]
expires_at = 1900000000
created_at = 1700000000
version = 3
"#
    );
    let data = parse_registry(&text, "reg.toml").unwrap();
    assert_eq!(data.key_count(), 1);
    let held = data.key("abcdefghijkl").unwrap();
    assert_eq!(held.hash, hash);
    assert_eq!(held.scopes, ["billing"]);
    let snap = PlacementSnapshot::build(data, &[], 1);
    let t = snap.tenant("initech").unwrap();
    assert!(t.entitled("billing") && t.entitled("reports:read") && !t.entitled("x"));
    assert_eq!(
        t.record("initech").entitlements,
        ["billing", "reports:read"]
    );
    assert!(!snap.tenant("acme").unwrap().entitled("billing"));
    let k = snap.api_key("abcdefghijkl").unwrap();
    assert_eq!(k.tenant(), "initech");
    assert_eq!(k.expires_at(), Some(1_900_000_000));
    assert_eq!(k.scopes().map(|s| s.len()), Some(1));
    let back = k.record("abcdefghijkl");
    assert_eq!(
        (back.version, back.created_at, back.status),
        (3, 1_700_000_000, KeyStatus::Active)
    );
    let key = parse("cgk_abcdefghijkl_abcdefghijklmnopqrstuvwxyz").unwrap();
    assert_eq!(k.check(&key, 1_800_000_000), Ok(()));
    assert_eq!(k.check(&key, 1_900_000_000), Err(KeyRefusal::Expired));
    let wrong = parse("cgk_abcdefghijkl_abcdefghijklmnopqrstuvwxya").unwrap();
    assert_eq!(k.check(&wrong, 0), Err(KeyRefusal::WrongSecret));
}

#[test]
fn bad_key_records_name_the_field() {
    let good_hash = KeyHash::of("abcdefghijkl", "x").to_string();
    let base = |extra: &str| {
        format!(
            "[[apikeys]]\nid = \"abcdefghijkl\"\ntenant = \"acme\"\nhash = \"{good_hash}\"\n{extra}"
        )
    };
    let key_of = |text: &str| match parse_registry(text, "reg.toml") {
        Err(RegistryError::Invalid { key, .. }) => key,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(key_of(&base("status = \"PAUSED\"")), "apikeys[0].status");
    assert_eq!(key_of(&base("scopes = [\"a b\"]")), "apikeys[0].scopes[0]");
    assert_eq!(
        key_of(&base("scopes = [\"a\", \"a\"]")),
        "apikeys[0].scopes[1]"
    );
    assert_eq!(key_of(&base("expires_at = 0")), "apikeys[0].expires_at");
    let bad_id = base("").replace("abcdefghijkl\"\nt", "ABC\"\nt");
    assert_eq!(key_of(&bad_id), "apikeys[0].id");
    let bad_tenant = base("").replace("\"acme\"", "\"Acme!\"");
    assert_eq!(key_of(&bad_tenant), "apikeys[0].tenant");
    let bad_hash = base("").replace(&good_hash, "md5:00");
    match parse_registry(&bad_hash, "reg.toml") {
        Err(RegistryError::Invalid { key, value, .. }) => {
            // The hash is never echoed back.
            assert_eq!(
                (key.as_str(), value.as_str()),
                ("apikeys[0].hash", "(hidden)")
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let twice = format!("{}\n{}", base(""), base(""));
    assert_eq!(key_of(&twice), "apikeys[1].id");
    let entitlement = "[[tenants]]\nid = \"a\"\ncell = \"c\"\nentitlements = [\"no spaces\"]\n";
    assert_eq!(key_of(entitlement), "tenants[0].entitlements[0]");
}

#[test]
fn keys_come_in_json_lines_too() {
    let hash = KeyHash::of("abcdefghijkl", "s");
    let text = format!(
        "{{\"tenant\": {{\"id\": \"acme\", \"cell\": \"cell-1\", \"entitlements\": [\"billing\"]}}}}\n\
         {{\"apikey\": {{\"id\": \"abcdefghijkl\", \"tenant\": \"acme\", \"hash\": \"{hash}\", \"status\": \"REVOKED\"}}}}\n"
    );
    let data = parse_jsonl(&text, "reg.jsonl").unwrap();
    let k = data.key("abcdefghijkl").unwrap();
    assert_eq!(k.status, KeyStatus::Revoked);
    assert_eq!(data.tenant("acme").unwrap().entitlements, ["billing"]);
    let dup = format!("{text}{}", text.lines().nth(1).unwrap());
    match parse_jsonl(&dup, "reg.jsonl") {
        Err(RegistryError::Invalid { key, .. }) => assert_eq!(key, "line 3: apikey.id"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn key_deltas_add_revoke_and_remove_and_never_go_back_in_version() {
    let (secret, mut record) = key_record("acme", &[]);
    let id = record.id.clone();
    let data = RegistryData::from_records([tenant("acme", "cell-1", TenantStatus::Active)], vec![]);
    let snap = PlacementSnapshot::build(data, &[], 1);
    assert!(snap.api_key(&id).is_none());
    let add = Delta {
        keys: vec![(id.clone(), Some(record.clone()))],
        ..Delta::default()
    };
    let (snap, stats) = snap.apply(&add, &[], 2);
    assert_eq!((stats.applied, stats.keys), (1, 1));
    assert_eq!(snap.key_count(), 1);
    let presented = parse(&secret).unwrap();
    assert_eq!(snap.api_key(&id).unwrap().check(&presented, 0), Ok(()));

    record.status = KeyStatus::Revoked;
    record.version = 2;
    let revoke = Delta {
        keys: vec![(id.clone(), Some(record.clone()))],
        ..Delta::default()
    };
    let (revoked, _) = snap.apply(&revoke, &[], 3);
    let view = revoked.api_key(&id).unwrap();
    assert_eq!(view.check(&presented, 0), Err(KeyRefusal::Revoked));
    // The generation before still has it active: generations are immutable.
    assert_eq!(snap.api_key(&id).unwrap().check(&presented, 0), Ok(()));

    // A late read of version 1 does not bring the key back.
    let late = Delta {
        keys: vec![(
            id.clone(),
            Some(KeyRecord {
                version: 1,
                status: KeyStatus::Active,
                ..record.clone()
            }),
        )],
        ..Delta::default()
    };
    let (still, stats) = revoked.apply(&late, &[], 4);
    assert_eq!(stats.regressions, 1);
    assert_eq!(still.api_key(&id).unwrap().status(), KeyStatus::Revoked);

    let gone = Delta {
        keys: vec![(id.clone(), None)],
        ..Delta::default()
    };
    let (gone, _) = still.apply(&gone, &[], 5);
    assert!(gone.api_key(&id).is_none());
    assert_eq!(gone.key_count(), 0);
    assert_eq!(gone.tenant_count(), 1);
}

#[test]
fn many_keys_share_scope_lists_and_each_finds_its_own_record() {
    let mut data = RegistryData::new();
    let mut made = Vec::new();
    for i in 0..5_000 {
        let scopes: &[&str] = if i % 2 == 0 { &["billing"] } else { &[] };
        let (secret, r) = key_record(&format!("tenant-{}", i % 50), scopes);
        assert!(data.push_key(r.clone()));
        assert!(!data.push_key(r.clone()), "a duplicate id is refused");
        made.push((secret, r));
    }
    let snap = PlacementSnapshot::build(data, &[], 1);
    assert_eq!(snap.key_count(), 5_000);
    for (secret, r) in &made {
        let view = snap.api_key(&r.id).unwrap();
        assert_eq!(view.tenant(), r.tenant);
        assert_eq!(view.check(&parse(secret).unwrap(), 0), Ok(()));
        assert_eq!(view.record(&r.id), *r);
    }
    let mut all: Vec<KeyRecord> = snap.key_records().collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all.len(), 5_000);
    assert!(snap.key_map_bytes() > 5_000 * 61);
}
