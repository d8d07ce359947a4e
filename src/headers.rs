//! The header vocabulary: the names cellgate sets, strips or reads, in one place, so the
//! rewrite stage, the config's checks and the refusals agree on them. It imports nothing of ours.

use http::header::{self, HeaderName};

/// The trusted tenant id, set by the proxy.
pub const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
/// The cell the request was routed to, set by the proxy.
pub const X_CELL_ID: HeaderName = HeaderName::from_static("x-cell-id");
/// Request correlation id: a valid incoming one is kept, else one is generated.
/// The id of the API key that identified the request (never the key): set by the proxy.
pub const X_API_KEY_ID: HeaderName = HeaderName::from_static("x-api-key-id");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A gRPC call's status code (a refusal's, in a trailers-only response).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// A gRPC call's status message.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The quota a 429 was judged under (IETF httpapi RateLimit draft): `"tier";q=50;w=1`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// What is left of it: `"tier";r=0;t=1`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// W3C Trace Context: the trace and the caller's span (`[tracing]`).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C Trace Context: vendors' trace state, passed on only with a continued `traceparent`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers meaningful for one hop only.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// Headers a client must never be able to set for the cell (the proxy sets the trusted ones).
pub const INTERNAL: [HeaderName; 9] = [
    X_TENANT_ID,
    X_API_KEY_ID,
    X_CELL_ID,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    header::PROXY_AUTHORIZATION,
];
