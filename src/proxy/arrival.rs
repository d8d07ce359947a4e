//! What a request looked like when it arrived: its start, id, method and target, kept apart
//! from the parts the stages rewrite, for the answer, the metrics and the access-log line.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::HeaderValue;
use http::request::Parts;
use http::{Method, Uri};
use tokio::time::Instant;

use super::rewrite;
use crate::accesslog::Record;
use crate::apikey::KeyId;
use crate::metering::answer::BytesIn;
use crate::metrics::Outcome;
use crate::otel::{Extra, Trace};
use crate::tenant::{TenantId, TenantSource};

#[derive(Debug)]
pub struct Arrival {
    pub start: Instant,
    pub request_id: HeaderValue,
    pub method: Method,
    pub uri: Uri,
    /// The API key that identified the request, once the identify stage has checked it.
    pub api_key: Option<KeyId>,
    /// Request body bytes received, counted when the request is metered and has a body.
    pub bytes_in: BytesIn,
    /// The route class usage is metered under (set once the tenant is known, when metering).
    pub route: Option<u8>,
    /// A gRPC call (HTTP/2, `content-type: application/grpc…`): refused in gRPC's terms.
    pub grpc: bool,
    /// Its place in its trace (`[tracing]`; `None`: off).
    pub trace: Option<Trace>,
    /// How its tenant was identified, once it was.
    pub source: Option<TenantSource>,
    /// A sampled request's target group, once placed (for its span).
    pub group: Option<Arc<str>>,
}

impl Arrival {
    /// Reads the request id (a valid incoming one, else a fresh one) and starts the clock.
    #[must_use]
    pub fn of(parts: &Parts) -> Self {
        Self {
            start: Instant::now(),
            request_id: rewrite::request_id(&parts.headers),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            api_key: None,
            bytes_in: None,
            route: None,
            grpc: super::grpc::is_grpc(parts),
            trace: None,
            source: None,
            group: None,
        }
    }

    /// A request known only by the raw head the desync guard refused: its method and target
    /// when they can be read (else `-` and `*`), a fresh id.
    #[must_use]
    pub fn raw(head: &[u8]) -> Self {
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let mut words = line.split(|&b| b == b' ');
        let method = words.next().and_then(|m| Method::from_bytes(m).ok());
        let uri = words.next().and_then(|t| Uri::try_from(t).ok());
        Self {
            start: Instant::now(),
            request_id: rewrite::request_id(&http::HeaderMap::new()),
            method: method
                .or_else(|| Method::from_bytes(b"-").ok())
                .unwrap_or_default(),
            uri: uri.unwrap_or_else(|| Uri::from_static("*")),
            api_key: None,
            bytes_in: None,
            route: None,
            grpc: false,
            trace: None,
            source: None,
            group: None,
        }
    }

    /// Whether this request's span is recorded (sampled).
    #[must_use]
    pub fn traced(&self) -> bool {
        self.trace.as_ref().is_some_and(|t| t.recording.is_some())
    }

    /// What its span says beyond the access-log record, with the admit stage's decision.
    #[must_use]
    pub fn extra(&self, code: Option<&'static str>, limit: Option<&'static str>) -> Extra {
        Extra {
            source: self.source.map(TenantSource::as_str),
            group: self.group.clone(),
            code,
            limit,
        }
    }

    /// The access-log record of this request so far (bytes and the total are filled in when
    /// its body ends).
    #[must_use]
    pub fn record(
        &self,
        tenant: Option<TenantId>,
        cell: Option<&Arc<str>>,
        target: Option<&Arc<str>>,
        status: u16,
        upstream: Option<Duration>,
        outcome: Outcome,
    ) -> Record {
        Record {
            time: SystemTime::now()
                .checked_sub(self.start.elapsed())
                .unwrap_or_else(SystemTime::now),
            request_id: self.request_id.clone(),
            tenant,
            api_key: self.api_key,
            cell: cell.cloned(),
            target: target.cloned(),
            method: self.method.clone(),
            uri: self.uri.clone(),
            status,
            bytes: 0,
            upstream,
            total: self.start.elapsed(),
            outcome,
            incomplete: false,
            grpc_status: None,
            trace: self.trace.as_ref().map(Trace::ids),
        }
    }
}
