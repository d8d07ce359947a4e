//! A small, bounded HTTPS GET for JWKS documents.
//!
//! Called only by the JWKS refresher (a background task), never on the request path. One
//! connection per fetch, HTTP/1.1, no redirects, a deadline over the whole exchange and a cap
//! on the body (checked against `Content-Length` first, then while reading), so a slow or
//! hostile IdP endpoint can neither stall the refresher nor fill memory. Plain HTTP is accepted
//! only for a loopback host (tests and local sidecars).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A parsed JWKS URL.
#[derive(Clone)]
pub struct FetchUrl {
    host: Arc<str>,
    port: u16,
    authority: HeaderValue,
    path_and_query: http::uri::PathAndQuery,
    /// Set for https.
    server_name: Option<ServerName<'static>>,
    /// `scheme://authority/path` without the query (which may carry a credential).
    shown: Arc<str>,
}

impl std::fmt::Debug for FetchUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The query may carry a credential: shown without it, like Display.
        f.debug_tuple("FetchUrl").field(&self.shown).finish()
    }
}

impl std::fmt::Display for FetchUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl FetchUrl {
    /// Parses an `https://` URL, or an `http://` one whose host is loopback.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let uri: http::Uri = s.parse().map_err(|_| "not a URL")?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the scheme must be https"),
        };
        let auth = uri.authority().ok_or("missing host")?;
        if auth.as_str().contains('@') {
            return Err("credentials in the URL are not accepted");
        }
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("missing host");
        }
        let ip: Option<IpAddr> = host.parse().ok();
        let loopback = ip.map_or(host.eq_ignore_ascii_case("localhost"), |ip| {
            ip.is_loopback()
        });
        if !https && !loopback {
            return Err("the scheme must be https (http only for a loopback host)");
        }
        let server_name = if https {
            Some(ServerName::try_from(host.to_owned()).map_err(|_| "not a valid TLS server name")?)
        } else {
            None
        };
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            host: Arc::from(host),
            port,
            authority: HeaderValue::from_str(auth.as_str()).map_err(|_| "invalid host")?,
            shown: Arc::from(format!("{scheme}://{auth}{}", path_and_query.path())),
            path_and_query,
            server_name,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: timed out after {after:?}")]
    Timeout { url: Arc<str>, after: Duration },
    #[error("{url}: connect: {reason}")]
    Connect { url: Arc<str>, reason: String },
    #[error("{url}: {reason}")]
    Http { url: Arc<str>, reason: String },
    #[error("{url}: answered {status} (expected 200; redirects are not followed)")]
    Status { url: Arc<str>, status: StatusCode },
    #[error("{url}: the document is larger than {max} bytes")]
    TooLarge { url: Arc<str>, max: usize },
}

/// A fetched document and how long its server says it stays fresh.
#[derive(Debug)]
pub struct Fetched {
    pub body: Bytes,
    pub max_age: Option<Duration>,
}

/// GETs `url` within `deadline`, reading at most `max_bytes` of body.
pub async fn get(
    url: &FetchUrl,
    tls: &TlsConnector,
    deadline: Duration,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(deadline, get_inner(url, tls, max_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            url: Arc::clone(&url.shown),
            after: deadline,
        }),
    }
}

async fn get_inner(
    url: &FetchUrl,
    tls: &TlsConnector,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    let shown = || Arc::clone(&url.shown);
    let connect = |e: std::io::Error| FetchError::Connect {
        url: shown(),
        reason: e.to_string(),
    };
    let http = |e: hyper::Error| FetchError::Http {
        url: shown(),
        reason: e.to_string(),
    };
    let tcp = TcpStream::connect((&*url.host, url.port))
        .await
        .map_err(connect)?;
    tcp.set_nodelay(true).map_err(connect)?;
    let request = Request::get(url.path_and_query.as_str())
        .header(header::HOST, url.authority.clone())
        .header(header::ACCEPT, "application/jwk-set+json, application/json")
        .header(
            header::USER_AGENT,
            concat!("cellgate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http {
            url: shown(),
            reason: e.to_string(),
        })?;
    let response = match &url.server_name {
        None => {
            let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(http)?;
            tokio::spawn(async move { drop(conn.await) });
            sender.send_request(request).await.map_err(http)?
        }
        Some(name) => {
            let stream = tls
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| FetchError::Connect {
                    url: shown(),
                    reason: format!("TLS: {e}"),
                })?;
            let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
            tokio::spawn(async move { drop(conn.await) });
            sender.send_request(request).await.map_err(http)?
        }
    };
    if response.status() != StatusCode::OK {
        return Err(FetchError::Status {
            url: shown(),
            status: response.status(),
        });
    }
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(FetchError::TooLarge {
            url: shown(),
            max: max_bytes,
        });
    }
    let max_age = max_age(response.headers());
    let body = Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                FetchError::TooLarge {
                    url: shown(),
                    max: max_bytes,
                }
            } else {
                FetchError::Http {
                    url: shown(),
                    reason: e.to_string(),
                }
            }
        })?
        .to_bytes();
    Ok(Fetched { body, max_age })
}

/// `Cache-Control: max-age=N` (`no-store`/`no-cache` count as zero).
#[must_use]
pub fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(v) = value.to_str() else { continue };
        for directive in v.split(',') {
            let d = directive.trim();
            if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if let Some((name, n)) = d.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(secs) = n.trim().trim_matches('"').parse::<u64>()
            {
                found = Some(Duration::from_secs(secs));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_https_and_loopback_http_only() {
        let u = FetchUrl::parse("https://idp.example.com/.well-known/jwks.json?x=secret").unwrap();
        assert_eq!(u.port, 443);
        assert_eq!(
            u.to_string(),
            "https://idp.example.com/.well-known/jwks.json"
        );
        assert!(u.server_name.is_some());
        let u = FetchUrl::parse("http://127.0.0.1:8080/jwks").unwrap();
        assert_eq!((u.port, u.server_name.is_none()), (8080, true));
        assert!(FetchUrl::parse("http://[::1]:9/jwks").is_ok());
        assert!(FetchUrl::parse("http://localhost/jwks").is_ok());
        assert!(FetchUrl::parse("http://idp.example.com/jwks").is_err());
        assert!(FetchUrl::parse("http://10.0.0.1/jwks").is_err());
        assert!(FetchUrl::parse("ftp://idp.example.com/jwks").is_err());
        assert!(FetchUrl::parse("https://user:pw@idp.example.com/jwks").is_err());
        assert!(FetchUrl::parse("/jwks").is_err());
    }

    #[test]
    fn reads_max_age() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(300)));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(max_age(&h), Some(Duration::ZERO));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=abc"),
        );
        assert_eq!(max_age(&h), None);
    }
}
