//! Production JWT validation end to end: a real proxy, real cells, a JWKS endpoint under the
//! test's control. A refusal is checked for status, `error` code, `reason` label, and that no
//! cell saw it (no `routed` request in the metrics; the answer is the proxy's JSON, not a cell's).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::jwks::{JwksServer, Mode, b64url, claims, craft, header, jwk, key_set};
use common::jwks::{mint, mint_raw, mint_with_header, now, patch, sign};
use common::{AUDIENCE, DEFAULT_TENANTS, Harness, ISSUER, Reply, cell_list, fixture, registry};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm::{ES256, EdDSA, HS256, RS256};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};

/// Longest wait for anything the proxy does in the background.
const WAIT: Duration = Duration::from_secs(5);
const INVALID: (StatusCode, &str) = (StatusCode::UNAUTHORIZED, "invalid_token");
const FORBIDDEN: (StatusCode, &str) = (StatusCode::FORBIDDEN, "issuer_not_allowed");
const UP: &str = "cellgate_jwks_up{issuer=\"idp\"}";
const FETCH_ERRORS: &str = "cellgate_jwks_fetches_total{issuer=\"idp\",result=\"error\"}";
const SUPPRESSED: &str = "cellgate_jwks_refetch_suppressed_total{issuer=\"idp\"}";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The proxy config around an `[auth]` section (tenant from the token, then the subdomain).
fn config(auth: &str) -> String {
    let upstream = r#"{ connect_timeout = "500ms", read_timeout = "5s", total_timeout = "10s" }"#;
    format!(
        r#"server = {{ workers = 2, shutdown_grace = "1s" }}
listeners = [{{ address = "127.0.0.1:0" }}]
admin = {{ address = "127.0.0.1:0" }}
tenant = {{ sources = ["jwt", "subdomain"], base_domains = ["app.test"] }}
registry = {{ source = "file", path = "registry.toml", poll_interval = "20ms" }}
upstream = {upstream}
access_log = {{ enabled = false }}
log = {{ level = "error" }}
{auth}
"#
    )
}

/// An `[[auth.issuers]]` entry; `body` holds its other fields, then its tables.
fn issuer(name: &str, iss: &str, body: &str) -> String {
    format!(
        "[[auth.issuers]]\nname = \"{name}\"\nissuer = \"{iss}\"\n\
         audiences = [\"{AUDIENCE}\"]\n{body}\n"
    )
}

/// The `idp` issuer (`ISSUER`) on `server`, with a 30 s cooldown the tests never wait out.
fn idp(server: &JwksServer, refresh: &str) -> String {
    let url = server.url();
    let jwks = format!(
        "[auth.issuers.jwks]\nurl = \"{url}\"\nrefresh = \"{refresh}\"\ncooldown = \"30s\"\n\
         timeout = \"2s\"\nmax_bytes = 4096\n"
    );
    issuer("idp", ISSUER, &jwks)
}

/// A static key of the issuer above it (`field` is `public_key_file` or `secret_file`).
fn static_key(kid: &str, alg: &str, field: &str, file: &str) -> String {
    let path = fixture(file);
    format!("[[auth.issuers.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\n{field} = {path:?}\n")
}

/// The HS256 key `hs`, read with `secret_file`.
fn hs_key() -> String {
    static_key("hs", "HS256", "secret_file", "hmac.secret")
}

/// A JWKS server publishing `keys`; its attacker path publishes rsa2 as `k-rsa` and `evil`.
async fn jwks_with(keys: &[Value]) -> JwksServer {
    let attacker = key_set(&[jwk("rsa2", "k-rsa", None), jwk("rsa2", "evil", None)]);
    JwksServer::start(key_set(keys), attacker).await
}

/// Starts the proxy (3 cells, the default tenants) with `auth`; `edit` may change the registry.
async fn start(auth: &str, edit: impl Fn(String) -> String) -> Harness {
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    let reg = edit(registry(&cell_list(&cells), DEFAULT_TENANTS));
    Harness::start_raw(&config(auth), &reg, cells).await
}

/// GET / with an optional host, an optional bearer token and extra headers.
async fn call(h: &Harness, host: Option<&str>, token: Option<&str>, hs: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(format!("http://{}/", h.addr));
    if let Some(host) = host {
        b = b.header("host", host);
    }
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in hs {
        b = b.header(*k, *v);
    }
    h.send(b.body(Full::default()).unwrap()).await
}

/// GET / with just `token`.
async fn tok(h: &Harness, token: &str) -> Reply {
    call(h, None, Some(token), &[]).await
}

async fn scrape(h: &Harness) -> String {
    h.admin_get("/metrics").await.unwrap().body
}

/// The first issuer in `/admin/auth`.
async fn auth_status(h: &Harness) -> Value {
    h.admin_get("/admin/auth").await.unwrap().json()["issuers"][0].clone()
}

/// The value of one series (`name{labels}` exactly as exported), 0 when absent.
fn value(metrics: &str, series: &str) -> f64 {
    let parse = |l: &str| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok();
    metrics.lines().find_map(parse).unwrap_or(0.0)
}

fn rejections(metrics: &str, reason: &str) -> f64 {
    let series = format!("cellgate_jwt_rejections_total{{reason=\"{reason}\"}}");
    value(metrics, &series)
}

fn verifications(metrics: &str, result: &str) -> f64 {
    let series = format!("cellgate_jwt_verifications_total{{result=\"{result}\"}}");
    value(metrics, &series)
}

/// Requests the proxy forwarded to any cell.
fn routed(metrics: &str) -> f64 {
    let routed =
        |l: &&str| l.starts_with("cellgate_http_requests_total{") && l.contains("=\"routed\"");
    let parse = |l: &str| l.rsplit(' ').next()?.parse::<f64>().ok();
    metrics.lines().filter(routed).filter_map(parse).sum()
}

/// Polls `probe` every 20 ms until it yields something, for at most [`WAIT`].
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let poll = async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let res = tokio::time::timeout(WAIT, poll).await;
    res.unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn wait_for(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    until(what, async || probe().await.then_some(())).await;
}

/// The proxy itself answered `status` with `code` (an echo cell's JSON has `target`).
fn assert_refused(r: &Reply, (status, code): (StatusCode, &str), what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let v = r.json();
    assert_eq!(v["error"], code, "{what}");
    assert!(v.get("target").is_none(), "{what}: {}", r.body);
}

fn assert_routed(r: &Reply, cell: &str, what: &str) {
    assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.body);
    assert_eq!(r.json()["cell"], cell, "{what}");
}

/// Sends `token`: refused as `expect`, counted once under `reason`, never echoed.
async fn refused(h: &Harness, what: &str, token: &str, expect: (StatusCode, &str), reason: &str) {
    let before = rejections(&scrape(h).await, reason);
    let r = tok(h, token).await;
    assert_refused(&r, expect, what);
    assert!(!r.body.contains(token), "{what}: the token was echoed");
    let after = rejections(&scrape(h).await, reason);
    assert_eq!(after - before, 1.0, "{what}: not counted as {reason}");
}

fn acme() -> Value {
    claims(ISSUER, AUDIENCE, "acme")
}

/// An RS256 token signed with the fixture `rsa` key under `kid`.
fn rs(kid: &str, claims: &Value) -> String {
    mint(RS256, "rsa.pem", Some(kid), claims)
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `n` tokens naming random unknown kids, 50 at a time; every one must be 401. The
/// signature is junk: the kid is looked up before any signature check.
async fn flood(h: &Harness, n: usize) {
    let (client, addr, junk) = (client(), h.addr, b64url(b"junk"));
    for _ in 0..n / 50 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let kid = format!("r{}", fastrand::u64(..));
            let head = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
            let auth = format!("Bearer {}", craft(&head, &acme(), &junk));
            let req = Request::get(format!("http://{addr}/")).header("authorization", auth);
            let c = client.clone();
            batch.spawn(async move { c.request(req.body(Full::default()).unwrap()).await });
        }
        while let Some(done) = batch.join_next().await {
            assert_eq!(done.unwrap().unwrap().status(), StatusCode::UNAUTHORIZED);
        }
    }
}

// Property: valid RS256, ES256, EdDSA (JWKS) and HS256 (secret_file) tokens reach their cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_of_each_algorithm_route_to_the_tenants_cell() {
    let rsa = jwk("rsa", "k-rsa", Some("RS256"));
    let ec = jwk("ec", "k-ec", Some("ES256"));
    let server = jwks_with(&[rsa, ec, jwk("ed25519", "k-ed", None)]).await;
    let h = start(&(idp(&server, "10m") + &hs_key()), |r| r).await;
    let cases = [
        (RS256, "rsa.pem", "k-rsa", "acme", "cell-1"),
        (ES256, "ec.pem", "k-ec", "globex", "cell-2"),
        (EdDSA, "ed25519.pem", "k-ed", "initech", "cell-3"),
        (HS256, "hmac.secret", "hs", "globex", "cell-2"),
    ];
    for (alg, file, kid, tenant, cell) in cases {
        let token = mint(alg, file, Some(kid), &claims(ISSUER, AUDIENCE, tenant));
        let r = tok(&h, &token).await;
        assert_routed(&r, cell, &format!("{alg:?}"));
        assert_eq!(r.json()["tenant"], tenant);
    }
    let now = now();
    let late = json!({"exp": now - 20, "iat": now - 600});
    for p in [late, json!({"nbf": now + 20})] {
        let r = tok(&h, &rs("k-rsa", &patch(&acme(), p.clone()))).await;
        assert_routed(&r, "cell-1", &format!("within leeway: {p}"));
    }
    assert_eq!(server.fetches(), 1, "known kids must not refetch");
    assert_eq!(routed(&scrape(&h).await), 6.0);
    h.shutdown().await;
}

// Attacks: alg none, RS/HS confusion, bad claims, hostile kid/jwk/jku/x5u/crit: all 401, no cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_invalid_tokens_are_401_and_never_reach_a_cell() {
    let server = jwks_with(&[jwk("rsa", "k-rsa", None)]).await;
    let h = start(&(idp(&server, "10m") + &hs_key()), |r| r).await;
    let (ok, now, evil_url) = (acme(), now(), server.attacker_url());
    let good = rs("k-rsa", &ok);
    let sig = good.rsplit('.').next().unwrap();
    let none = |alg: &str, sig: &str| craft(&json!({"alg": alg, "typ": "JWT"}), &ok, sig);
    // Algorithm confusion: the RSA public key's PEM bytes as an HMAC secret.
    let pem = EncodingKey::from_secret(&std::fs::read(fixture("rsa.pub.pem")).unwrap());
    let hs = |kid: Option<&str>| sign(&header(HS256, kid), &ok, &pem);
    let c = |p: Value| rs("k-rsa", &patch(&ok, p));
    let rs256 = |head: Value| patch(&json!({"alg": "RS256"}), head);
    let rsa = |head: Value| mint_with_header(rs256(head), &ok, "rsa.pem");
    // The attacker signs with rsa2 and points at its own key from the header.
    let evil = |head: Value| mint_with_header(rs256(head), &ok, "rsa2.pem");
    let evil_jwk = jwk("rsa2", "k-rsa", None);
    let twice = format!(r#"{{"iss":"https://evil.test",{}"#, &ok.to_string()[1..]);
    let twice_iss = mint_raw(RS256, "rsa.pem", r#"{"alg":"RS256","kid":"k-rsa"}"#, &twice);
    #[rustfmt::skip]
    let cases = [
        ("alg none, no signature", "malformed", none("none", "")),
        ("alg none, signature", "malformed", none("none", sig)),
        ("alg None, no signature", "malformed", none("None", "")),
        ("alg None, signature", "malformed", none("None", sig)),
        ("alg NONE, no signature", "malformed", none("NONE", "")),
        ("alg NONE, signature", "malformed", none("NONE", sig)),
        ("alg nOnE, no signature", "malformed", none("nOnE", "")),
        ("alg nOnE, signature", "malformed", none("nOnE", sig)),
        ("HS256 with the RSA PEM, kid k-rsa", "algorithm", hs(Some("k-rsa"))),
        ("HS256 with the RSA PEM, no kid", "signature", hs(None)),
        ("expired beyond leeway", "expired", c(json!({"exp": now - 300, "iat": now - 900}))),
        ("nbf beyond leeway", "not_yet_valid", c(json!({"nbf": now + 300}))),
        ("iat beyond leeway", "issued_in_future", c(json!({"iat": now + 300}))),
        ("iss twice, another's then ours", "malformed", twice_iss),
        ("wrong iss", "issuer", c(json!({"iss": "https://evil.test"}))),
        ("wrong aud", "audience", c(json!({"aud": "someone-else"}))),
        ("no tenant claim", "tenant_claim_missing", c(json!({"tenant": null}))),
        ("numeric tenant claim", "tenant_claim_type", c(json!({"tenant": 42}))),
        ("array tenant claim", "tenant_claim_type", c(json!({"tenant": ["acme"]}))),
        // The first unknown kid: the one refetch this test allows.
        ("unknown kid", "unknown_kid", rs("k-unknown", &ok)),
        ("kid ../../etc/passwd", "bad_kid", rs("../../etc/passwd", &ok)),
        ("kid ' OR 1=1 --", "bad_kid", rs("' OR 1=1 --", &ok)),
        ("crit header", "critical_header", rsa(json!({"kid": "k-rsa", "crit": ["exp"]}))),
        ("embedded jwk, no kid", "signature", evil(json!({"jwk": evil_jwk}))),
        ("embedded jwk, kid k-rsa", "signature", evil(json!({"jwk": evil_jwk, "kid": "k-rsa"}))),
        ("jku, kid evil", "unknown_kid", evil(json!({"jku": evil_url, "kid": "evil"}))),
        ("jku, kid k-rsa", "signature", evil(json!({"jku": evil_url, "kid": "k-rsa"}))),
        ("x5u, kid evil", "unknown_kid", evil(json!({"x5u": evil_url, "kid": "evil"}))),
        ("x5u, kid k-rsa", "signature", evil(json!({"x5u": evil_url, "kid": "k-rsa"}))),
    ];
    for (what, reason, token) in &cases {
        refused(&h, what, token, INVALID, reason).await;
    }
    assert_eq!(routed(&scrape(&h).await), 0.0, "reached a cell");
    assert_eq!(server.attacker_fetches(), 0, "jku/x5u was fetched");
    assert_eq!(server.fetches(), 2, "start + one refetch");
    assert_routed(&tok(&h, &good).await, "cell-1", "the legitimate token");
    h.shutdown().await;
}

// Attack: an oversized Authorization header is refused with 431 before anything decodes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_token_is_431() {
    let server = jwks_with(&[jwk("rsa", "k-rsa", None)]).await;
    let auth = format!("[auth]\nmax_token_bytes = 1024\n{}", idp(&server, "10m"));
    let h = start(&auth, |r| r).await;
    let big = rs("k-rsa", &patch(&acme(), json!({"pad": "x".repeat(1200)})));
    let code = "authorization_too_large";
    let too_large = (StatusCode::from_u16(431).unwrap(), code);
    refused(&h, "big", &big, too_large, "too_large").await;
    assert_eq!(verifications(&scrape(&h).await, "rejected"), 0.0, "decoded");
    assert_routed(&tok(&h, &rs("k-rsa", &acme())).await, "cell-1", "small");
    assert_eq!(routed(&scrape(&h).await), 1.0);
    h.shutdown().await;
}

// Attack: an IdP speaking for a tenant it is not bound to (issuer `tenants`, registry `issuers`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_may_only_speak_for_their_tenants() {
    const GLOBEX_IDP: &str = "https://globex-idp.test";
    const ACME_IDP: &str = "https://acme-idp.test";
    let server = jwks_with(&[jwk("rsa", "k-rsa", None)]).await;
    let globex = "tenants = [\"globex\"]\ntenant_claim_required = false\n".to_owned()
        + &static_key("g1", "ES256", "public_key_file", "ec.pub.pem");
    let acme_key = static_key("a1", "EdDSA", "public_key_file", "ed25519.pub.pem");
    let auth = idp(&server, "10m")
        + &issuer("globex-idp", GLOBEX_IDP, &globex)
        + &issuer("acme-idp", ACME_IDP, &acme_key);
    let bind = format!("id = \"acme\"\nissuers = [\"{ACME_IDP}\"]\n");
    let h = start(&auth, |r| r.replacen("id = \"acme\"\n", &bind, 1)).await;
    let no_tenant = patch(&claims(GLOBEX_IDP, AUDIENCE, "-"), json!({"tenant": null}));
    let by_globex_idp = |p: Value| mint(ES256, "ec.pem", Some("g1"), &patch(&no_tenant, p));
    let acme_claims = claims(ACME_IDP, AUDIENCE, "acme");
    let by_acme_idp = mint(EdDSA, "ed25519.pem", Some("a1"), &acme_claims);
    let by_idp = |t: &str| rs("k-rsa", &claims(ISSUER, AUDIENCE, t));

    let globex_ok = by_globex_idp(json!({"tenant": "globex"}));
    assert_routed(&tok(&h, &globex_ok).await, "cell-2", "globex-idp");
    assert_routed(&tok(&h, &by_acme_idp).await, "cell-1", "acme-idp");
    assert_routed(&tok(&h, &by_idp("initech")).await, "cell-3", "idp");
    let acme_host = Some("acme.app.test");
    #[rustfmt::skip]
    let cases = [
        ("globex-idp claims acme", None, by_globex_idp(json!({"tenant": "acme"}))),
        ("... on acme.app.test", acme_host, by_globex_idp(json!({"tenant": "acme"}))),
        ("globex-idp, no tenant claim, acme.app.test", acme_host, by_globex_idp(json!({}))),
        ("idp claims acme, bound to acme-idp", None, by_idp("acme")),
        ("... on acme.app.test", acme_host, by_idp("acme")),
    ];
    for (what, host, token) in &cases {
        assert_refused(&call(&h, *host, Some(token), &[]).await, FORBIDDEN, what);
    }
    let m = scrape(&h).await;
    assert_eq!(rejections(&m, "issuer_not_allowed"), 5.0);
    assert_eq!(routed(&m), 3.0, "a refused request reached a cell");
    h.shutdown().await;
}

// Attack: a client forging a forwarded-claim header; only the verified claim reaches the cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_claim_reaches_the_cell_and_client_copies_are_stripped() {
    let server = jwks_with(&[jwk("rsa", "k-rsa", None)]).await;
    let fwd = "[[auth.forward_claims]]\nclaim = \"sub\"\nheader = \"x-user\"\n";
    let h = start(&(fwd.to_owned() + &idp(&server, "10m")), |r| r).await;
    let forged = [("x-user", "mallory"), ("X-User", "eve")];
    let alice = rs("k-rsa", &patch(&acme(), json!({"sub": "alice"})));
    let r = call(&h, None, Some(&alice), &forged).await;
    assert_routed(&r, "cell-1", "token with sub");
    assert_eq!(r.json()["headers"]["x-user"], "alice");
    let no_sub = rs("k-rsa", &patch(&acme(), json!({"sub": null})));
    let acme_host = Some("acme.app.test");
    for (what, host, token) in [
        ("no sub", None, Some(&*no_sub)),
        ("no token", acme_host, None),
    ] {
        let r = call(&h, host, token, &forged).await;
        assert_routed(&r, "cell-1", what);
        let headers = &r.json()["headers"];
        assert!(headers.get("x-user").is_none(), "{what}: {headers}");
    }
    h.shutdown().await;
}

// Property: key rotation costs one refetch; 1,000 unknown kids after it cost at most one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_refetches_once_and_a_kid_flood_after_it_is_suppressed() {
    let key_a = jwk("rsa", "k1", Some("RS256"));
    let server = jwks_with(std::slice::from_ref(&key_a)).await;
    let h = start(&idp(&server, "10m"), |r| r).await;
    assert_eq!(server.fetches(), 1);
    assert_routed(&tok(&h, &rs("k1", &acme())).await, "cell-1", "k1");

    server.set(key_set(&[key_a, jwk("rsa2", "k2", Some("RS256"))]));
    let globex = claims(ISSUER, AUDIENCE, "globex");
    let k2 = mint(RS256, "rsa2.pem", Some("k2"), &globex);
    assert_routed(&tok(&h, &k2).await, "cell-2", "first k2 token");
    assert_eq!(server.fetches(), 2, "one refetch for the rotation");

    flood(&h, 1000).await;
    let m = scrape(&h).await;
    let fetches = server.fetches();
    assert!(fetches <= 3, "the flood made {} fetches", fetches - 2);
    assert_eq!(rejections(&m, "unknown_kid"), 1000.0);
    assert!(value(&m, SUPPRESSED) >= 999.0, "{m}");
    assert_eq!(routed(&m), 2.0, "reached a cell");
    assert_routed(&tok(&h, &k2).await, "cell-2", "k2 after the flood");
    h.shutdown().await;
}

// Attack: an unknown-kid flood on a fresh proxy costs the IdP one refetch (single flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_unknown_kid_flood_costs_one_refetch() {
    let server = jwks_with(&[jwk("rsa", "k1", None)]).await;
    let h = start(&idp(&server, "10m"), |r| r).await;
    flood(&h, 1000).await;
    assert_eq!(server.fetches(), 2, "start + exactly one refetch");
    let m = scrape(&h).await;
    assert_eq!((rejections(&m, "unknown_kid"), routed(&m)), (1000.0, 0.0));
    h.shutdown().await;
}

// Property: the same token sent N times is verified once, then served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_token_is_verified_once_then_served_from_cache() {
    const N: usize = 25;
    let server = jwks_with(&[jwk("ec", "k-ec", None)]).await;
    let h = start(&idp(&server, "10m"), |r| r).await;
    let token = mint(ES256, "ec.pem", Some("k-ec"), &acme());
    for i in 0..N {
        assert_routed(&tok(&h, &token).await, "cell-1", &format!("request {i}"));
    }
    let m = scrape(&h).await;
    let result = |r: &str| verifications(&m, r);
    let counts = (result("verified"), result("cache_hit"), result("rejected"));
    assert_eq!(counts, (1.0, (N - 1) as f64, 0.0), "{m}");
    assert_eq!(value(&m, "cellgate_jwt_cache_entries"), 1.0);
    h.shutdown().await;
}

// Property: a JWKS outage keeps the last good keys, is reported, and a withdrawn key stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_outage_keeps_the_last_good_keys_and_is_reported() {
    let server = jwks_with(&[jwk("rsa", "k1", None)]).await;
    let h = start(&idp(&server, "1s"), |r| r).await;
    assert_eq!(value(&scrape(&h).await, UP), 1.0);
    let fresh = |sub: &str| rs("k1", &patch(&acme(), json!({"sub": sub})));

    server.set_mode(Mode::Fail);
    // An unknown kid makes the proxy refetch at once, against the failing endpoint.
    assert_refused(&tok(&h, &rs("k-new", &acme())).await, INVALID, "new kid");
    let m = until("jwks_up 0", async || {
        let m = scrape(&h).await;
        (value(&m, UP) == 0.0 && value(&m, FETCH_ERRORS) >= 1.0).then_some(m)
    })
    .await;
    let cached = fresh("during-500");
    assert_routed(&tok(&h, &cached).await, "cell-1", "during 500");
    let mut errors = value(&m, FETCH_ERRORS);
    for (mode, says) in [
        (Mode::Oversized, "larger than"),
        (Mode::Invalid, "not a JWKS"),
    ] {
        server.set_mode(mode);
        let st = until(says, async || {
            let st = auth_status(&h).await;
            let error = st["jwks"]["last_error"].as_str().unwrap_or("").to_owned();
            error.contains(says).then_some(st)
        })
        .await;
        assert_eq!(st["jwks"]["kids"], json!(["k1"]), "{mode:?}: set lost");
        let m = scrape(&h).await;
        assert_eq!(value(&m, UP), 0.0, "{mode:?}");
        assert!(value(&m, FETCH_ERRORS) > errors, "{mode:?}: {m}");
        errors = value(&m, FETCH_ERRORS);
        let r = tok(&h, &fresh(&format!("{mode:?}"))).await;
        assert_routed(&r, "cell-1", &format!("during {mode:?}"));
    }

    server.set_mode(Mode::Serve);
    wait_for("up", async || value(&scrape(&h).await, UP) == 1.0).await;
    // k1 withdrawn: its tokens, cached ones included, stop passing. Status counts a fetch last,
    // so once it counts one served after the change, the set is swapped and the cache emptied.
    server.set(key_set(&[jwk("rsa2", "k2", None)]));
    let after_change = server.fetches() as u64 + 1;
    let swapped = async || auth_status(&h).await["jwks"]["fetches"].as_u64() >= Some(after_change);
    wait_for("a fetch of the new set", swapped).await;
    assert_eq!(auth_status(&h).await["jwks"]["kids"], json!(["k2"]));
    assert_refused(&tok(&h, &cached).await, INVALID, "withdrawn key");
    h.shutdown().await;
}

// Attack: header smuggling; a second, unverified Authorization header must never reach a cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_authorization_header_never_reaches_the_cell_unverified() {
    let server = jwks_with(&[jwk("rsa", "k-rsa", None)]).await;
    let h = start(&idp(&server, "10m"), |r| r).await;
    let good = rs("k-rsa", &acme());
    let expired_globex = patch(&acme(), json!({"tenant": "globex", "exp": 1}));
    let second = format!("Bearer {}", rs("k-rsa", &expired_globex));
    let r = call(&h, None, Some(&good), &[("authorization", &second)]).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert_eq!(r.json()["error"], "duplicate_authorization");
    assert_eq!(routed(&scrape(&h).await), 0.0, "reached a cell");
    h.shutdown().await;
}

/// GET `path` on the admin listener at `addr`: status and JSON body.
async fn admin(c: &HttpClient, addr: SocketAddr, path: &str) -> (StatusCode, Value) {
    let req = Request::get(format!("http://{addr}{path}")).body(Full::default());
    let resp = c.request(req.unwrap()).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

// Property: /readyz waits for the first JWKS; /admin/auth shows the issuer but no key material.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_first_jwks_and_admin_auth_shows_no_key_material() {
    let server = jwks_with(&[jwk("rsa", "k1", None)]).await;
    server.set_mode(Mode::Fail);
    // Harness::start_raw waits for /readyz, so this proxy is started by hand.
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (reg, path) = (dir.path().join("registry.toml"), dir.path().join("c.toml"));
    std::fs::write(reg, registry(&cell_list(&cells), DEFAULT_TENANTS)).unwrap();
    std::fs::write(&path, config(&(idp(&server, "1s") + &hs_key()))).unwrap();
    let cfg = cellgate::config::Config::load(&path, &Default::default()).unwrap();
    let proxy = cellgate::server::Server::bind(cfg).unwrap();
    let (addr, c) = (proxy.admin_addr(), client());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async { stopped.await.unwrap_or_default() };
    let task = tokio::spawn(async move { proxy.run(stopped).await });

    let st = until("a failed JWKS fetch", async || {
        let st = admin(&c, addr, "/admin/auth").await.1["issuers"][0].clone();
        st["jwks"]["last_error"].is_string().then_some(st)
    })
    .await;
    assert_eq!(st["name"], "idp");
    assert_eq!(st["issuer"], ISSUER);
    assert_eq!(st["jwks"]["ready"], false);
    assert_eq!(st["jwks"]["url"], server.url());
    let error = st["jwks"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("500"), "{st}");
    let (status, ready) = until("the placement snapshot", async || {
        let (status, v) = admin(&c, addr, "/readyz").await;
        (v["reason"] != "no placement snapshot loaded yet").then_some((status, v))
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["reason"], "JWKS not loaded yet");
    assert_eq!(ready["issuers"], json!(["idp"]));

    server.set_mode(Mode::Serve);
    let ready = async || admin(&c, addr, "/readyz").await.0.is_success();
    wait_for("ready", ready).await;
    let st = admin(&c, addr, "/admin/auth").await.1;
    let issuer = &st["issuers"][0];
    assert_eq!(issuer["jwks"]["kids"], json!(["k1"]));
    assert_eq!(issuer["static_kids"], json!(["hs"]));
    let text = st.to_string();
    let n = jwk("rsa", "k1", None)["n"].as_str().unwrap().to_owned();
    let secret = std::fs::read_to_string(fixture("hmac.secret")).unwrap();
    for material in [&n[..16], &secret.trim()[..16], "BEGIN", "\"n\"", "\"x\""] {
        assert!(!text.contains(material), "{material:?} shown: {text}");
    }
    stop.send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), task).await;
    done.expect("proxy did not stop").unwrap().unwrap();
}
