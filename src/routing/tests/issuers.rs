//! A tenant bound to its own IdP.

use super::*;

#[test]
fn a_tenant_bound_to_its_own_idp_refuses_tokens_from_other_issuers() {
    let mut initech = record("initech", "cell-1", TenantStatus::Active, 1);
    initech.issuers = vec!["https://initech.idp".to_owned()];
    let data = RegistryData::from_records(
        vec![initech, record("acme", "cell-1", TenantStatus::Active, 1)],
        vec![cell("cell-1", "ACTIVE", &["http://10.0.0.1:8080"])],
    );
    let snap = PlacementSnapshot::build(data, &[], 1);
    let get = Method::GET;
    assert!(route(&t("initech"), &get, Some("https://initech.idp"), &snap).is_ok());
    assert_eq!(
        route(&t("initech"), &get, Some("https://shared.idp"), &snap).unwrap_err(),
        RouteError::IssuerNotAllowed
    );
    // No token: the binding speaks about tokens only (auth.required decides the rest).
    assert!(route(&t("initech"), &get, None, &snap).is_ok());
    // An unbound tenant takes any configured issuer, except another tenant's own IdP.
    assert!(route(&t("acme"), &get, Some("https://shared.idp"), &snap).is_ok());
    assert_eq!(
        route(&t("acme"), &get, Some("https://initech.idp"), &snap).unwrap_err(),
        RouteError::IssuerNotAllowed
    );
}
