//! The *hygiene* stage: requests whose addressing two HTTP implementations could read
//! differently are refused before anything else looks at them (400, and an HTTP/1 connection is
//! closed): several `Host` headers, a `Host` that disagrees with the request target's authority
//! (absolute-form, or HTTP/2's `:authority`), a missing `Host` in HTTP/1.1, and header names
//! with an underscore (`server.headers_with_underscores`). One pass over the header names, a
//! few lookups.
//!
//! HTTP/1 body framing (`Content-Length`, `Transfer-Encoding`, chunk sizes) and everything
//! else about the raw bytes of an HTTP/1 head is the desync classifier's ([`crate::desync`]),
//! which sees the head before hyper parses it; it refuses a duplicate or disagreeing `Host`
//! there too, so on HTTP/1 this stage's host checks are a second line.
//!
//! [`limits`] adds the size limits hyper does not enforce: the target's length (414), an
//! HTTP/2 head's field count (431) and a declared body length (413); a streamed body is
//! counted as it passes (`upstream::RequestBody`).

use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use http::{StatusCode, Version};

use crate::config::{HeaderUnderscores, IngressLimits, ServerConfig};

/// Why a request was refused; `reason` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("several Host headers")]
    SeveralHosts,
    #[error("Host disagrees with the request target's authority")]
    HostMismatch,
    #[error("no Host header")]
    HostMissing,
    #[error("a header name with an underscore")]
    Underscore,
    #[error("request target longer than server.max_uri_bytes")]
    UriTooLong,
    #[error("more header fields than server.max_headers")]
    TooManyHeaders,
    #[error("declared body longer than server.max_body_bytes")]
    BodyTooLarge,
}

impl Violation {
    /// The `reason` label of `cellgate_requests_rejected_total`.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::SeveralHosts => "several_hosts",
            Self::HostMismatch => "host_mismatch",
            Self::HostMissing => "host_missing",
            Self::Underscore => "underscore_header",
            Self::UriTooLong => "uri_too_long",
            Self::TooManyHeaders => "too_many_headers",
            Self::BodyTooLarge => "body_too_large",
        }
    }

    /// The answer's status: 400 for ambiguity, the size statuses for the limits.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error` code of the JSON answer.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::SeveralHosts | Self::HostMismatch | Self::HostMissing => "invalid_host",
            Self::Underscore => "invalid_header_name",
            Self::UriTooLong => "uri_too_long",
            Self::TooManyHeaders => "too_many_headers",
            Self::BodyTooLarge => "body_too_large",
        }
    }
}

/// The stage in one call: [`check`], then [`limits`]; a head that passes loses its
/// underscored header names when `server.headers_with_underscores = "drop"`.
pub fn screen(parts: &mut Parts, server: &ServerConfig) -> Result<(), Violation> {
    check(parts, server.underscores)?;
    limits(parts, &server.limits)?;
    if server.underscores == HeaderUnderscores::Drop {
        drop_underscored(&mut parts.headers);
    }
    Ok(())
}

/// Checks a request head. `Ok` means it may go on (after [`drop_underscored`] when
/// underscores are to be dropped).
pub fn check(parts: &Parts, underscores: HeaderUnderscores) -> Result<(), Violation> {
    let h = &parts.headers;
    host(parts)?;
    if underscores == HeaderUnderscores::Reject && h.keys().any(underscored) {
        return Err(Violation::Underscore);
    }
    Ok(())
}

/// Checks a request head against the size limits hyper does not enforce itself: the target's
/// length, the field count of an HTTP/2 head (hyper counts HTTP/1 fields), and a declared
/// body length (a streamed body is counted as it passes, see `upstream::RequestBody`).
pub fn limits(parts: &Parts, l: &IngressLimits) -> Result<(), Violation> {
    let uri = &parts.uri;
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if uri_len > l.max_uri_bytes {
        return Err(Violation::UriTooLong);
    }
    if parts.headers.len() > l.max_headers {
        return Err(Violation::TooManyHeaders);
    }
    if let Some(v) = parts.headers.get(header::CONTENT_LENGTH)
        && std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|n| n > l.max_body_bytes)
    {
        return Err(Violation::BodyTooLarge);
    }
    Ok(())
}

/// Removes every header whose name has an underscore (`headers_with_underscores = "drop"`).
pub fn drop_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(underscored) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| underscored(k)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

fn underscored(name: &HeaderName) -> bool {
    name.as_str().as_bytes().contains(&b'_')
}

/// One `Host`, agreeing with the target's authority when there is one.
fn host(parts: &Parts) -> Result<(), Violation> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(Violation::SeveralHosts);
    }
    match (parts.uri.authority(), first) {
        (Some(a), Some(h)) if !a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) => {
            Err(Violation::HostMismatch)
        }
        (None, None) if parts.version == Version::HTTP_11 => Err(Violation::HostMissing),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(version: Version, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get(uri).version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn h1(headers: &[(&str, &str)]) -> Result<(), Violation> {
        check(
            &parts(Version::HTTP_11, "/", headers),
            HeaderUnderscores::Reject,
        )
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(h1(&[("host", "acme.localhost")]), Ok(()));
        assert_eq!(h1(&[("host", "a"), ("content-length", "12")]), Ok(()));
        assert_eq!(
            h1(&[("host", "a"), ("transfer-encoding", "chunked")]),
            Ok(())
        );
        assert_eq!(
            h1(&[("host", "a"), ("transfer-encoding", "Chunked")]),
            Ok(())
        );
        let absolute = parts(
            Version::HTTP_11,
            "http://acme.localhost/x",
            &[("host", "ACME.localhost")],
        );
        assert_eq!(check(&absolute, HeaderUnderscores::Reject), Ok(()));
        // HTTP/2: :authority alone, or with an agreeing Host.
        let h2 = parts(Version::HTTP_2, "https://acme.localhost/", &[]);
        assert_eq!(check(&h2, HeaderUnderscores::Reject), Ok(()));
        // HTTP/1.0 may omit Host.
        assert_eq!(
            check(
                &parts(Version::HTTP_10, "/", &[]),
                HeaderUnderscores::Reject
            ),
            Ok(())
        );
    }

    #[test]
    fn each_smuggling_shape_is_refused_with_its_reason() {
        use Violation as V;
        let cases: &[(&[(&str, &str)], V)] = &[
            (&[("host", "a"), ("host", "b")], V::SeveralHosts),
            (&[], V::HostMissing),
            (&[("host", "a"), ("x_tenant_id", "globex")], V::Underscore),
        ];
        for (headers, want) in cases {
            assert_eq!(h1(headers), Err(*want), "{headers:?}");
            assert!(!want.reason().is_empty() && !want.code().is_empty());
        }
        let absolute = parts(
            Version::HTTP_11,
            "http://globex.localhost/",
            &[("host", "acme.localhost")],
        );
        assert_eq!(
            check(&absolute, HeaderUnderscores::Reject),
            Err(V::HostMismatch)
        );
        let h2 = parts(
            Version::HTTP_2,
            "https://globex.localhost/",
            &[("host", "acme.localhost")],
        );
        assert_eq!(check(&h2, HeaderUnderscores::Reject), Err(V::HostMismatch));
    }

    #[test]
    fn limits_refuse_long_targets_many_fields_and_large_declared_bodies() {
        let l = IngressLimits {
            max_uri_bytes: 20,
            max_headers: 3,
            max_body_bytes: 100,
            ..IngressLimits::default()
        };
        let ok = parts(
            Version::HTTP_11,
            "/0123456789",
            &[("host", "a"), ("content-length", "100")],
        );
        assert_eq!(limits(&ok, &l), Ok(()));
        let long = parts(Version::HTTP_11, "/0123456789?abcdefghij", &[("host", "a")]);
        assert_eq!(limits(&long, &l), Err(Violation::UriTooLong));
        let absolute = parts(Version::HTTP_11, "http://acme.localhost.example/x", &[]);
        assert_eq!(limits(&absolute, &l), Err(Violation::UriTooLong));
        let many = parts(
            Version::HTTP_2,
            "/",
            &[("a", "1"), ("b", "2"), ("c", "3"), ("c", "4")],
        );
        assert_eq!(limits(&many, &l), Err(Violation::TooManyHeaders));
        let big = parts(
            Version::HTTP_11,
            "/",
            &[("host", "a"), ("content-length", "101")],
        );
        assert_eq!(limits(&big, &l), Err(Violation::BodyTooLarge));
        for v in [
            Violation::UriTooLong,
            Violation::TooManyHeaders,
            Violation::BodyTooLarge,
        ] {
            assert_ne!(v.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn underscores_can_be_dropped_or_allowed() {
        let p = parts(
            Version::HTTP_11,
            "/",
            &[("host", "a"), ("x_tenant_id", "globex"), ("x-ok", "1")],
        );
        assert_eq!(check(&p, HeaderUnderscores::Allow), Ok(()));
        assert_eq!(check(&p, HeaderUnderscores::Drop), Ok(()));
        let mut headers = p.headers;
        drop_underscored(&mut headers);
        assert!(!headers.contains_key("x_tenant_id"));
        assert!(headers.contains_key("x-ok") && headers.contains_key("host"));
    }
}
