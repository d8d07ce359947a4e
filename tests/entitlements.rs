//! Entitlements at the edge, end to end: a real proxy in-process (`common::Harness`) in front
//! of echo cells, with `[entitlements]` routes by method and path prefix or exact path. A tenant
//! reaches the routes it is entitled to whatever the path looks like (case, doubled slashes,
//! percent-encoding, dot segments), a key's scopes and a token's scope claim narrow its
//! tenant's entitlements and never widen them, and each refusal is one 403 `not_entitled`
//! counted under what narrowed it (tenant, key or token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::apikeys::{
    Tenant, call, from_cell, key_entry, new_key, refused, saw_only_the_id, start, with_key,
};
use common::jwks::{claims, mint};
use common::limits::{metrics, sum};
use common::{AUDIENCE, Harness, ISSUER, Reply, token, within};
use http::{Method, StatusCode};
use jsonwebtoken::Algorithm::RS256;
use serde_json::json;

const NOT_ENTITLED: &str = "cellgate_not_entitled_total";

const ENTITLEMENTS: &str = r#"
[entitlements]
token_scope_claim = "scope"

[[entitlements.routes]]
entitlement = "billing"
methods = ["GET", "POST"]
path_prefix = "/v1/billing"

[[entitlements.routes]]
entitlement = "billing-admin"
methods = ["DELETE"]
path_prefix = "/v1/billing"

[[entitlements.routes]]
entitlement = "reports"
path = "/v1/reports/summary"
"#;

/// `acme` entitled to billing (cell-1), `globex` to billing and reports (cell-2).
const ENTITLED: &[Tenant<'static>] = &[
    ("acme", "cell-1", &["billing"]),
    ("globex", "cell-2", &["billing", "reports"]),
];

fn not_entitled(text: &str, by: &str) -> f64 {
    sum(text, NOT_ENTITLED, &[("by", by)])
}

/// Refused 403 `not_entitled` naming `entitlement`, counted once under `by`.
async fn denied(
    h: &Harness,
    r: impl Future<Output = Reply>,
    entitlement: &str,
    by: &str,
    what: &str,
) {
    let before = metrics(h).await;
    let r = r.await;
    let v = refused(&r, StatusCode::FORBIDDEN, "not_entitled", what);
    assert_eq!(v["entitlement"], entitlement, "{what}: {}", r.body);
    let after = metrics(h).await;
    for other in ["tenant", "key", "token"] {
        let d = not_entitled(&after, other) - not_entitled(&before, other);
        let want = if other == by { 1.0 } else { 0.0 };
        assert_eq!(d, want, "{what}: counted {d} under by={other}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reaches_the_routes_it_is_entitled_to_whatever_the_path_looks_like() {
    within(async {
        let h = start(
            r#"["jwt", "subdomain", "api_key"]"#,
            "",
            ENTITLEMENTS,
            ENTITLED,
            "",
        )
        .await;
        let acme = Some("acme.app.test");
        let get = |path: &'static str| call(&h, Method::GET, acme, path, &[]);

        for path in [
            "/v1/billing",
            "/v1/billing/invoices",
            "/V1//Billing/%78",
            "/other",
        ] {
            from_cell(&get(path).await, "cell-1", "acme", path);
        }
        // A method no route names needs nothing.
        let r = call(&h, Method::PUT, acme, "/v1/billing/x", &[]).await;
        from_cell(&r, "cell-1", "acme", "PUT");
        // An exact path covers itself only.
        from_cell(
            &get("/v1/reports/summary/x").await,
            "cell-1",
            "acme",
            "below exact",
        );

        for path in [
            "/v1/reports/summary",
            "/V1/Reports//%73ummary",
            "/v1/x/../reports/summary",
        ] {
            denied(&h, get(path), "reports", "tenant", path).await;
        }
        let del = call(&h, Method::DELETE, acme, "/V1//Billing/%78", &[]);
        denied(&h, del, "billing-admin", "tenant", "DELETE").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_scopes_narrow_its_tenants_entitlements() {
    within(async {
        let (scoped, whole) = (new_key(), new_key());
        let keys = key_entry(&scoped, "globex", "scopes = [\"reports\"]\nversion = 1")
            + &key_entry(&whole, "globex", "version = 1");
        let h = start(
            r#"["jwt", "subdomain", "api_key"]"#,
            "",
            ENTITLEMENTS,
            ENTITLED,
            &keys,
        )
        .await;

        let r = with_key(&h, "/v1/reports/summary", &scoped.key).await;
        saw_only_the_id(
            &from_cell(&r, "cell-2", "globex", "scoped"),
            &scoped,
            "scoped",
        );
        for path in ["/v1/billing/invoices", "/V1//Billing/%78"] {
            denied(&h, with_key(&h, path, &scoped.key), "billing", "key", path).await;
        }
        // A route needing nothing is open to a scoped key too.
        from_cell(
            &with_key(&h, "/other", &scoped.key).await,
            "cell-2",
            "globex",
            "open",
        );

        // A key without scopes carries its tenant's whole entitlement.
        for path in ["/v1/reports/summary", "/V1//Billing/%78"] {
            from_cell(
                &with_key(&h, path, &whole.key).await,
                "cell-2",
                "globex",
                path,
            );
        }
        // ...and no more: DELETE needs billing-admin, which globex lacks.
        let headers = [("x-api-key", whole.key.as_str())];
        let r = call(&h, Method::DELETE, None, "/v1/billing/x", &headers);
        denied(&h, r, "billing-admin", "tenant", "DELETE").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_scope_claim_narrows_its_tenants_entitlements() {
    within(async {
        let h = start(
            r#"["jwt", "subdomain", "api_key"]"#,
            "",
            ENTITLEMENTS,
            ENTITLED,
            "",
        )
        .await;
        let mut c = claims(ISSUER, AUDIENCE, "globex");
        c["scope"] = json!("billing openid");
        let narrow = format!("Bearer {}", mint(RS256, "rsa.pem", Some("rsa-1"), &c));
        let wide = format!("Bearer {}", token("RS256", "globex"));
        let hr = &h;
        let with = |auth: &str, path: &'static str| {
            let auth = auth.to_owned();
            async move { call(hr, Method::GET, None, path, &[("authorization", &auth)]).await }
        };

        from_cell(
            &with(&narrow, "/v1/billing/x").await,
            "cell-2",
            "globex",
            "billing",
        );
        denied(
            &h,
            with(&narrow, "/v1/reports/summary"),
            "reports",
            "token",
            "reports",
        )
        .await;
        // A token without the claim is not narrowed.
        from_cell(
            &with(&wide, "/v1/reports/summary").await,
            "cell-2",
            "globex",
            "wide",
        );
        h.shutdown().await;
    })
    .await;
}
