//! The *rewrite* stage: what the cell sees and what the client gets back.
//!
//! Requests lose their hop-by-hop headers (RFC 9110 §7.6.1, plus any header the `Connection`
//! header names) and every client-supplied copy of a header the proxy vouches for
//! (`x-tenant-id`, `x-cell-id`, `x-forwarded-*`, `forwarded`, ...), and then get the trusted
//! values, then the verified token's forwarded claims; the target becomes origin-form and the
//! version HTTP/1.1. A WebSocket upgrade keeps `Upgrade` and `Connection: upgrade` so it can
//! pass through.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Uri, Version};
use hyper::upgrade::OnUpgrade;

use crate::headers::{
    HOP_BY_HOP, INTERNAL, X_API_KEY_ID, X_CELL_ID, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_REQUEST_ID, X_TENANT_ID,
};
use crate::identify::{is_key_authorization, request_host_value};

/// Whether the request asks to switch protocols (HTTP/1.1 `Connection: upgrade` + `Upgrade`).
/// An upgrade to `h2c` is never passed on (the request goes on as plain HTTP/1.1): a cell that
/// accepted it would take HTTP/2 requests down the tunnel that no proxy stage ever sees.
#[must_use]
pub fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    let upgrade = headers.get(header::UPGRADE).filter(|_| wants)?;
    let h2c = upgrade
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"));
    (!h2c).then(|| upgrade.clone())
}

/// Removes hop-by-hop headers, including those listed in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in Connection are removed first (they are only known while it is present).
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    // One pass over the names present, then a lookup only for those found: a response (or
    // request) rarely carries more than `Connection`, and eight removals cost eight hashes.
    let hop: &[HeaderName; 8] = &HOP_BY_HOP; // `found` below has one flag per name
    let mut found = [false; 8];
    for name in headers.keys() {
        if let Some(i) = hop.iter().position(|h| h == name) {
            found[i] = true;
        }
    }
    for (name, _) in hop.iter().zip(found).filter(|(_, f)| *f) {
        headers.remove(name);
    }
}

/// Rewrites request headers for the cell. `upgrade` restores the upgrade handshake headers.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; each value is a distinct input of the stage"
)]
pub fn rewrite_request(
    headers: &mut HeaderMap,
    strip: &[HeaderName],
    tenant: &HeaderValue,
    cell: &HeaderValue,
    request_id: &HeaderValue,
    forwarded_for: &HeaderValue,
    tls: bool,
    host: Option<HeaderValue>,
    upgrade: Option<HeaderValue>,
) {
    // Most requests carry none of the removed names: one pass over the names present is
    // cheaper than a lookup for each of the 16+ names that could be there.
    if headers.keys().any(|k| removed(k, strip)) {
        strip_hop_by_hop(headers);
        for name in INTERNAL.iter().chain(strip) {
            headers.remove(name);
        }
    }
    headers.insert(X_TENANT_ID, tenant.clone());
    headers.insert(X_CELL_ID, cell.clone());
    headers.insert(X_REQUEST_ID, request_id.clone());
    headers.insert(X_FORWARDED_FOR, forwarded_for.clone());
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    // Host stays the client's; the forward stage puts the target's name there for cells that
    // do not preserve it.
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST, h.clone());
        headers.insert(header::HOST, h);
    }
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto);
    }
}

/// What the proxy vouches for to the cell, as the earlier stages decided it.
#[derive(Debug)]
pub struct Trusted<'a> {
    /// Client headers removed on top of the built-in internal ones.
    pub strip: &'a [HeaderName],
    pub tenant: &'a HeaderValue,
    pub cell: &'a HeaderValue,
    pub request_id: &'a HeaderValue,
    pub forwarded_for: &'a HeaderValue,
    pub tls: bool,
    /// Claims of the verified token, as the headers `auth.forward_claims` names.
    pub claims: &'a [(HeaderName, HeaderValue)],
    /// The api_key source is on: `Authorization: ApiKey ...` is the proxy's, not the cell's.
    pub drop_key_authorization: bool,
    /// The id of the key that identified the request, for `x-api-key-id`.
    pub api_key_id: Option<&'a str>,
    /// The cell may be spoken to over HTTP/2 (its `protocol` is not `http1`): a client's
    /// `te: trailers` goes on to it (gRPC needs it), though `te` is otherwise hop-by-hop.
    pub keep_te_trailers: bool,
}

/// The whole request rewrite: the headers ([`rewrite_request`], then the forwarded claims),
/// an origin-form target (`/path?query`, whatever form the client used), and HTTP/1.1 toward
/// the cell. Returns the client side of an upgrade, when one was asked for, to be joined with
/// the cell's once it agrees.
pub fn request(
    parts: &mut Parts,
    trusted: &Trusted<'_>,
    upgrade: Option<HeaderValue>,
) -> Option<OnUpgrade> {
    let host = request_host_value(parts);
    let te_trailers = trusted.keep_te_trailers
        && parts
            .headers
            .get_all(header::TE)
            .iter()
            .any(|v| te_has_trailers(v.as_bytes()));
    let on_upgrade = if upgrade.is_some() {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    rewrite_request(
        &mut parts.headers,
        trusted.strip,
        trusted.tenant,
        trusted.cell,
        trusted.request_id,
        trusted.forwarded_for,
        trusted.tls,
        host,
        upgrade,
    );
    if te_trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    for (name, value) in trusted.claims {
        parts.headers.insert(name.clone(), value.clone());
    }
    // A key's secret never reaches the cell: its header is stripped with the others, and an
    // `Authorization: ApiKey` goes here; the cell learns the key's id instead.
    if trusted.drop_key_authorization
        && parts
            .headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| is_key_authorization(v.as_bytes()))
    {
        parts.headers.remove(header::AUTHORIZATION);
    }
    if let Some(id) = trusted.api_key_id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        parts.headers.insert(X_API_KEY_ID, v);
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;
    on_upgrade
}

/// Whether a `te` value lists `trailers` (`trailers`, `gzip, trailers;q=1`).
fn te_has_trailers(v: &[u8]) -> bool {
    v.split(|b| *b == b',').any(|t| {
        let name = t.split(|b| *b == b';').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"trailers")
    })
}

/// The upgrade an HTTP/1.1 request asks for ([`upgrade_requested`]); HTTP/2 has none.
#[must_use]
pub fn upgrade_of(parts: &Parts) -> Option<HeaderValue> {
    if parts.version == Version::HTTP_11 {
        upgrade_requested(&parts.headers)
    } else {
        None
    }
}

/// Cleans a cell's response for the client.
pub fn rewrite_response(headers: &mut HeaderMap, request_id: &HeaderValue, upgraded: bool) {
    let upgrade = if upgraded {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(headers);
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto);
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
}

/// Whether the request rewrite removes a header of this name: hop-by-hop, internal, or
/// configured in `headers.strip`.
fn removed(name: &HeaderName, strip: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(name) || INTERNAL.contains(name) || strip.contains(name)
}

/// The `x-forwarded-for` value for a client address (made once per connection).
#[must_use]
pub fn ip_header(ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IP address always fits in 48 bytes.
    let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{ip}"));
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Whether an incoming request id may be kept: 1..=128 bytes of `[A-Za-z0-9._:-]`.
#[must_use]
pub fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// The request's id: a valid incoming `x-request-id`, else 128 random bits in hex.
#[must_use]
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(X_REQUEST_ID)
        && valid_request_id(v)
    {
        return v.clone();
    }
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for slot in buf.iter_mut().rev() {
        *slot = b"0123456789abcdef"[usize::try_from(n & 0xf).unwrap_or(0)];
        n >>= 4;
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests;
