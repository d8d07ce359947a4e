//! Items round trip through their records, and bad fields are named.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::placement::capacity::CellCapacity;
use crate::placement::{CellState, TenantStatus};

#[test]
fn tenant_items_round_trip_and_bad_fields_are_named() {
    let r = TenantRecord {
        id: "acme".to_owned(),
        cell: "cell-1".to_owned(),
        status: TenantStatus::Migrating,
        tier: "enterprise".to_owned(),
        version: 7,
        issuers: vec!["https://acme.idp".to_owned()],
        limits: TenantLimits {
            rate: Some(50.5),
            burst: Some(20),
            concurrency: None,
        },
        arm: Some("canary".to_owned()),
        entitlements: Vec::new(),
    };
    let item = tenant_item(&r, "2026-11-23T00:00:00Z");
    assert_eq!(tenant_from_item(&item).unwrap(), r);
    assert_eq!(item_json(&item)["version"], 7);
    let mut broken = item.clone();
    broken.insert("tier".to_owned(), s("no spaces allowed"));
    assert_eq!(tenant_from_item(&broken).unwrap_err().field, "tier");
    broken.insert("version".to_owned(), AttributeValue::N("-1".to_owned()));
    assert_eq!(tenant_from_item(&broken).unwrap_err().field, "version");
    broken.remove("cell");
    assert_eq!(tenant_from_item(&broken).unwrap_err().field, "cell");
}

#[test]
fn key_items_round_trip_and_never_hold_the_key() {
    let k = crate::apikey::generate().unwrap();
    let r = KeyRecord {
        id: k.id.clone(),
        tenant: "acme".to_owned(),
        hash: k.hash,
        status: crate::placement::KeyStatus::Revoked,
        expires_at: Some(1_900_000_000),
        scopes: vec!["billing".to_owned()],
        created_at: 1_700_000_000,
        version: 4,
    };
    let item = key_item(&r, "t");
    assert_eq!(key_from_item(&item).unwrap(), r);
    assert_eq!(item[PK], s(apikey_key(&k.id)));
    // The TTL attribute: DynamoDB deletes the item some time after the key expired.
    assert_eq!(item_json(&item)[TTL_ATTRIBUTE], 1_900_000_000u64);
    let text = format!("{:?}", item_json(&item));
    assert!(
        !text.contains(&k.key[k.key.len() - 26..]),
        "the secret is never stored"
    );
    let mut broken = item.clone();
    broken.insert("hash".to_owned(), s("sha256:zz"));
    assert_eq!(key_from_item(&broken).unwrap_err().field, "hash");
    broken.insert("key_id".to_owned(), s("UPPER"));
    assert_eq!(key_from_item(&broken).unwrap_err().field, "key_id");
    let mut tenant = tenant_item(
        &TenantRecord {
            id: "acme".to_owned(),
            cell: "cell-1".to_owned(),
            status: TenantStatus::Active,
            tier: "standard".to_owned(),
            version: 1,
            issuers: Vec::new(),
            limits: TenantLimits::default(),
            arm: None,
            entitlements: vec!["billing".to_owned()],
        },
        "t",
    );
    assert_eq!(tenant_from_item(&tenant).unwrap().entitlements, ["billing"]);
    tenant.insert("entitlements".to_owned(), AttributeValue::L(vec![s("a b")]));
    assert_eq!(
        tenant_from_item(&tenant).unwrap_err().field,
        "entitlements[0]"
    );
}

#[test]
fn cell_items_round_trip_with_their_groups() {
    let c = CellRecord {
        id: "cell-1".to_owned(),
        state: CellState::Draining,
        region: Some("eu-west-1".to_owned()),
        groups: vec![
            TargetGroup {
                name: "stable".to_owned(),
                targets: vec!["http://10.0.0.1:80".to_owned()],
                weight: 95,
                version: "v1".to_owned(),
            },
            TargetGroup {
                name: "off".to_owned(),
                targets: vec!["http://10.0.0.2:80".to_owned()],
                weight: 0,
                version: "v2".to_owned(),
            },
        ],
        preserve_host: Some(true),
        max_in_flight: Some(800),
        wave: Some(2),
        protocol: None,
        place: CellCapacity {
            capacity: Some(40),
            tier_units: [("enterprise".to_owned(), 5)].into(),
            tags: vec!["pci".to_owned(), "region=eu-west-1".to_owned()],
        },
        tenants: 7,
        load: 11,
        version: 3,
    };
    let item = cell_item(&c, "t");
    assert_eq!(cell_from_item(&item).unwrap(), c);
    assert_eq!(item_json(&item)["wave"], 2);
    // No wave: no attribute; a wave out of range is named.
    let no_wave = CellRecord {
        wave: None,
        ..c.clone()
    };
    assert!(!cell_item(&no_wave, "t").contains_key("wave"));
    let mut broken = item.clone();
    broken.insert(
        "wave".to_owned(),
        AttributeValue::N("4294967296".to_owned()),
    );
    assert_eq!(cell_from_item(&broken).unwrap_err().field, "wave");
    // Placement attributes are checked as a registry file's are; a cell from before them
    // has none, and no counts.
    assert_eq!(item_json(&item)["tier_units"]["enterprise"], 5);
    assert_eq!(
        (
            item_json(&item)["tenants"].clone(),
            item_json(&item)["load"].clone()
        ),
        (7.into(), 11.into())
    );
    let mut bad_tag = item.clone();
    bad_tag.insert(
        "tags".to_owned(),
        AttributeValue::L(vec![s("region=us-east-1")]),
    );
    assert_eq!(cell_from_item(&bad_tag).unwrap_err().field, "tags[0]");
    let mut bad_units = item.clone();
    bad_units.insert(
        "tier_units".to_owned(),
        AttributeValue::M([("gold".to_owned(), AttributeValue::N("0".to_owned()))].into()),
    );
    assert_eq!(
        cell_from_item(&bad_units).unwrap_err().field,
        "tier_units.gold"
    );
    let mut old = item.clone();
    for a in ["capacity", "tier_units", "tags", "tenants", "load"] {
        old.remove(a);
    }
    let old = cell_from_item(&old).unwrap();
    assert_eq!(
        (old.place, old.tenants, old.load),
        (CellCapacity::default(), 0, 0)
    );
    // A state outside the three is named, with the accepted ones.
    let mut bad_state = item.clone();
    bad_state.insert("state".to_owned(), s("UP"));
    let e = cell_from_item(&bad_state).unwrap_err();
    assert_eq!((e.field.as_str(), e.value.as_str()), ("state", "UP"));
    assert!(e.reason.contains("ACTIVE, DRAINING or DOWN"), "{e:?}");
    // The data plane gets every group with its weight and version.
    let cell = crate::placement::Cell::from_file(&c.to_file_cell(), "cell#cell-1").unwrap();
    assert_eq!(cell.wave, Some(2));
    let groups: Vec<_> = cell
        .groups
        .iter()
        .map(|g| (&*g.name, &*g.version, g.weight, g.targets.clone()))
        .collect();
    assert_eq!(groups, [("stable", "v1", 95, 0..1), ("off", "v2", 0, 1..2)]);
    assert_eq!(cell.targets[1].url.as_ref(), "http://10.0.0.2:80");
    assert_eq!(change_key(42), "change#00000000000000000042");
}

#[test]
fn cell_protocol_round_trips_and_a_bad_one_is_named() {
    use crate::upstream::Protocol;
    let c = CellRecord {
        id: "cell-2".to_owned(),
        state: CellState::Active,
        region: None,
        groups: vec![TargetGroup {
            name: "stable".to_owned(),
            targets: vec!["https://cell-2.internal".to_owned()],
            weight: 100,
            version: "stable".to_owned(),
        }],
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: Some(Protocol::Http2),
        place: CellCapacity::default(),
        tenants: 0,
        load: 0,
        version: 1,
    };
    let item = cell_item(&c, "t");
    assert_eq!(item["protocol"], s("http2"));
    assert_eq!(cell_from_item(&item).unwrap(), c);
    // Every name round trips; the data plane and the registry file get it.
    for p in Protocol::ALL {
        let with = CellRecord {
            protocol: Some(p),
            ..c.clone()
        };
        assert_eq!(cell_from_item(&cell_item(&with, "t")).unwrap(), with);
        assert_eq!(with.to_file_cell().protocol.as_deref(), Some(p.as_str()));
        assert_eq!(
            with.to_registry_cell().protocol.as_deref(),
            Some(p.as_str())
        );
        let cell = crate::placement::Cell::from_file(&with.to_file_cell(), "cell").unwrap();
        assert_eq!(cell.targets[0].protocol, p);
    }
    // Unset: no attribute, and the targets speak HTTP/1.1.
    let unset = CellRecord {
        protocol: None,
        ..c.clone()
    };
    let item = cell_item(&unset, "t");
    assert!(!item.contains_key("protocol"));
    assert_eq!(cell_from_item(&item).unwrap().protocol, None);
    let cell = crate::placement::Cell::from_file(&unset.to_file_cell(), "cell").unwrap();
    assert_eq!(cell.targets[0].protocol, Protocol::Http1);
    // A name outside the three is named with the accepted ones; so is a non-string.
    let mut bad = item.clone();
    bad.insert("protocol".to_owned(), s("h2"));
    let e = cell_from_item(&bad).unwrap_err();
    assert_eq!((e.field.as_str(), e.value.as_str()), ("protocol", "h2"));
    assert!(e.reason.contains("http1, http2 or auto"), "{e:?}");
    bad.insert("protocol".to_owned(), AttributeValue::N("2".to_owned()));
    assert_eq!(cell_from_item(&bad).unwrap_err().field, "protocol");
}
