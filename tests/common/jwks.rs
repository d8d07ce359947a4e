//! A JWKS test server (an IdP's key endpoint under the test's control) and token minting from
//! the fixture keys, for the JWT integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::fixture;

/// Where the proxy is told to fetch the key set.
pub const JWKS_PATH: &str = "/jwks.json";
/// A second key set that only a hostile token header (`jku`, `x5u`) points at: never fetched.
pub const ATTACKER_PATH: &str = "/attacker/jwks.json";

/// What the key-set path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the current document.
    Serve,
    /// 500.
    Fail,
    /// 200 with a 512 KiB body (over any sane `jwks.max_bytes`).
    Oversized,
    /// 200 with a body that is not JSON.
    Invalid,
}

struct State {
    doc: Mutex<Value>,
    attacker_doc: Mutex<Value>,
    mode: Mutex<Mode>,
    fetches: AtomicUsize,
    attacker_fetches: AtomicUsize,
}

/// A JWKS endpoint on `127.0.0.1:0`; it lives as long as the test's runtime.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl JwksServer {
    /// Starts serving `doc` at [`JWKS_PATH`] (and `attacker_doc` at [`ATTACKER_PATH`]).
    pub async fn start(doc: Value, attacker_doc: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            doc: Mutex::new(doc),
            attacker_doc: Mutex::new(attacker_doc),
            mode: Mutex::new(Mode::Serve),
            fetches: AtomicUsize::new(0),
            attacker_fetches: AtomicUsize::new(0),
        });
        let st = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(Arc::clone(&st), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// The URL to put in `[auth.issuers.jwks] url`.
    pub fn url(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.addr)
    }

    pub fn attacker_url(&self) -> String {
        format!("http://{}{ATTACKER_PATH}", self.addr)
    }

    /// Replaces the served key set.
    pub fn set(&self, doc: Value) {
        *self.state.doc.lock().unwrap() = doc;
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Requests to [`JWKS_PATH`] so far (whatever they were answered).
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Requests to [`ATTACKER_PATH`] so far.
    pub fn attacker_fetches(&self) -> usize {
        self.state.attacker_fetches.load(Ordering::SeqCst)
    }
}

async fn answer(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        JWKS_PATH => {
            st.fetches.fetch_add(1, Ordering::SeqCst);
            let mode = *st.mode.lock().unwrap();
            match mode {
                Mode::Serve => (StatusCode::OK, st.doc.lock().unwrap().to_string()),
                Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned()),
                Mode::Oversized => {
                    let pad = "x".repeat(512 * 1024);
                    (StatusCode::OK, format!("{{\"keys\":[],\"pad\":\"{pad}\"}}"))
                }
                Mode::Invalid => (StatusCode::OK, "<html>not a key set</html>".to_owned()),
            }
        }
        ATTACKER_PATH => {
            st.attacker_fetches.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, st.attacker_doc.lock().unwrap().to_string())
        }
        _ => (StatusCode::NOT_FOUND, "{}".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(resp)
}

/// A public JWK from `tests/fixtures/keys/jwk/{name}.json` (`rsa`, `rsa2`, `ec`, `ed25519`)
/// published under `kid`, with `use: sig` and optionally `alg`.
pub fn jwk(name: &str, kid: &str, alg: Option<&str>) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("jwk/{name}.json"))).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    if let Some(a) = alg {
        v["alg"] = json!(a);
    }
    v
}

/// A JWKS document holding `keys`.
pub fn key_set(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims: `iss`, `aud`, `sub`, `tenant`, `iat` now, `exp` in 10 minutes.
pub fn claims(iss: &str, aud: &str, tenant: &str) -> Value {
    let now = now();
    json!({
        "iss": iss, "aud": aud, "sub": format!("user@{tenant}"), "tenant": tenant,
        "iat": now, "exp": now + 600,
    })
}

/// The signing key for `alg` from fixture file `file` (a private PEM, or the HMAC secret file,
/// trimmed as the proxy trims it).
pub fn signing_key(alg: Algorithm, file: &str) -> EncodingKey {
    let bytes = std::fs::read(fixture(file)).unwrap();
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(String::from_utf8(bytes).unwrap().trim().as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&bytes).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&bytes).unwrap(),
        _ => EncodingKey::from_rsa_pem(&bytes).unwrap(),
    }
}

/// A header for `alg` naming `kid`.
pub fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    h
}

/// Signs `claims` under `header` with `key`.
pub fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// Signs `claims` with fixture key `file` under a header naming `alg` and `kid`.
pub fn mint(alg: Algorithm, file: &str, kid: Option<&str>, claims: &Value) -> String {
    sign(&header(alg, kid), claims, &signing_key(alg, file))
}

/// Signs `claims` with fixture key `file` under a header made of `head`: any JOSE fields
/// (`jwk`, `jku`, `x5u`, `crit`...); `alg` is required.
pub fn mint_with_header(head: Value, claims: &Value, file: &str) -> String {
    let header: Header = serde_json::from_value(head).unwrap();
    sign(&header, claims, &signing_key(header.alg, file))
}

/// Signs raw JSON texts (which may repeat a member, as no serializer would) with fixture key
/// `file` under `alg`; the header text must name the same `alg`.
pub fn mint_raw(alg: Algorithm, file: &str, header: &str, claims: &str) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &signing_key(alg, file), alg);
    format!("{message}.{}", sig.unwrap())
}

/// `base` with `patch` merged in; a `null` in `patch` removes that field.
pub fn patch(base: &Value, patch: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            out.as_object_mut().unwrap().remove(k);
        } else {
            out[k] = v.clone();
        }
    }
    out
}

/// A hand-built compact token: any header JSON, any claims, any signature segment.
pub fn craft(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// Unpadded base64url (RFC 4648 §5).
pub fn b64url(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}
