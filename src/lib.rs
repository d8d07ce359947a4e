//! cellgate: an edge proxy for cell-based SaaS.
//!
//! It identifies the tenant of each request (a verified JWT claim, the subdomain, or a header
//! from a trusted hop), looks up the tenant's cell in a hot-swapped placement snapshot, and
//! forwards to that cell's targets. The modules follow the request's stages; see
//! [`proxy`] for the stage chart.

pub mod accesslog;
pub mod admin;
pub mod apikey;
pub mod auth;
pub mod aws;
pub mod certs;
pub mod config;
pub mod demo;
pub mod desync;
pub mod entitle;
pub mod error;
pub mod hash;
pub mod headers;
pub mod hygiene;
pub mod identify;
pub mod metering;
pub mod metrics;
pub mod ops;
pub mod otel;
pub mod paths;
pub mod placement;
pub mod proxy;
pub mod ratelimit;
pub mod routing;
pub mod rules;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tenant;
pub mod tls_client;
pub mod tracecontext;
pub mod upstream;
