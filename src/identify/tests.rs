//! The identify stage over real verifiers and tokens: sources, precedence, agreement, trust.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use http::HeaderName;
use std::net::IpAddr;

use crate::auth::testing::{KEYS, block, verifier_from};
use crate::auth::{AuthError, TokenMemo, Verifier};
use crate::config::{TenantConfig, TenantHeaderConfig};
use crate::demo::{TokenSpec, mint};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "cellgate";
const BOUND: &str = "https://globex-idp.test";

fn domains(list: &[&str]) -> Vec<String> {
    list.iter().map(|d| (*d).to_owned()).collect()
}

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn config(sources: &[TenantSource]) -> TenantConfig {
    TenantConfig {
        sources: sources.to_vec(),
        base_domains: domains(&["eu.example.com", "example.com"]),
        header: Some(TenantHeaderConfig {
            name: HeaderName::from_static("x-tenant"),
            trusted_sources: vec!["10.0.0.0/8".parse().unwrap()],
        }),
        route_policy: crate::config::RoutePolicy::default(),
        api_key: sources
            .contains(&TenantSource::ApiKey)
            .then(|| crate::config::ApiKeyConfig {
                header: HeaderName::from_static("x-api-key"),
            }),
    }
}

/// Two keys held in memory (acme's, with a scope, and globex's), checked as the snapshot
/// checks them: by id, then the secret against the stored hash.
struct Keys(Vec<(crate::apikey::NewKey, &'static str)>);

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || crate::apikey::generate().unwrap();
        Keys(vec![(make(), "acme"), (make(), "globex")])
    })
}

fn key_of(tenant: &str) -> &'static str {
    &keys().0.iter().find(|(_, t)| *t == tenant).unwrap().0.key
}

impl KeyCheck for Keys {
    async fn check(&self, key: crate::apikey::ParsedKey<'_>) -> Result<KeyGrant, KeyFailure> {
        let Some((k, tenant)) = self.0.iter().find(|(k, _)| k.id == key.id) else {
            return Err(KeyFailure::Refused(KeyRefusal::Unknown));
        };
        if !k.hash.verifies(&key) {
            return Err(KeyFailure::Refused(KeyRefusal::WrongSecret));
        }
        Ok(KeyGrant::new(&key, tid(tenant), None))
    }
}

/// Two issuers sharing the fixture Ed25519 key: ISSUER (any tenant) and BOUND (globex only).
fn verifier(required: bool) -> Verifier {
    let text = format!(
        r#"
required = {required}
[[issuers]]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
[[issuers.keys]]
kid = "ed-1"
algorithm = "EdDSA"
public_key_file = "ed25519.pub.pem"
[[issuers]]
issuer = "{BOUND}"
audiences = ["{AUDIENCE}"]
tenants = ["globex"]
[[issuers.keys]]
kid = "ed-1"
algorithm = "EdDSA"
public_key_file = "ed25519.pub.pem"
"#
    );
    verifier_from(&text)
}

/// An EdDSA token for `tenant` from ISSUER, signed with the fixture key (subject `user-1`).
fn token(tenant: &str) -> String {
    token_from(ISSUER, tenant)
}

fn token_from(issuer: &str, tenant: &str) -> String {
    let mut spec = TokenSpec::demo(tenant);
    (spec.issuer, spec.audience) = (issuer.to_owned(), AUDIENCE.to_owned());
    (spec.kid, spec.subject) = (Some("ed-1".to_owned()), "user-1".to_owned());
    spec.key_pem = std::fs::read(format!("{KEYS}/ed25519.pem")).unwrap();
    mint(&spec).unwrap()
}

const OUTSIDE: &str = "192.0.2.1";
const TRUSTED: &str = "10.1.2.3";

/// One identify call: a request for `host` from `peer`, under the given sources.
struct Case {
    sources: Vec<TenantSource>,
    host: &'static str,
    headers: Vec<(&'static str, String)>,
    peer: &'static str,
    required: bool,
}

fn case(sources: &[TenantSource], host: &'static str) -> Case {
    let (headers, peer, required) = (Vec::new(), OUTSIDE, false);
    let sources = sources.to_vec();
    Case {
        sources,
        host,
        headers,
        peer,
        required,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn bearer(self, tenant: &str) -> Self {
        self.header("authorization", &format!("Bearer {}", token(tenant)))
    }
    fn bearer_from(self, issuer: &str, tenant: &str) -> Self {
        let t = token_from(issuer, tenant);
        self.header("authorization", &format!("Bearer {t}"))
    }
    fn from(self, peer: &'static str) -> Self {
        Self { peer, ..self }
    }
    fn run(&self) -> Result<Identity, IdentifyError> {
        let mut b = http::Request::builder()
            .uri("/orders")
            .header("host", self.host);
        for (k, v) in &self.headers {
            b = b.header(*k, v.as_str());
        }
        let parts = b.body(()).unwrap().into_parts().0;
        let peer: IpAddr = self.peer.parse().unwrap();
        block(identify(
            &parts,
            peer,
            &config(&self.sources),
            &verifier(self.required),
            &TokenMemo::default(),
            keys(),
        ))
    }
    fn found(&self) -> (TenantId, TenantSource) {
        let id = self.run().unwrap();
        (id.tenant, id.source)
    }
    fn tenant_err(&self) -> TenantError {
        match self.run() {
            Err(IdentifyError::Tenant(e)) => e,
            other => panic!("expected a tenant error, got {other:?}"),
        }
    }
    fn auth_err(&self) -> AuthError {
        match self.run() {
            Err(IdentifyError::Auth(e)) => e,
            other => panic!("expected an auth error, got {other:?}"),
        }
    }
}

use TenantSource::{ApiKey, Header, Jwt, Subdomain};

#[test]
fn an_issuer_bound_to_other_tenants_cannot_speak_for_this_one() {
    // Bound issuer, its own tenant: fine, by token or by subdomain.
    let c = case(&[Jwt, Subdomain], "globex.example.com").bearer_from(BOUND, "globex");
    assert_eq!(c.found(), (tid("globex"), Jwt));
    // Bound issuer minting for acme: refused, whichever source named acme.
    let c = case(&[Jwt], "api.other.net").bearer_from(BOUND, "acme");
    assert_eq!(c.auth_err(), AuthError::IssuerNotAllowed);
    let c = case(&[Jwt, Subdomain], "acme.example.com").bearer_from(BOUND, "acme");
    assert_eq!(c.auth_err(), AuthError::IssuerNotAllowed);
    // The unbound issuer may speak for anyone.
    let c = case(&[Jwt], "api.other.net").bearer("acme");
    assert_eq!(c.found(), (tid("acme"), Jwt));
}

#[test]
fn identify_by_subdomain_only() {
    let id = case(&[Subdomain], "acme.example.com:8443").run().unwrap();
    assert_eq!((id.tenant, id.source), (tid("acme"), Subdomain));
    assert!(id.token.is_none());
}

#[test]
fn subdomain_from_uri_authority_wins_over_host_header() {
    let req = http::Request::builder()
        .uri("http://acme.example.com/x")
        .header("host", "globex.example.com");
    let p = req.body(()).unwrap().into_parts().0;
    assert_eq!(request_host(&p), Some(&b"acme.example.com"[..]));
    let (cfg, v) = (config(&[Subdomain]), verifier(false));
    let id = block(identify(
        &p,
        OUTSIDE.parse().unwrap(),
        &cfg,
        &v,
        &TokenMemo::default(),
        keys(),
    ))
    .unwrap();
    assert_eq!(id.tenant, tid("acme"));
}

#[test]
fn identify_by_jwt_only() {
    let id = case(&[Jwt], "api.other.net").bearer("acme").run().unwrap();
    assert_eq!((id.tenant, id.source), (tid("acme"), Jwt));
    assert_eq!(id.token.unwrap().subject.as_deref(), Some("user-1"));
}

#[test]
fn jwt_and_subdomain_agree_or_mismatch() {
    let id = case(&[Jwt, Subdomain], "acme.example.com")
        .bearer("acme")
        .run();
    let id = id.unwrap();
    assert_eq!((id.tenant, id.source), (tid("acme"), Jwt));
    assert!(id.token.is_some());
    let c = case(&[Jwt, Subdomain], "globex.example.com").bearer("acme");
    let (a, b) = ("jwt", "subdomain");
    assert_eq!(c.tenant_err(), TenantError::Mismatch { a, b });
    // The order of the sources decides which one is named first.
    let c = case(&[Subdomain, Jwt], "globex.example.com").bearer("acme");
    let (a, b) = ("subdomain", "jwt");
    assert_eq!(c.tenant_err(), TenantError::Mismatch { a, b });
}

#[test]
fn header_is_used_from_a_trusted_peer_only() {
    let src = [Header, Subdomain];
    let c = case(&src, "api.other.net").header("x-tenant", "acme");
    assert_eq!(c.from(TRUSTED).found(), (tid("acme"), Header));
    // Untrusted: ignored, so nothing names a tenant.
    let c = case(&src, "api.other.net").header("x-tenant", "acme");
    assert_eq!(c.tenant_err(), TenantError::Missing);
    // Untrusted and contradicting the subdomain: ignored, not a mismatch.
    let c = case(&src, "globex.example.com").header("x-tenant", "acme");
    assert_eq!(c.found(), (tid("globex"), Subdomain));
    // Trusted but invalid: an error, not a silent skip.
    let c = case(&src, "api.other.net").header("x-tenant", "Not Valid");
    let err = c.from(TRUSTED).tenant_err();
    assert!(matches!(err, TenantError::Invalid(_)), "{err:?}");
}

#[test]
fn required_auth_without_token_is_missing_auth() {
    let c = Case {
        required: true,
        ..case(&[Subdomain], "acme.example.com")
    };
    assert_eq!(c.auth_err(), AuthError::Missing);
}

#[test]
fn jwt_source_and_nothing_found_is_missing_auth() {
    let c = case(&[Jwt, Subdomain], "www.other.net");
    assert_eq!(c.auth_err(), AuthError::Missing);
}

#[test]
fn only_subdomain_and_nothing_found_is_missing_tenant() {
    for host in ["example.com", "www.other.net"] {
        assert_eq!(case(&[Subdomain], host).tenant_err(), TenantError::Missing);
    }
}

#[test]
fn a_bearer_token_is_always_verified_when_issuers_are_configured() {
    let (h, v) = ("authorization", "Bearer not.a.jwt");
    for sources in [&[Jwt, Subdomain][..], &[Subdomain][..]] {
        let err = case(sources, "acme.example.com").header(h, v).auth_err();
        assert!(matches!(err, AuthError::Invalid(_)), "{sources:?}: {err:?}");
    }
    // Another scheme is not ours to judge.
    let id = case(&[Subdomain], "acme.example.com")
        .header(h, "Basic dXNlcjpwdw==")
        .run()
        .unwrap();
    assert!(id.token.is_none());
}

#[test]
fn a_token_for_another_tenant_is_refused_even_with_the_jwt_source_off() {
    let c = case(&[Subdomain], "globex.example.com").bearer("acme");
    let (a, b) = ("subdomain", "jwt");
    assert_eq!(c.tenant_err(), TenantError::Mismatch { a, b });
    let id = case(&[Subdomain], "acme.example.com")
        .bearer("acme")
        .run()
        .unwrap();
    assert_eq!(id.tenant, tid("acme"));
    assert!(id.token.is_some());
}

#[test]
fn a_later_source_decides_when_an_earlier_one_finds_nothing() {
    // Subdomain comes first but the host is foreign; the token names the tenant.
    let c = case(&[Subdomain, Jwt], "www.other.net").bearer("globex");
    assert_eq!(c.found(), (tid("globex"), Jwt));
}

#[test]
fn a_host_that_is_a_base_domain_names_no_tenant_even_under_a_shorter_one() {
    let d = domains(&["eu.example.com", "example.com"]);
    assert_eq!(tenant_from_host(b"eu.example.com", &d), Ok(None));
    assert_eq!(tenant_from_host(b"EU.Example.com.:443", &d), Ok(None));
    assert_eq!(
        tenant_from_host(b"acme.eu.example.com", &d),
        Ok(Some(tid("acme")))
    );
}

#[test]
fn a_trusted_ipv4_peer_on_a_dual_stack_listener_is_still_trusted() {
    let c = case(&[Header], "api.other.net")
        .header("x-tenant", "acme")
        .from("::ffff:10.1.2.3");
    assert_eq!(c.found(), (tid("acme"), Header));
}

fn key_err(c: &Case) -> KeyRefusal {
    match c.run() {
        Err(IdentifyError::Key(r)) => r,
        other => panic!("expected a key refusal, got {other:?}"),
    }
}

#[test]
fn a_key_names_its_tenant_from_either_place() {
    let (id, source) = case(&[ApiKey], "api.other.net")
        .header("x-api-key", key_of("acme"))
        .found();
    assert_eq!((id, source), (tid("acme"), ApiKey));
    let auth = format!("ApiKey {}", key_of("globex"));
    let id = case(&[ApiKey], "api.other.net")
        .header("authorization", &auth)
        .run()
        .unwrap();
    assert_eq!(id.tenant, tid("globex"));
    assert_eq!(id.key.unwrap().id(), keys().0[1].0.id);
}

#[test]
fn a_key_must_agree_with_the_subdomain_and_the_token() {
    let ok = case(&[Subdomain, ApiKey], "acme.example.com")
        .header("x-api-key", key_of("acme"))
        .found();
    assert_eq!(ok, (tid("acme"), Subdomain));
    let host = case(&[Subdomain, ApiKey], "globex.example.com").header("x-api-key", key_of("acme"));
    assert_eq!(
        host.tenant_err(),
        TenantError::Mismatch {
            a: "subdomain",
            b: "api_key"
        }
    );
    let token = case(&[ApiKey, Jwt], "api.other.net")
        .header("x-api-key", key_of("acme"))
        .bearer("globex");
    assert!(matches!(token.tenant_err(), TenantError::Mismatch { .. }));
    // A key checked even when another source named the tenant first.
    let unknown = case(&[Subdomain, ApiKey], "acme.example.com")
        .header("x-api-key", "cgk_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(key_err(&unknown), KeyRefusal::Unknown);
}

#[test]
fn bad_keys_are_refused_with_their_reason() {
    let with = |k: &str| case(&[ApiKey], "api.other.net").header("x-api-key", k);
    assert_eq!(key_err(&with("not-a-key")), KeyRefusal::Malformed);
    assert_eq!(
        key_err(&with("cgk_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaa")),
        KeyRefusal::Unknown
    );
    // The right id with another secret.
    let acme = key_of("acme");
    let forged = format!(
        "{}{}",
        &acme[..acme.len() - 1],
        if acme.ends_with('a') { 'b' } else { 'a' }
    );
    assert_eq!(key_err(&with(&forged)), KeyRefusal::WrongSecret);
    assert_eq!(
        key_err(&case(&[ApiKey], "api.other.net")),
        KeyRefusal::Missing
    );
    // Without the api_key source, a key header is no one's business here.
    let ignored = case(&[Subdomain], "acme.example.com").header("x-api-key", "junk");
    assert_eq!(ignored.found(), (tid("acme"), Subdomain));
}
