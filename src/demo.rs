//! `cellgate demo` and `cellgate token`: the proxy working end to end with no AWS account.
//!
//! The demo starts three local cells (two targets each) that answer with JSON naming the cell
//! and target that served the request and the trusted headers they received, writes a file
//! registry placing `acme`, `globex` and `initech` in different cells, and runs the ordinary
//! proxy on it. The same echo cell serves the integration tests. The signing key is the
//! repository's demo key, and the demo API key is written here: both public, for trying the JWT
//! and API key paths only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::net::TcpListener;

/// The demo config (also at `config/demo.toml`).
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
/// DEMO ONLY: the Ed25519 key that signs demo tokens. It is public; never trust it.
pub const DEMO_SIGNING_KEY: &str = include_str!("../config/demo/jwt-ed25519.pem");
/// The public half, referenced by the demo config.
pub const DEMO_PUBLIC_KEY: &str = include_str!("../config/demo/jwt-ed25519.pub.pem");
pub const DEMO_KID: &str = "demo-ed25519";
pub const DEMO_ISSUER: &str = "cellgate-demo";
pub const DEMO_AUDIENCE: &str = "cellgate-demo";

/// DEMO ONLY: globex's API key (its record, in the demo registry, holds only its hash). It is
/// public; never use it outside the demo.
pub const DEMO_API_KEY: &str = "cgk_demoglobexk2_demoonlythesecretisinrepo2";
/// The entitlement the demo config's `/reports` route needs; globex has it, the others do not.
pub const DEMO_ENTITLEMENT: &str = "reports";

/// Demo tenants and their cells.
pub const DEMO_TENANTS: [(&str, &str, &str); 3] = [
    ("acme", "cell-1", "standard"),
    ("globex", "cell-2", "enterprise"),
    ("initech", "cell-3", "free"),
];

/// A running echo cell target.
#[derive(Debug, Clone)]
pub struct EchoTarget {
    pub cell: String,
    pub name: String,
    pub addr: SocketAddr,
}

/// Starts one echo target on `127.0.0.1:0`. It answers every request with JSON:
/// `{cell, target, tenant, x_cell_id, host, method, path, headers}`; `?sleep_ms=N` delays the
/// answer, `?status=N` sets the status, `?bytes=N` pads the body; a request asking to upgrade
/// gets `101` and then every byte is echoed back.
pub async fn spawn_echo_target(cell: &str, name: &str) -> std::io::Result<EchoTarget> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (cell_id, target) = (cell.to_owned(), name.to_owned());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (cell_id, target) = (cell_id.clone(), target.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| echo(cell_id.clone(), target.clone(), req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(EchoTarget {
        cell: cell.to_owned(),
        name: name.to_owned(),
        addr,
    })
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

async fn echo(
    cell: String,
    target: String,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if h("upgrade").is_some() {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        if let Some(proto) = req.headers().get(header::UPGRADE).cloned() {
            resp.headers_mut().insert(header::UPGRADE, proto);
        }
        resp.headers_mut().insert(
            "x-target",
            header::HeaderValue::from_str(&target).unwrap_or(header::HeaderValue::from_static("?")),
        );
        return Ok(resp);
    }
    if let Some(ms) = query_param(&req, "sleep_ms") {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let status = query_param(&req, "status")
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok());
    let pad = usize::try_from(query_param(&req, "bytes").unwrap_or(0).min(16 << 20)).unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                json!(v.to_str().unwrap_or("<binary>")),
            )
        })
        .collect();
    let mut body = json!({
        "cell": cell,
        "target": target,
        "tenant": h("x-tenant-id"),
        "x_cell_id": h("x-cell-id"),
        "host": h("host"),
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "headers": headers,
    });
    let received = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    body["request_bytes"] = json!(received);
    if pad > 0 {
        body["padding"] = json!("x".repeat(pad));
    }
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status.unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Starts `cells` echo cells with `per_cell` targets each, named `cell-1..`.
pub async fn spawn_cells(cells: usize, per_cell: usize) -> std::io::Result<Vec<Vec<EchoTarget>>> {
    let mut out = Vec::with_capacity(cells);
    for c in 1..=cells {
        let cell = format!("cell-{c}");
        let mut targets = Vec::with_capacity(per_cell);
        for t in 1..=per_cell {
            targets.push(spawn_echo_target(&cell, &format!("{cell}-target-{t}")).await?);
        }
        out.push(targets);
    }
    Ok(out)
}

/// Registry TOML for the demo tenants over the given cells.
#[must_use]
pub fn registry_toml(cells: &[Vec<EchoTarget>]) -> String {
    let mut s = String::from(
        "# Written by `cellgate demo`. Edit and save: the proxy follows within a second.\n",
    );
    for targets in cells {
        let Some(first) = targets.first() else {
            continue;
        };
        let list: Vec<String> = targets
            .iter()
            .map(|t| format!("\"http://{}\"", t.addr))
            .collect();
        s.push_str(&format!(
            "\n[[cells]]\nid = \"{}\"\ntargets = [{}]\n",
            first.cell,
            list.join(", ")
        ));
    }
    for (i, (tenant, cell, tier)) in DEMO_TENANTS.iter().enumerate() {
        s.push_str(&format!("\n[[tenants]]\nid = \"{tenant}\"\ncell = \"{cell}\"\ntier = \"{tier}\"\nversion = {}\n", i + 1));
        if *tenant == "globex" {
            s.push_str(&format!("entitlements = [\"{DEMO_ENTITLEMENT}\"]\n"));
        }
    }
    s.push_str(&demo_key_record());
    s
}

/// The `[[apikeys]]` record of [`DEMO_API_KEY`] (globex's; its hash, never the key).
#[must_use]
pub fn demo_key_record() -> String {
    let Ok(key) = crate::apikey::parse(DEMO_API_KEY) else {
        return String::new();
    };
    let secret = &DEMO_API_KEY[DEMO_API_KEY.len() - crate::apikey::SECRET_LEN..];
    let hash = crate::apikey::KeyHash::of(key.id, secret);
    format!(
        "\n# DEMO ONLY: the key is {DEMO_API_KEY} (src/demo.rs); a registry holds its hash.\n\
         [[apikeys]]\nid = \"{}\"\ntenant = \"globex\"\nhash = \"{hash}\"\ncreated_at = 1796083200\nversion = 1\n",
        key.id
    )
}

/// Writes the demo's config, public key and registry into `dir`; returns the config path.
pub fn write_demo_files(dir: &Path, cells: &[Vec<EchoTarget>]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("demo"))?;
    std::fs::write(dir.join("demo/jwt-ed25519.pub.pem"), DEMO_PUBLIC_KEY)?;
    let registry = dir.join("demo/registry.toml");
    let tmp = dir.join("demo/registry.toml.tmp");
    std::fs::write(&tmp, registry_toml(cells))?;
    std::fs::rename(&tmp, &registry)?;
    let config = dir.join("demo.toml");
    std::fs::write(&config, DEMO_CONFIG)?;
    Ok(config)
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("key: {0}")]
    Key(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// What to put in a minted token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub tenant: String,
    pub subject: String,
    pub ttl: Duration,
    pub issuer: String,
    pub audience: String,
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    /// PEM private key (or HMAC secret for HS256).
    pub key_pem: Vec<u8>,
}

impl TokenSpec {
    /// A demo token for `tenant`, signed with the demo key.
    #[must_use]
    pub fn demo(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            subject: format!("demo-user@{tenant}"),
            ttl: Duration::from_secs(3600),
            issuer: DEMO_ISSUER.to_owned(),
            audience: DEMO_AUDIENCE.to_owned(),
            kid: Some(DEMO_KID.to_owned()),
            algorithm: Algorithm::EdDSA,
            key_pem: DEMO_SIGNING_KEY.as_bytes().to_vec(),
        }
    }
}

/// Mints a signed JWT.
pub fn mint(spec: &TokenSpec) -> Result<String, TokenError> {
    crate::auth::crypto::install();
    let key = match spec.algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&spec.key_pem),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&spec.key_pem),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            // Trimmed as the verifier trims a `secret_file`.
            Ok(EncodingKey::from_secret(spec.key_pem.trim_ascii()))
        }
        _ => EncodingKey::from_rsa_pem(&spec.key_pem),
    }
    .map_err(|e| TokenError::Key(e.to_string()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({
        "iss": spec.issuer,
        "aud": spec.audience,
        "sub": spec.subject,
        "tenant": spec.tenant,
        "iat": now,
        "exp": now + spec.ttl.as_secs(),
    });
    let mut header = Header::new(spec.algorithm);
    header.kid.clone_from(&spec.kid);
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| TokenError::Sign(e.to_string()))
}

/// Ready-to-paste commands for the running demo.
#[must_use]
pub fn instructions(listen: SocketAddr, admin: SocketAddr, registry: &Path, token: &str) -> String {
    format!(
        "\ncellgate demo is running: proxy http://{listen}, admin http://{admin}\n\
         registry file (edit it to move a tenant): {reg}\n\n\
         # route by subdomain\n\
         curl -s -H 'Host: acme.localhost' http://{listen}/\n\
         curl -s -H 'Host: globex.localhost' http://{listen}/\n\
         curl -s -H 'Host: initech.localhost' http://{listen}/\n\
         # route by a signed JWT (demo key; mint more with `cellgate token --tenant globex`)\n\
         curl -s -H 'Authorization: Bearer {token}' http://{listen}/\n\
         # route by globex's API key (demo key; `cellgate apikey create` makes real ones)\n\
         curl -s -H 'x-api-key: {key}' http://{listen}/\n\
         # entitlements: /reports needs `reports`; globex has it, acme gets 403 not_entitled\n\
         curl -s -H 'Host: globex.localhost' http://{listen}/reports\n\
         curl -s -H 'Host: acme.localhost' http://{listen}/reports\n\
         # refused: unknown tenant (404), token for acme on globex's host (403)\n\
         curl -s -H 'Host: nobody.localhost' http://{listen}/\n\
         curl -s -H 'Host: globex.localhost' -H 'Authorization: Bearer {token}' http://{listen}/\n\
         # rate limits: acme (standard tier: 50/s, burst 20) gets 429s in a loop; globex does not\n\
         for i in $(seq 60); do curl -s -o /dev/null -w '%{{http_code}} ' -H 'Host: acme.localhost' http://{listen}/; done; echo\n\
         # what this node believes, and its metrics\n\
         curl -s http://{admin}/admin/tenants/acme\n\
         curl -s http://{admin}/metrics\n",
        reg = registry.display(),
        key = DEMO_API_KEY,
    )
}
