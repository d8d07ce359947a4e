//! The one place where module errors become HTTP answers.
//!
//! Each refusal gets a status, a stable machine-readable `error` code, and an outcome for
//! metrics and logs (the outcome also says whose fault it was: the client's, `bad_request`,
//! `unauthorized`...; a cell's, `upstream_error`; or none, `not_ready`). Bodies are small JSON
//! objects that carry the request id and never echo tokens or other client input.

use std::time::Duration;

use http::StatusCode;

use crate::apikey::KeyRefusal;
use crate::auth::AuthError;
use crate::entitle::NotEntitled;
use crate::identify::IdentifyError;
use crate::metrics::{Outcome, UpstreamErrorKind};
use crate::ratelimit::{Limited, ceil_secs};
use crate::routing::RouteError;
use crate::tenant::TenantError;
use crate::upstream::{BodyLimit, UpstreamError};

/// Any reason the proxy answers a request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Hygiene(#[from] crate::hygiene::Violation),
    #[error(transparent)]
    Desync(#[from] crate::desync::Reason),
    #[error(transparent)]
    Identify(#[from] IdentifyError),
    #[error(transparent)]
    Route(#[from] RouteError),
    /// An API key's or a token's scopes do not reach the route's entitlement.
    #[error(transparent)]
    Entitle(#[from] NotEntitled),
    #[error(transparent)]
    Limit(#[from] Limited),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The client's body broke a limit while it was being forwarded.
    #[error(transparent)]
    BodyLimit(#[from] BodyLimit),
}

impl ProxyError {
    /// Whether the answer counts in its tenant's usage: every refusal does but an unknown
    /// tenant's (404 `unknown_tenant`: no tenant the registry holds, so nobody's usage).
    #[must_use]
    pub const fn metered(&self) -> bool {
        !matches!(self, Self::Route(RouteError::UnknownTenant))
    }

    /// A failed exchange, blamed on the client's body when that is what broke a limit.
    #[must_use]
    pub fn from_exchange(error: UpstreamError) -> Self {
        BodyLimit::of(&error).map_or(Self::Upstream(error), Self::BodyLimit)
    }
}

/// How a [`ProxyError`] is answered.
#[derive(Debug, Clone, Copy)]
pub struct ErrorResponse {
    pub status: StatusCode,
    pub code: &'static str,
    pub outcome: Outcome,
    /// `WWW-Authenticate` value, for 401.
    pub www_authenticate: Option<&'static str>,
    pub retry_after: Option<Duration>,
    /// For upstream errors, the metric kind.
    pub upstream_kind: Option<UpstreamErrorKind>,
}

impl ErrorResponse {
    const fn new(status: StatusCode, code: &'static str, outcome: Outcome) -> Self {
        Self {
            status,
            code,
            outcome,
            www_authenticate: None,
            retry_after: None,
            upstream_kind: None,
        }
    }
}

impl ProxyError {
    /// The `reason` label when a token check refused the request.
    #[must_use]
    pub fn auth_label(&self) -> Option<&'static str> {
        match self {
            Self::Identify(IdentifyError::Auth(e)) => Some(e.label()),
            Self::Route(RouteError::IssuerNotAllowed) => Some(AuthError::IssuerNotAllowed.label()),
            _ => None,
        }
    }

    /// The `reason` label when the API key check refused the request.
    #[must_use]
    pub const fn key_label(&self) -> Option<&'static str> {
        match self {
            Self::Identify(IdentifyError::Key(r)) => Some(r.reason()),
            _ => None,
        }
    }

    /// The entitlement a `not_entitled` refusal names, and who lacked it.
    #[must_use]
    pub fn not_entitled(&self) -> Option<&NotEntitled> {
        match self {
            Self::Entitle(e) | Self::Route(RouteError::NotEntitled(e)) => Some(e),
            _ => None,
        }
    }

    #[must_use]
    pub fn response(&self) -> ErrorResponse {
        use Outcome as O;
        use StatusCode as S;
        match self {
            Self::Hygiene(v) => ErrorResponse::new(v.status(), v.code(), O::bad_request),
            Self::Desync(r) => ErrorResponse::new(r.status(), r.code(), O::bad_request),
            Self::Identify(IdentifyError::Tenant(e)) => match e {
                TenantError::Invalid(_) => {
                    ErrorResponse::new(S::BAD_REQUEST, "invalid_tenant", O::bad_request)
                }
                TenantError::Missing => {
                    ErrorResponse::new(S::BAD_REQUEST, "tenant_required", O::bad_request)
                }
                TenantError::Mismatch { .. } => {
                    ErrorResponse::new(S::FORBIDDEN, "tenant_mismatch", O::tenant_mismatch)
                }
            },
            Self::Identify(IdentifyError::Auth(e)) => match e {
                AuthError::Missing => ErrorResponse {
                    www_authenticate: Some(
                        "Bearer realm=\"cellgate\", error=\"invalid_request\", error_description=\"bearer token required\"",
                    ),
                    ..ErrorResponse::new(S::UNAUTHORIZED, "token_required", O::unauthorized)
                },
                AuthError::Invalid(_) => ErrorResponse {
                    www_authenticate: Some("Bearer realm=\"cellgate\", error=\"invalid_token\""),
                    ..ErrorResponse::new(S::UNAUTHORIZED, "invalid_token", O::unauthorized)
                },
                AuthError::Duplicate => {
                    ErrorResponse::new(S::BAD_REQUEST, "duplicate_authorization", O::bad_request)
                }
                AuthError::IssuerNotAllowed => {
                    ErrorResponse::new(S::FORBIDDEN, "issuer_not_allowed", O::issuer_not_allowed)
                }
                AuthError::TooLarge(_) => ErrorResponse::new(
                    S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "authorization_too_large",
                    O::unauthorized,
                ),
            },
            Self::Identify(IdentifyError::Key(KeyRefusal::Missing)) => ErrorResponse {
                www_authenticate: Some(KEY_CHALLENGE),
                ..ErrorResponse::new(S::UNAUTHORIZED, "api_key_required", O::unauthorized)
            },
            // One answer for every bad key: which check failed is in the metrics, not here.
            Self::Identify(IdentifyError::Key(_)) => ErrorResponse {
                www_authenticate: Some(KEY_CHALLENGE),
                ..ErrorResponse::new(S::UNAUTHORIZED, "invalid_api_key", O::unauthorized)
            },
            Self::Identify(IdentifyError::KeyLookup) => ErrorResponse {
                retry_after: Some(Duration::from_secs(1)),
                ..ErrorResponse::new(S::SERVICE_UNAVAILABLE, "registry_unavailable", O::not_ready)
            },
            Self::Entitle(_) | Self::Route(RouteError::NotEntitled(_)) => {
                ErrorResponse::new(S::FORBIDDEN, "not_entitled", O::not_entitled)
            }
            Self::Route(e) => match e {
                RouteError::NotReady => ErrorResponse {
                    retry_after: Some(Duration::from_secs(1)),
                    ..ErrorResponse::new(S::SERVICE_UNAVAILABLE, "not_ready", O::not_ready)
                },
                RouteError::RegistryUnavailable => ErrorResponse {
                    retry_after: Some(Duration::from_secs(1)),
                    ..ErrorResponse::new(
                        S::SERVICE_UNAVAILABLE,
                        "registry_unavailable",
                        O::not_ready,
                    )
                },
                RouteError::UnknownTenant => {
                    ErrorResponse::new(S::NOT_FOUND, "unknown_tenant", O::unknown_tenant)
                }
                RouteError::IssuerNotAllowed => {
                    ErrorResponse::new(S::FORBIDDEN, "issuer_not_allowed", O::issuer_not_allowed)
                }
                RouteError::Suspended => {
                    ErrorResponse::new(S::FORBIDDEN, "tenant_suspended", O::tenant_suspended)
                }
                RouteError::Migrating => ErrorResponse {
                    retry_after: Some(Duration::from_secs(5)),
                    ..ErrorResponse::new(
                        S::SERVICE_UNAVAILABLE,
                        "tenant_migrating",
                        O::cell_unavailable,
                    )
                },
                RouteError::CellMissing(_) | RouteError::CellDown(_) => ErrorResponse::new(
                    S::SERVICE_UNAVAILABLE,
                    "cell_unavailable",
                    O::cell_unavailable,
                ),
                RouteError::NotEntitled(_) => {
                    ErrorResponse::new(S::FORBIDDEN, "not_entitled", O::not_entitled)
                }
            },
            Self::Limit(e) => match e {
                Limited::Rate { wait, .. } => ErrorResponse {
                    retry_after: Some(Duration::from_secs(ceil_secs(*wait).max(1))),
                    ..ErrorResponse::new(S::TOO_MANY_REQUESTS, "rate_limited", O::rate_limited)
                },
                Limited::Concurrency { .. } => ErrorResponse {
                    retry_after: Some(Duration::from_secs(1)),
                    ..ErrorResponse::new(
                        S::TOO_MANY_REQUESTS,
                        "concurrency_limited",
                        O::rate_limited,
                    )
                },
                Limited::CellOverloaded(_) => ErrorResponse {
                    retry_after: Some(Duration::from_secs(1)),
                    ..ErrorResponse::new(
                        S::SERVICE_UNAVAILABLE,
                        "cell_overloaded",
                        O::cell_overloaded,
                    )
                },
            },
            Self::BodyLimit(BodyLimit::TooLarge) => {
                ErrorResponse::new(S::PAYLOAD_TOO_LARGE, "body_too_large", O::bad_request)
            }
            Self::BodyLimit(BodyLimit::Timeout) => {
                ErrorResponse::new(S::REQUEST_TIMEOUT, "request_timeout", O::bad_request)
            }
            Self::BodyLimit(BodyLimit::Framing(r)) => {
                ErrorResponse::new(r.status(), r.code(), O::bad_request)
            }
            Self::Upstream(e) => {
                let (status, code, kind) = match e {
                    UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. } => (
                        S::SERVICE_UNAVAILABLE,
                        "cell_unreachable",
                        UpstreamErrorKind::connect,
                    ),
                    UpstreamError::ResponseTimeout { .. } => (
                        S::GATEWAY_TIMEOUT,
                        "cell_timeout",
                        UpstreamErrorKind::timeout,
                    ),
                    UpstreamError::Protocol { .. } => {
                        (S::BAD_GATEWAY, "bad_gateway", UpstreamErrorKind::protocol)
                    }
                    // Nothing was attempted: a fast answer, not an upstream error.
                    UpstreamError::NoHealthyTarget { .. } => {
                        return ErrorResponse {
                            retry_after: Some(Duration::from_secs(1)),
                            ..ErrorResponse::new(
                                S::SERVICE_UNAVAILABLE,
                                "no_healthy_target",
                                O::cell_unavailable,
                            )
                        };
                    }
                };
                ErrorResponse {
                    upstream_kind: Some(kind),
                    ..ErrorResponse::new(status, code, O::upstream_error)
                }
            }
        }
    }
}

/// The `WWW-Authenticate` challenge of a 401 for an API key.
const KEY_CHALLENGE: &str = "ApiKey realm=\"cellgate\"";

/// The JSON body of an error answer: `{"error": code, "request_id": id}` plus `"cell"` when a
/// cell is involved and `"entitlement"` when one is missing. Codes, ids, cell ids and
/// entitlement names are from restricted charsets, so no escaping needed.
#[must_use]
pub fn error_body(
    code: &str,
    request_id: &str,
    cell: Option<&str>,
    entitlement: Option<&str>,
) -> String {
    let mut s = String::with_capacity(64 + request_id.len());
    s.push_str("{\"error\":\"");
    s.push_str(code);
    s.push_str("\",\"request_id\":\"");
    s.push_str(request_id);
    s.push('"');
    for (name, value) in [("cell", cell), ("entitlement", entitlement)] {
        if let Some(v) = value {
            s.push_str(",\"");
            s.push_str(name);
            s.push_str("\":\"");
            s.push_str(v);
            s.push('"');
        }
    }
    s.push('}');
    s
}

/// A gRPC status code, as `grpc-status` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcStatus(pub u8);

impl GrpcStatus {
    pub const INVALID_ARGUMENT: Self = Self(3);
    pub const DEADLINE_EXCEEDED: Self = Self(4);
    pub const NOT_FOUND: Self = Self(5);
    pub const PERMISSION_DENIED: Self = Self(7);
    pub const RESOURCE_EXHAUSTED: Self = Self(8);
    pub const INTERNAL: Self = Self(13);
    pub const UNAVAILABLE: Self = Self(14);
    pub const UNAUTHENTICATED: Self = Self(16);

    /// The status a refusal with HTTP `status` becomes for a gRPC client, as Envoy maps its
    /// local replies but closer to what each refusal means here (a 429 is a quota, not an
    /// outage; a 504 is a deadline).
    #[must_use]
    pub const fn of(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::INVALID_ARGUMENT,
            401 => Self::UNAUTHENTICATED,
            403 => Self::PERMISSION_DENIED,
            404 => Self::NOT_FOUND,
            413 | 414 | 429 | 431 => Self::RESOURCE_EXHAUSTED,
            502 | 503 => Self::UNAVAILABLE,
            504 => Self::DEADLINE_EXCEEDED,
            _ => Self::INTERNAL,
        }
    }

    /// The `grpc-status` header value.
    #[must_use]
    pub fn header(self) -> http::HeaderValue {
        http::HeaderValue::from(u16::from(self.0))
    }
}

/// The `grpc-message` of a refusal: the error code, the cell and the missing entitlement when
/// there are, and the request id (all from restricted charsets: nothing to percent-encode).
#[must_use]
pub fn grpc_message(
    code: &str,
    request_id: &str,
    cell: Option<&str>,
    entitlement: Option<&str>,
) -> String {
    let mut s = String::with_capacity(48 + request_id.len());
    s.push_str(code);
    for (name, value) in [("cell", cell), ("entitlement", entitlement)] {
        if let Some(v) = value {
            s.push_str(", ");
            s.push_str(name);
            s.push(' ');
            s.push_str(v);
        }
    }
    s.push_str(" (request id ");
    s.push_str(request_id);
    s.push(')');
    s
}

#[cfg(test)]
mod grpc_tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_grpc_statuses_that_mean_the_same() {
        let cases = [
            (400, 3),
            (401, 16),
            (403, 7),
            (404, 5),
            (413, 8),
            (414, 8),
            (429, 8),
            (431, 8),
            (500, 13),
            (502, 14),
            (503, 14),
            (504, 4),
        ];
        for (http, grpc) in cases {
            let s = StatusCode::from_u16(http).unwrap_or(StatusCode::OK);
            assert_eq!(GrpcStatus::of(s), GrpcStatus(grpc), "{http}");
        }
        assert_eq!(
            grpc_message("cell_unavailable", "r-1", Some("cell-2"), None),
            "cell_unavailable, cell cell-2 (request id r-1)"
        );
    }
}
