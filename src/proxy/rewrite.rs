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
mod tests {
    use super::*;

    fn trusted<'a>(v: &'a HeaderValue, claims: &'a [(HeaderName, HeaderValue)]) -> Trusted<'a> {
        Trusted {
            strip: &[],
            tenant: v,
            cell: v,
            request_id: v,
            forwarded_for: v,
            tls: true,
            claims,
            drop_key_authorization: false,
            api_key_id: None,
            keep_te_trailers: false,
        }
    }

    #[test]
    fn te_trailers_goes_on_only_toward_http2_cells() {
        let v = HeaderValue::from_static("x");
        let mut t = trusted(&v, &[]);
        for keep in [false, true] {
            let req = http::Request::post("/echo.Echo/Unary").header(header::TE, "gzip, Trailers");
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            t.keep_te_trailers = keep;
            request(&mut parts, &t, None);
            assert_eq!(parts.headers.get(header::TE).is_some(), keep);
        }
        assert!(!te_has_trailers(b"gzip, deflate"));
    }

    #[test]
    fn the_whole_rewrite_sets_claims_origin_form_and_http_1_1() {
        let (mut parts, ()) = http::Request::get("https://acme.app.test/orders?id=7")
            .version(Version::HTTP_2)
            .header("x-user", "client-value")
            .body(())
            .unwrap()
            .into_parts();
        let v = HeaderValue::from_static("x");
        let claims = [(
            HeaderName::from_static("x-user"),
            HeaderValue::from_static("u-1"),
        )];
        let upgrade = request(&mut parts, &trusted(&v, &claims), None);
        assert!(upgrade.is_none());
        assert_eq!(parts.uri, "/orders?id=7");
        assert_eq!(parts.version, Version::HTTP_11);
        // The claim replaces the client's copy; the host the client addressed is kept.
        assert_eq!(parts.headers.get_all("x-user").iter().count(), 1);
        assert_eq!(parts.headers["x-user"], "u-1");
        assert_eq!(parts.headers[header::HOST], "acme.app.test");
        assert_eq!(parts.headers[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn an_origin_form_target_is_kept_and_no_upgrade_is_asked_of_http_2() {
        let (mut parts, ()) = http::Request::get("/a?b")
            .header(header::HOST, "acme.app.test")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .version(Version::HTTP_2)
            .body(())
            .unwrap()
            .into_parts();
        assert!(upgrade_of(&parts).is_none());
        parts.version = Version::HTTP_11;
        assert_eq!(upgrade_of(&parts).unwrap(), "websocket");
        let v = HeaderValue::from_static("x");
        request(&mut parts, &trusted(&v, &[]), None);
        assert_eq!(parts.uri, "/a?b");
        assert!(!parts.headers.contains_key(header::UPGRADE));
    }

    #[test]
    fn strips_hop_by_hop_and_connection_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-app"));
    }

    #[test]
    fn rewrite_replaces_internal_headers() {
        let mut h = HeaderMap::new();
        h.insert(X_CELL_ID, HeaderValue::from_static("cell-evil"));
        h.insert(X_TENANT_ID, HeaderValue::from_static("globex"));
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert("x-custom-internal", HeaderValue::from_static("x"));
        let strip = [HeaderName::from_static("x-custom-internal")];
        rewrite_request(
            &mut h,
            &strip,
            &HeaderValue::from_static("acme"),
            &HeaderValue::from_static("cell-1"),
            &HeaderValue::from_static("rid"),
            &ip_header("10.1.2.3".parse().unwrap()),
            false,
            Some(HeaderValue::from_static("acme.localhost")),
            None,
        );
        assert_eq!(h[X_CELL_ID], "cell-1");
        assert_eq!(h[X_TENANT_ID], "acme");
        assert_eq!(h[X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[X_FORWARDED_HOST], "acme.localhost");
        assert_eq!(h[header::HOST], "acme.localhost");
        assert!(!h.contains_key("x-custom-internal"));
        assert_eq!(h.get_all(X_CELL_ID).iter().count(), 1);
    }

    #[test]
    fn every_removed_name_is_removed_even_alone() {
        // The rewrite skips its removals when no listed name is present: each name on its own
        // must still trigger them.
        let strip = [HeaderName::from_static("x-custom-internal")];
        let v = HeaderValue::from_static("x");
        for name in HOP_BY_HOP.iter().chain(&INTERNAL).chain(&strip) {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            h.insert(name.clone(), HeaderValue::from_static("client-value"));
            rewrite_request(&mut h, &strip, &v, &v, &v, &v, false, None, None);
            let left: Vec<_> = h.get_all(name).iter().collect();
            assert!(
                left.iter().all(|x| *x != "client-value"),
                "{name}: {left:?}"
            );
            assert_eq!(h[header::ACCEPT], "*/*");
        }
    }

    #[test]
    fn ordinary_headers_pass_untouched() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(header::USER_AGENT, HeaderValue::from_static("curl"));
        h.insert("x-app", HeaderValue::from_static("1"));
        let v = HeaderValue::from_static("x");
        rewrite_request(&mut h, &[], &v, &v, &v, &v, false, None, None);
        assert_eq!(h.len(), 3 + 5, "{h:?}");
        assert_eq!(h["x-app"], "1");
        assert_eq!(h[header::USER_AGENT], "curl");
    }

    #[test]
    fn upgrade_headers_survive_when_requested() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let up = upgrade_requested(&h);
        assert_eq!(up.as_ref().map(|v| v.to_str().unwrap()), Some("websocket"));
        let v = HeaderValue::from_static("x");
        rewrite_request(
            &mut h,
            &[],
            &v,
            &v,
            &v,
            &ip_header("::1".parse().unwrap()),
            true,
            None,
            up,
        );
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn an_h2c_upgrade_is_never_passed_on() {
        for value in ["h2c", "H2C", "websocket, h2c"] {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONNECTION,
                HeaderValue::from_static("Upgrade, HTTP2-Settings"),
            );
            h.insert(header::UPGRADE, HeaderValue::from_str(value).unwrap());
            h.insert(
                "http2-settings",
                HeaderValue::from_static("AAMAAABkAAQAAP__"),
            );
            assert_eq!(upgrade_requested(&h), None, "{value}");
            let v = HeaderValue::from_static("x");
            rewrite_request(
                &mut h,
                &[],
                &v,
                &v,
                &v,
                &ip_header("::1".parse().unwrap()),
                false,
                None,
                None,
            );
            assert!(!h.contains_key(header::UPGRADE), "{value}");
            assert!(!h.contains_key("http2-settings"), "{value}");
        }
    }

    #[test]
    fn request_ids_are_kept_only_when_valid() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_static("bad id\"with quotes"),
        );
        let generated = request_id(&h);
        assert_eq!(generated.len(), 32);
        assert!(valid_request_id(&generated));
    }
}
