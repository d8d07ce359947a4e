//! The *entitle* stage: which entitlement a request's route needs, and whether the key and the
//! token that speak for the tenant reach that far.
//!
//! `[[entitlements.routes]]` become a tree of path segments built once per config
//! ([`Routes`]): a request walks it along its canonical path ([`crate::paths`]), one segment a
//! level, and the most specific route whose methods match decides (an exact `path` over a
//! `path_prefix` at the same depth, a route naming methods over one that does not). One
//! entitlement per request. With no route configured, [`Routes::required`] returns at once.
//!
//! The tenant's own entitlements are in its registry record, so that half of the check runs
//! with the placement decision (`routing`); here are the narrowing halves, which need no
//! snapshot: an API key with scopes and a token carrying `entitlements.token_scope_claim`
//! reach only what they name.

use std::sync::Arc;

use http::Method;

use crate::config::{EntitlementRoute, EntitlementsConfig, RoutePath};
use crate::paths::canonical_path;

/// Who lacked the entitlement a route needs (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The tenant's record does not list it.
    Tenant,
    /// The API key's scopes do not name it.
    Key,
    /// The token's scope claim does not name it.
    Token,
}

impl Holder {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Key => "key",
            Self::Token => "token",
        }
    }
}

/// A route's entitlement is missing: 403 `not_entitled`, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not entitled to `{entitlement}` ({})", .by.as_str())]
pub struct NotEntitled {
    pub entitlement: Arc<str>,
    pub by: Holder,
}

#[derive(Debug)]
struct Rule {
    /// Empty: every method.
    methods: Vec<Method>,
    entitlement: Arc<str>,
}

#[derive(Debug, Default)]
struct Node {
    /// Lower-cased segment and subtree.
    children: Vec<(Box<str>, Self)>,
    /// Routes covering this path and everything below (method-specific first).
    prefix: Vec<Rule>,
    /// Routes covering this path only (method-specific first).
    exact: Vec<Rule>,
}

impl Node {
    fn child(&self, segment: &str) -> Option<&Self> {
        self.children
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(segment))
            .map(|(_, n)| n)
    }

    fn child_mut(&mut self, segment: &str) -> &mut Self {
        let at = match self.children.iter().position(|(s, _)| **s == *segment) {
            Some(i) => i,
            None => {
                self.children.push((Box::from(segment), Self::default()));
                self.children.len() - 1
            }
        };
        &mut self.children[at].1
    }
}

fn pick<'a>(rules: &'a [Rule], method: &Method) -> Option<&'a Arc<str>> {
    rules
        .iter()
        .find(|r| r.methods.is_empty() || r.methods.contains(method))
        .map(|r| &r.entitlement)
}

/// The route tree of one config.
#[derive(Debug, Default)]
pub struct Routes {
    root: Node,
    empty: bool,
}

impl Routes {
    /// The tree of `[[entitlements.routes]]` (validated by the config loader).
    #[must_use]
    pub fn new(cfg: &EntitlementsConfig) -> Self {
        let mut root = Node::default();
        for r in &cfg.routes {
            add(&mut root, r);
        }
        sort(&mut root);
        Self {
            root,
            empty: cfg.routes.is_empty(),
        }
    }

    /// The entitlement the route of (`method`, `path`) needs, if any.
    #[must_use]
    pub fn required(&self, method: &Method, path: &str) -> Option<&Arc<str>> {
        if self.empty {
            return None;
        }
        let path = canonical_path(path);
        let mut node = &self.root;
        let mut need = pick(&node.prefix, method);
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            match node.child(segment) {
                Some(next) => node = next,
                None => return need,
            }
            if let Some(n) = pick(&node.prefix, method) {
                need = Some(n);
            }
        }
        pick(&node.exact, method).or(need)
    }
}

fn add(root: &mut Node, r: &EntitlementRoute) {
    let (text, exact) = match &r.path {
        RoutePath::Prefix(p) => (p.as_str(), false),
        RoutePath::Exact(p) => (p.as_str(), true),
    };
    let canonical = canonical_path(text).to_ascii_lowercase();
    let mut node = root;
    for segment in canonical.split('/').filter(|s| !s.is_empty()) {
        node = node.child_mut(segment);
    }
    let rule = Rule {
        methods: r.methods.clone(),
        entitlement: Arc::from(r.entitlement.as_str()),
    };
    if exact {
        node.exact.push(rule);
    } else {
        node.prefix.push(rule);
    }
}

/// Method-specific rules first (a stable sort: the config's order otherwise).
fn sort(node: &mut Node) {
    node.prefix.sort_by_key(|r| r.methods.is_empty());
    node.exact.sort_by_key(|r| r.methods.is_empty());
    for (_, child) in &mut node.children {
        sort(child);
    }
}

/// Whether a key's scopes and a token's scopes both reach `need` (`None`: no narrowing).
pub fn within_scopes(
    need: &Arc<str>,
    key: Option<&[Box<str>]>,
    token: Option<&[Box<str>]>,
) -> Result<(), NotEntitled> {
    let names = |list: &[Box<str>]| list.iter().any(|s| **s == **need);
    for (list, by) in [(key, Holder::Key), (token, Holder::Token)] {
        if list.is_some_and(|l| !names(l)) {
            return Err(NotEntitled {
                entitlement: Arc::clone(need),
                by,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn route(entitlement: &str, methods: &[&str], path: RoutePath) -> EntitlementRoute {
        EntitlementRoute {
            entitlement: entitlement.to_owned(),
            methods: methods
                .iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET))
                .collect(),
            path,
        }
    }

    fn routes() -> Routes {
        let p = |s: &str| RoutePath::Prefix(s.to_owned());
        let e = |s: &str| RoutePath::Exact(s.to_owned());
        Routes::new(&EntitlementsConfig {
            routes: vec![
                route("api", &[], p("/v1")),
                route("billing", &[], p("/v1/billing")),
                route("billing-admin", &["POST", "DELETE"], p("/v1/billing")),
                route("export", &[], e("/v1/reports/export")),
                route("sso", &["GET"], e("/v1/sso/")),
            ],
            token_scope_claim: None,
        })
    }

    #[test]
    fn the_most_specific_route_decides_by_method_and_segment() {
        let r = routes();
        let need = |m: Method, p: &str| r.required(&m, p).map(|s| s.to_string());
        assert_eq!(need(Method::GET, "/v1/users"), Some("api".into()));
        assert_eq!(
            need(Method::GET, "/v1/billing/invoices"),
            Some("billing".into())
        );
        assert_eq!(
            need(Method::POST, "/v1/billing/invoices"),
            Some("billing-admin".into())
        );
        assert_eq!(
            need(Method::POST, "/v1/billing"),
            Some("billing-admin".into())
        );
        // Whole segments only: a longer name is another route.
        assert_eq!(need(Method::GET, "/v1/billings"), Some("api".into()));
        // An exact path covers itself only.
        assert_eq!(
            need(Method::GET, "/v1/reports/export"),
            Some("export".into())
        );
        assert_eq!(
            need(Method::GET, "/v1/reports/export/x"),
            Some("api".into())
        );
        assert_eq!(need(Method::GET, "/v1/sso"), Some("sso".into()));
        assert_eq!(need(Method::POST, "/v1/sso"), Some("api".into()));
        assert_eq!(need(Method::GET, "/v2/x"), None);
        assert_eq!(need(Method::GET, "/"), None);
    }

    #[test]
    fn disguised_paths_need_what_the_plain_one_needs() {
        let r = routes();
        for p in [
            "/V1/Billing/x",
            "//v1//billing",
            "/v1/%62illing",
            "/v1/x/../billing",
            "/v1/billing;a=b/x",
            "/v1/./billing",
        ] {
            assert_eq!(
                r.required(&Method::GET, p).map(|s| &**s),
                Some("billing"),
                "{p}"
            );
        }
    }

    #[test]
    fn no_routes_need_nothing() {
        let r = Routes::new(&EntitlementsConfig::default());
        assert_eq!(r.required(&Method::GET, "/anything"), None);
    }

    #[test]
    fn scopes_narrow_and_name_who_lacked_it() {
        let need: Arc<str> = Arc::from("billing");
        let list = |v: &[&str]| v.iter().map(|s| Box::from(*s)).collect::<Vec<Box<str>>>();
        let (has, lacks) = (list(&["billing", "x"]), list(&["reports"]));
        assert!(within_scopes(&need, None, None).is_ok());
        assert!(within_scopes(&need, Some(&has), Some(&has)).is_ok());
        let e = within_scopes(&need, Some(&lacks), None).unwrap_err();
        assert_eq!((&*e.entitlement, e.by), ("billing", Holder::Key));
        let e = within_scopes(&need, Some(&has), Some(&lacks)).unwrap_err();
        assert_eq!(e.by, Holder::Token);
        assert!(within_scopes(&need, Some(&[]), None).is_err());
    }
}
