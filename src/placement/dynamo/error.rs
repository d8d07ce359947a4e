//! One line for every failed DynamoDB call. The SDK's errors nest four or five levels deep and
//! their `Debug` form runs to a kilobyte; [`describe`] reduces one to what an operator acts on:
//! the operation (`GetItem`), the table, the service's error code and message when it sent one,
//! and a hint for the usual causes (endpoint unreachable or too slow, no table, no or refused
//! credentials, no region, an endpoint that lacks the operation, access denied, throttling).
//! Every DynamoDB call of the registry's write path ([`super::write`]) and of the placement
//! source maps its error here, so the operator CLI prints and the proxy logs the same line.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// The usual causes of a failed call; each but [`Cause::Other`] carries a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No connection (refused, unknown host, TLS): nothing answered.
    Unreachable,
    /// No answer in time.
    TimedOut,
    /// The credentials chain found no credentials.
    NoCredentials,
    /// The service refused the credentials (unknown key, bad signature, expired token).
    CredentialsRefused,
    /// No region to find the endpoint by or to sign with.
    NoRegion,
    /// `ResourceNotFoundException`: no such table there.
    TableMissing,
    /// The credentials lack the permission.
    AccessDenied,
    /// The endpoint does not implement the operation.
    Unsupported,
    /// An answer that is no DynamoDB answer (an HTML page, another server's error).
    NotDynamo,
    /// The service throttled the call.
    Throttled,
    Other,
}

/// One failed call, in one line: `GetItem on table t: <detail>; <hint>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} on table {table}: {detail}{}", suffix(*.cause, .operation, .table))]
pub struct DynamoError {
    pub operation: &'static str,
    pub table: String,
    pub cause: Cause,
    /// The service's `code: message`, or what failed on the way, in one line.
    pub detail: String,
}

impl DynamoError {
    /// What to check, for every cause but [`Cause::Other`].
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        hint(self.cause, self.operation, &self.table)
    }
}

fn suffix(cause: Cause, operation: &str, table: &str) -> String {
    hint(cause, operation, table).map_or_else(String::new, |h| format!("; {h}"))
}

fn hint(cause: Cause, operation: &str, table: &str) -> Option<String> {
    const REACH: &str = "is the endpoint reachable? (--endpoint-url / AWS_ENDPOINT_URL)";
    Some(match cause {
        Cause::Unreachable | Cause::TimedOut => REACH.to_owned(),
        Cause::NoCredentials => "no AWS credentials found: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (any values do for a local endpoint)"
            .to_owned(),
        Cause::CredentialsRefused => "the credentials were refused: check AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, or AWS_PROFILE"
            .to_owned(),
        Cause::NoRegion => "no region: pass --region or set AWS_REGION".to_owned(),
        Cause::TableMissing => format!(
            "no table {table} there: run `cellgate registry init --table {table}`, or check \
             --table / CELLGATE_REGISTRY_TABLE and --region"
        ),
        Cause::AccessDenied => format!(
            "access denied: the credentials in use need dynamodb:{operation} on table {table}"
        ),
        Cause::Unsupported => format!("the endpoint does not implement {operation}"),
        Cause::NotDynamo => {
            format!("is --endpoint-url a DynamoDB endpoint? (it may not implement {operation})")
        }
        Cause::Throttled => "throttled by DynamoDB: try again shortly".to_owned(),
        Cause::Other => return None,
    })
}

/// Reduces an SDK error of `operation` on `table` to one line.
pub fn describe<E>(
    operation: &'static str,
    table: &str,
    err: &SdkError<E, HttpResponse>,
) -> DynamoError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let mut facts = Facts::default();
    let below: Option<&(dyn StdError + 'static)> = match err {
        SdkError::ServiceError(s) => {
            facts.kind = Kind::Service;
            facts.status = Some(s.raw().status().as_u16());
            facts.code = err.code().map(str::to_owned);
            facts.message = err.message().map(str::to_owned);
            facts.body = s
                .raw()
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            Some(s.err())
        }
        SdkError::ResponseError(r) => {
            facts.kind = Kind::Response;
            facts.status = Some(r.raw().status().as_u16());
            StdError::source(err)
        }
        SdkError::TimeoutError(_) => {
            facts.kind = Kind::Timeout;
            StdError::source(err)
        }
        SdkError::DispatchFailure(d) => {
            facts.kind = if d.is_timeout() {
                Kind::Timeout
            } else if d.is_io() {
                Kind::Connect
            } else {
                Kind::Dispatch
            };
            // Below the connector error, whose own text is only its kind (`io error`).
            d.as_connector_error().and_then(StdError::source)
        }
        SdkError::ConstructionFailure(_) => {
            facts.kind = Kind::Construction;
            StdError::source(err)
        }
        _ => StdError::source(err),
    };
    let mut next = below;
    while let Some(e) = next {
        if e.downcast_ref::<CredentialsError>().is_some() {
            facts.credentials = true;
        }
        facts.chain.push(e.to_string());
        next = e.source();
    }
    classify(operation, table, facts)
}

/// How the call failed, as the SDK's variants tell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Kind {
    /// The service answered with an error.
    Service,
    /// An answer came that could not be read.
    Response,
    Timeout,
    /// No connection (refused, unknown host, TLS).
    Connect,
    /// The request was not sent or no answer came for another reason (credentials, endpoint
    /// resolution, a dropped connection).
    Dispatch,
    /// The request could not be built.
    Construction,
    #[default]
    Other,
}

/// An SDK error reduced to plain data, so the rules below are tested without the SDK.
#[derive(Debug, Default)]
struct Facts {
    kind: Kind,
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    body: Option<String>,
    /// The causes' texts, outermost first.
    chain: Vec<String>,
    /// A credentials-provider error is among the causes.
    credentials: bool,
}

fn classify(operation: &'static str, table: &str, f: Facts) -> DynamoError {
    let tail = tail(&f.chain);
    let region = f
        .chain
        .iter()
        .any(|c| c.to_ascii_lowercase().contains("region"));
    let (cause, detail) = match f.kind {
        _ if f.credentials => (Cause::NoCredentials, tail),
        Kind::Dispatch | Kind::Construction if region => (Cause::NoRegion, tail),
        Kind::Timeout => (Cause::TimedOut, format!("timed out: {tail}")),
        Kind::Connect => (Cause::Unreachable, format!("cannot connect: {tail}")),
        Kind::Dispatch => (Cause::Unreachable, format!("request failed: {tail}")),
        Kind::Response => (
            Cause::NotDynamo,
            format!("unreadable answer ({}): {tail}", status(f.status)),
        ),
        Kind::Service => service(&f),
        Kind::Construction => (Cause::Other, format!("could not build the request: {tail}")),
        Kind::Other => (Cause::Other, tail),
    };
    DynamoError {
        operation,
        table: table.to_owned(),
        cause,
        detail,
    }
}

/// An error answer: by its code when it has one, else by its status and text.
fn service(f: &Facts) -> (Cause, String) {
    // Trimmed of a final full stop, which reads badly before the hint's `;`.
    let message = f
        .message
        .as_deref()
        .map(|m| one_line(m).trim_end_matches('.').to_owned())
        .unwrap_or_default();
    let unknown_op = {
        let m = message.to_ascii_lowercase();
        [
            "unknown operation",
            "unrecognized operation",
            "unrecognised operation",
        ]
        .iter()
        .chain(&["invalid action", "unknown action", "not implemented"])
        .any(|p| m.contains(p))
    };
    let Some(code) = f.code.as_deref() else {
        let cause = if f.status == Some(501) || unknown_op {
            Cause::Unsupported
        } else {
            Cause::NotDynamo
        };
        let text = if message.is_empty() {
            f.body.as_deref().map(one_line).unwrap_or_default()
        } else {
            message
        };
        // A success the SDK could not read is no error answer at all.
        let what = if f.status.is_some_and(|s| (200..300).contains(&s)) {
            format!("unreadable {} answer", status(f.status))
        } else {
            format!("{} without a DynamoDB error", status(f.status))
        };
        let detail = if text.is_empty() {
            what
        } else {
            format!("{what}: {}", clip(&text, 120))
        };
        return (cause, detail);
    };
    let bare = code.strip_suffix("Exception").unwrap_or(code);
    let cause = match bare {
        "ResourceNotFound" => Cause::TableMissing,
        "AccessDenied" => Cause::AccessDenied,
        "UnrecognizedClient"
        | "InvalidSignature"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "IncompleteSignature" => Cause::CredentialsRefused,
        "UnknownOperation" | "InvalidAction" | "NotImplemented" | "UnsupportedOperation" => {
            Cause::Unsupported
        }
        "Throttling" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded" => Cause::Throttled,
        _ if unknown_op => Cause::Unsupported,
        _ => Cause::Other,
    };
    let detail = if message.is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {}", clip(&message, 300))
    };
    (cause, detail)
}

fn status(s: Option<u16>) -> String {
    s.map_or_else(|| "an answer".to_owned(), |s| format!("HTTP {s}"))
}

/// The innermost two causes (the specific one and its context, e.g. `tcp connect error:
/// Connection refused`), each on one line; a cause that is a `Debug` dump is left out.
fn tail(chain: &[String]) -> String {
    let readable: Vec<String> = chain
        .iter()
        .map(|c| one_line(c))
        .filter(|c| !c.is_empty() && !c.contains("{ ") && !c.contains("Some("))
        .collect();
    let start = readable.len().saturating_sub(2);
    let mut parts: Vec<&str> = Vec::new();
    for c in &readable[start..] {
        // `a: b` followed by `b` says `b` twice.
        if parts.last().is_some_and(|p| p.ends_with(c.as_str())) {
            continue;
        }
        parts.push(c);
    }
    let joined = parts.join(": ");
    if joined.is_empty() {
        "no detail from the SDK".to_owned()
    } else {
        clip(&joined, 300)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
