//! Reading verified claims: the tenant claim, required claims, `iat`, the claims forwarded
//! to the cell as headers, and the arms a token may force (`canary.force_claim`).
//!
//! Called by [`super::Verifier`] after the signature and the registered claims (`exp`, `nbf`,
//! `iss`, `aud`) have passed. A claim is named either plainly (`tenant_id`), by a namespaced
//! name (`https://example.com/tenant`, looked up as one key), or by a JSON pointer into nested
//! objects (`/org/id`).

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::Reason;
use crate::tenant::TenantId;

/// Longest claim value forwarded as a header; longer values are not forwarded.
pub const MAX_FORWARDED_VALUE: usize = 1024;

/// Where a claim lives in the claims object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPath {
    /// A top-level key, plain or namespaced (`tenant`, `https://example.com/tenant`).
    Name(Box<str>),
    /// A JSON pointer (RFC 6901) into nested objects (`/org/id`).
    Pointer(Box<str>),
}

impl ClaimPath {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("must not be empty");
        }
        if s.len() > 256 {
            return Err("at most 256 characters");
        }
        if s.starts_with('/') {
            if s.len() == 1 || s.contains("//") {
                return Err("a JSON pointer needs a name after each /");
            }
            Ok(Self::Pointer(Box::from(s)))
        } else {
            Ok(Self::Name(Box::from(s)))
        }
    }

    /// The claim's value, `None` when absent or JSON `null`.
    #[must_use]
    pub fn get<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        let v = match self {
            Self::Name(n) => claims.get(&**n),
            Self::Pointer(p) => claims.pointer(p),
        };
        v.filter(|v| !v.is_null())
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Name(s) | Self::Pointer(s) => s,
        }
    }
}

/// Reads the tenant claim: a string that is a valid tenant id.
pub fn tenant(
    claims: &Value,
    path: &ClaimPath,
    required: bool,
) -> Result<Option<TenantId>, Reason> {
    match path.get(claims) {
        None if required => Err(Reason::TenantClaimMissing),
        None => Ok(None),
        Some(Value::String(s)) => TenantId::parse(s)
            .map(Some)
            .map_err(|_| Reason::TenantClaimInvalid),
        Some(_) => Err(Reason::TenantClaimType),
    }
}

/// `iat`, when present, must be a number no later than now plus the leeway.
pub fn check_iat(claims: &Value, now: u64, leeway: u64) -> Result<(), Reason> {
    match claims.get("iat") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(iat) if iat <= (now + leeway) as f64 => Ok(()),
            Some(_) => Err(Reason::IssuedInFuture),
            None => Err(Reason::ClaimFormat),
        },
        Some(_) => Err(Reason::ClaimFormat),
    }
}

/// Every configured required claim must be present (and not `null`).
pub fn check_required(claims: &Value, required: &[ClaimPath]) -> Result<(), Reason> {
    if required.iter().all(|p| p.get(claims).is_some()) {
        Ok(())
    } else {
        Err(Reason::ClaimMissing)
    }
}

/// Which arms a token's holder may force with `canary.force_header`: the `canary.force_claim`
/// claim, read once at verification (and cached with the token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForcedArms {
    /// No claim, `false`, or a value of another shape: the header is ignored.
    #[default]
    None,
    /// `true`: any arm.
    Any,
    /// A string, or a list of strings: those arms (names that cannot be group names dropped).
    Names(Box<[Box<str>]>),
}

impl ForcedArms {
    /// Reads the claim at `path`; never fails (an odd value permits nothing).
    #[must_use]
    pub fn from_claims(claims: &Value, path: &ClaimPath) -> Self {
        let name = |v: &Value| {
            v.as_str()
                .filter(|s| crate::rules::valid_label(s))
                .map(Box::from)
        };
        match path.get(claims) {
            Some(Value::Bool(true)) => Self::Any,
            Some(v @ Value::String(_)) => {
                name(v).map_or(Self::None, |n| Self::Names(Box::new([n])))
            }
            Some(Value::Array(items)) => {
                let names: Box<[Box<str>]> = items.iter().filter_map(name).collect();
                if names.is_empty() {
                    Self::None
                } else {
                    Self::Names(names)
                }
            }
            _ => Self::None,
        }
    }

    /// Whether the token may force `arm`.
    #[must_use]
    pub fn permits(&self, arm: &str) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::Names(names) => names.iter().any(|n| &**n == arm),
        }
    }
}

/// A claim forwarded to the cell as a header (`auth.forward_claims`).
#[derive(Debug, Clone)]
pub struct ForwardClaim {
    pub claim: ClaimPath,
    pub header: HeaderName,
}

/// The header values for the configured forwarded claims. Strings go as they are, numbers and
/// booleans as JSON, arrays of those comma-joined; objects, values that are not valid header
/// values (control characters) and values over [`MAX_FORWARDED_VALUE`] are left out.
#[must_use]
pub fn forwarded(claims: &Value, forward: &[ForwardClaim]) -> Box<[(HeaderName, HeaderValue)]> {
    forward
        .iter()
        .filter_map(|f| {
            let text = header_text(f.claim.get(claims)?)?;
            if text.len() > MAX_FORWARDED_VALUE {
                return None;
            }
            let value = HeaderValue::from_str(&text).ok()?;
            Some((f.header.clone(), value))
        })
        .collect()
}

fn header_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) if !s.contains(',') => Some(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Some(i.to_string()),
                    _ => None,
                })
                .collect();
            Some(parts?.join(","))
        }
        Value::Null | Value::Object(_) => None,
    }
}

/// A token's scopes from the claim at `path`: a space-separated string (OAuth's `scope`) or a
/// list of strings (`scp`). `None` when the claim is absent or of another shape; names that
/// cannot be entitlement names are dropped, so an odd claim narrows to nothing rather than to
/// something unexpected.
#[must_use]
pub fn scopes(claims: &Value, path: &ClaimPath) -> Option<Box<[Box<str>]>> {
    let keep = |s: &str| crate::rules::valid_entitlement(s).then(|| Box::from(s));
    match path.get(claims)? {
        Value::String(s) => Some(s.split_ascii_whitespace().filter_map(keep).collect()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(keep)
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_find_plain_namespaced_and_nested_claims() {
        let c = json!({"tenant": "acme", "https://example.com/tenant": "globex", "org": {"id": "initech"}, "n": null});
        let get = |p: &str| ClaimPath::parse(p).unwrap().get(&c).cloned();
        assert_eq!(get("tenant"), Some(json!("acme")));
        assert_eq!(get("https://example.com/tenant"), Some(json!("globex")));
        assert_eq!(get("/org/id"), Some(json!("initech")));
        assert_eq!(get("n"), None);
        assert_eq!(get("/org/missing"), None);
        assert!(ClaimPath::parse("").is_err());
        assert!(ClaimPath::parse("/").is_err());
        assert!(ClaimPath::parse("/a//b").is_err());
    }

    #[test]
    fn tenant_claim_must_be_a_valid_string() {
        let p = ClaimPath::parse("t").unwrap();
        assert_eq!(
            tenant(&json!({"t": "acme"}), &p, true)
                .unwrap()
                .unwrap()
                .as_str(),
            "acme"
        );
        assert_eq!(
            tenant(&json!({}), &p, true),
            Err(Reason::TenantClaimMissing)
        );
        assert_eq!(tenant(&json!({}), &p, false), Ok(None));
        assert_eq!(
            tenant(&json!({"t": 42}), &p, true),
            Err(Reason::TenantClaimType)
        );
        assert_eq!(
            tenant(&json!({"t": ["acme"]}), &p, true),
            Err(Reason::TenantClaimType)
        );
        assert_eq!(
            tenant(&json!({"t": "ACME!"}), &p, true),
            Err(Reason::TenantClaimInvalid)
        );
    }

    #[test]
    fn iat_in_the_future_beyond_leeway_is_refused() {
        assert_eq!(check_iat(&json!({}), 1000, 60), Ok(()));
        assert_eq!(check_iat(&json!({"iat": 1060}), 1000, 60), Ok(()));
        assert_eq!(
            check_iat(&json!({"iat": 1061}), 1000, 60),
            Err(Reason::IssuedInFuture)
        );
        assert_eq!(
            check_iat(&json!({"iat": "1000"}), 1000, 60),
            Err(Reason::ClaimFormat)
        );
    }

    #[test]
    fn forced_arms_come_from_true_a_name_or_a_list_of_names() {
        let p = ClaimPath::parse("canary_tester").unwrap();
        let arms = |v: Value| ForcedArms::from_claims(&json!({ "canary_tester": v }), &p);
        assert_eq!(arms(json!(true)), ForcedArms::Any);
        assert!(arms(json!(true)).permits("anything"));
        let one = arms(json!("canary"));
        assert!(one.permits("canary") && !one.permits("stable"));
        let list = arms(json!(["canary", 7, "beta", "not a name"]));
        assert_eq!(
            list,
            ForcedArms::Names(Box::new([Box::from("canary"), Box::from("beta")]))
        );
        assert!(list.permits("beta") && !list.permits("not a name"));
        for none in [
            json!(false),
            json!("x y"),
            json!([]),
            json!([1]),
            json!(1),
            json!({"a": 1}),
            json!(null),
        ] {
            assert_eq!(arms(none.clone()), ForcedArms::None, "{none}");
        }
        assert_eq!(ForcedArms::from_claims(&json!({}), &p), ForcedArms::None);
        assert!(!ForcedArms::None.permits("canary"));
        let nested = ClaimPath::parse("/flags/arm").unwrap();
        let got = ForcedArms::from_claims(&json!({"flags": {"arm": "canary"}}), &nested);
        assert!(got.permits("canary"));
    }

    #[test]
    fn forwards_scalars_and_lists_but_not_objects_or_control_characters() {
        let h = |n: &str| HeaderName::from_bytes(n.as_bytes()).unwrap();
        let fwd = |claim: &str, header: &str| ForwardClaim {
            claim: ClaimPath::parse(claim).unwrap(),
            header: h(header),
        };
        let c = json!({"sub": "u1", "admin": true, "roles": ["a", "b"], "obj": {"x": 1}, "bad": "x\ny", "lvl": 3});
        let out = forwarded(
            &c,
            &[
                fwd("sub", "x-sub"),
                fwd("admin", "x-admin"),
                fwd("roles", "x-roles"),
                fwd("obj", "x-obj"),
                fwd("bad", "x-bad"),
                fwd("lvl", "x-lvl"),
                fwd("missing", "x-missing"),
            ],
        );
        let got: Vec<(String, String)> = out
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-sub", "u1"),
                ("x-admin", "true"),
                ("x-roles", "a,b"),
                ("x-lvl", "3")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }
}
