//! The placement counts a cell item keeps (`tenants`, `load`), kept right by every tenant
//! write: a tenant counts in its cell, for its tier's units there, unless it is OFFBOARDED. A
//! write that creates a tenant, changes its cell, its tier or whether it is offboarded turns
//! into guarded `ADD`s on the cells involved ([`Guarded`]), committed in the same transaction
//! as the tenant record, so the counts never disagree with the records they count.
//! `tenant place` builds its own, stricter, update (room under `--max-fill`); `cell usage
//! --recount` repairs counts written before they were kept.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use super::OpsError;
use super::io::current_cell;
use crate::placement::dynamo::schema::{CellRecord, cell_key};
use crate::placement::dynamo::write::{Guarded, Registry};
use crate::placement::{TenantRecord, TenantStatus};

/// The cell a record counts in and its tier (`None`: it counts nowhere).
fn counted(t: &TenantRecord) -> Option<(&str, &str)> {
    (t.status != TenantStatus::Offboarded).then_some((t.cell.as_str(), t.tier.as_str()))
}

/// The count changes of writing `after` over `before`: per cell, the tenants and the tiers
/// (with a sign) that leave or join it. Pure; units are worked out once the cells are read.
fn moves<'a>(
    before: Option<&'a TenantRecord>,
    after: &'a TenantRecord,
) -> BTreeMap<&'a str, Vec<(i64, &'a str)>> {
    let mut by_cell: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    let (was, now) = (before.and_then(counted), counted(after));
    if was == now {
        return by_cell;
    }
    if let Some((cell, tier)) = was {
        by_cell.entry(cell).or_default().push((-1, tier));
    }
    if let Some((cell, tier)) = now {
        by_cell.entry(cell).or_default().push((1, tier));
    }
    by_cell
}

/// The guarded updates that keep the counts right when `after` replaces `before`, and the
/// JSON describing them (with a note for a cell that is not in the table, or whose counts
/// were already lower than what leaves it).
pub(super) async fn count_updates(
    reg: &Registry,
    before: Option<&TenantRecord>,
    after: &TenantRecord,
) -> Result<(Vec<Guarded>, Vec<Value>), OpsError> {
    let mut updates = Vec::new();
    let mut shown = Vec::new();
    for (cell, changes) in moves(before, after) {
        let Some(record) = current_cell(reg, cell).await? else {
            shown.push(json!({"cell": cell, "note": "not in the table: no counts to keep"}));
            continue;
        };
        let tenants: i64 = changes.iter().map(|(sign, _)| sign).sum();
        let load: i64 = changes
            .iter()
            .map(|&(sign, tier)| sign * i64::try_from(record.place.units(tier)).unwrap_or(1))
            .sum();
        if let Some((update, view)) = adjust(&record, tenants, load) {
            updates.push(update);
            shown.push(view);
        }
    }
    Ok((updates, shown))
}

/// The update adding `tenants` and `load` to `cell`'s counts; a decrement never takes a count
/// below 0 (it is cut to what is stored, and the update is conditioned on that much being
/// there still). `None` when nothing changes.
fn adjust(cell: &CellRecord, tenants: i64, load: i64) -> Option<(Guarded, Value)> {
    let stored = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let dt = tenants.max(-stored(cell.tenants));
    let dl = load.max(-stored(cell.load));
    if dt == 0 && dl == 0 {
        return None;
    }
    let mut guards = Vec::new();
    let mut names = Vec::new();
    let mut values = Vec::new();
    for (attr, delta, placeholder) in [("tenants", dt, "t"), ("load", dl, "l")] {
        if delta < 0 {
            guards.push(format!("#{placeholder} >= :{placeholder}"));
            names.push((format!("#{placeholder}"), attr.to_owned()));
            values.push((
                format!(":{placeholder}"),
                AttributeValue::N((-delta).to_string()),
            ));
        }
    }
    let mut view = json!({"cell": cell.id, "tenants": dt, "load": dl});
    if dt != tenants || dl != load {
        view["note"] = json!(format!(
            "the stored counts (tenants {}, load {}) were below what left; run `cellgate cell \
             usage --recount`",
            cell.tenants, cell.load
        ));
    }
    let update = Guarded {
        key: cell_key(&cell.id),
        add: vec![("tenants".to_owned(), dt), ("load".to_owned(), dl)],
        condition: (!guards.is_empty()).then(|| guards.join(" AND ")),
        names,
        values,
        meaning: format!(
            "cell {}: counts of at least tenants {}, load {}",
            cell.id,
            (-dt).max(0),
            (-dl).max(0)
        ),
    };
    Some((update, view))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(cell: &str, tier: &str, status: TenantStatus) -> TenantRecord {
        TenantRecord {
            cell: cell.to_owned(),
            tier: tier.to_owned(),
            status,
            ..crate::placement::record::tenant_record(crate::placement::record::RawTenant {
                id: "acme".to_owned(),
                cell: cell.to_owned(),
                status: None,
                tier: None,
                version: None,
                issuers: Vec::new(),
                limits: crate::ratelimit::TenantLimits::default(),
                arm: None,
                entitlements: Vec::new(),
            })
            .unwrap_or_else(|b| panic!("{b:?}"))
        }
    }

    #[test]
    fn every_change_of_cell_tier_or_offboarding_moves_the_counts() {
        use TenantStatus::{Active, Migrating, Offboarded, Suspended};
        let a = tenant("c-1", "standard", Active);
        let v = |m: BTreeMap<&str, Vec<(i64, &str)>>| {
            m.into_iter()
                .map(|(c, ch)| {
                    (
                        c.to_owned(),
                        ch.into_iter().map(|(s, t)| (s, t.to_owned())).collect(),
                    )
                })
                .collect::<Vec<(String, Vec<(i64, String)>)>>()
        };
        let one = |c: &str, s: i64, t: &str| (c.to_owned(), vec![(s, t.to_owned())]);
        assert_eq!(v(moves(None, &a)), [one("c-1", 1, "standard")]);
        assert_eq!(v(moves(Some(&a), &a)), []);
        // Suspending or migrating keeps the tenant counted where it is.
        assert_eq!(
            v(moves(Some(&a), &tenant("c-1", "standard", Suspended))),
            []
        );
        assert_eq!(
            v(moves(Some(&a), &tenant("c-1", "standard", Migrating))),
            []
        );
        let off = tenant("c-1", "standard", Offboarded);
        assert_eq!(v(moves(Some(&a), &off)), [one("c-1", -1, "standard")]);
        assert_eq!(v(moves(Some(&off), &a)), [one("c-1", 1, "standard")]);
        assert_eq!(v(moves(None, &off)), []);
        assert_eq!(
            v(moves(Some(&a), &tenant("c-2", "standard", Active))),
            [one("c-1", -1, "standard"), one("c-2", 1, "standard")]
        );
        assert_eq!(
            v(moves(Some(&a), &tenant("c-1", "enterprise", Active))),
            [(
                "c-1".to_owned(),
                vec![(-1, "standard".to_owned()), (1, "enterprise".to_owned())]
            )]
        );
    }

    #[test]
    fn a_decrement_never_goes_below_zero_and_is_guarded() {
        let mut c = crate::placement::dynamo::schema::cell_from_item(
            &[
                ("cell".to_owned(), AttributeValue::S("c-1".to_owned())),
                ("tenants".to_owned(), AttributeValue::N("1".to_owned())),
                ("load".to_owned(), AttributeValue::N("2".to_owned())),
            ]
            .into(),
        )
        .unwrap_or_else(|b| panic!("{b:?}"));
        let (u, view) = adjust(&c, -1, -5).unwrap_or_else(|| panic!("an update"));
        assert_eq!(u.add, [("tenants".to_owned(), -1), ("load".to_owned(), -2)]);
        assert_eq!(u.condition.as_deref(), Some("#t >= :t AND #l >= :l"));
        assert!(
            view["note"]
                .as_str()
                .is_some_and(|n| n.contains("--recount"))
        );
        let (u, view) = adjust(&c, 1, 5).unwrap_or_else(|| panic!("an update"));
        assert_eq!(u.condition, None);
        assert!(view.get("note").is_none());
        c.tenants = 0;
        c.load = 0;
        assert!(adjust(&c, -1, -1).is_none(), "nothing to take away");
    }
}
