//! Target rotation within a cell, and a tenant's cell staying put.

use super::*;

#[test]
fn round_robin_alternates_targets() {
    let snap = snapshot();
    let picks: Vec<usize> = (0..6)
        .map(|_| route(&t("acme"), &Method::GET, None, &snap).unwrap().target)
        .collect();
    for w in picks.windows(2) {
        assert_ne!(w[0], w[1], "{picks:?}");
    }
    // Tenants sharing a cell share its rotation.
    let a = route(&t("acme"), &Method::GET, None, &snap).unwrap().target;
    let b = route(&t("moving"), &Method::GET, None, &snap)
        .unwrap()
        .target;
    assert_ne!(a, b);
}

#[test]
fn chosen_cell_never_changes_for_a_tenant() {
    let snap = snapshot();
    let first = route(&t("acme"), &Method::GET, None, &snap).unwrap();
    for _ in 0..1000 {
        let d = route(&t("acme"), &Method::GET, None, &snap).unwrap();
        assert!(Arc::ptr_eq(&d.cell, &first.cell));
        assert_eq!(d.tenant_header, first.tenant_header);
    }
    // The same holds across rebuilt generations of the same data.
    for _ in 0..10 {
        assert_eq!(
            &*route(&t("globex"), &Method::GET, None, &snapshot())
                .unwrap()
                .cell
                .id,
            "cell-2"
        );
    }
}
