//! `[tracing]`, validated: where OTLP/HTTP spans go, how many requests are traced, whose
//! `traceparent` is believed, and the export queue's bounds.
//!
//! Off unless the section is present: with it absent the request path does no tracing work
//! and a client's `traceparent` passes through untouched, as before.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use serde::Deserialize;

use super::parse::{dur, in_range};
use crate::rules::FieldError;

/// `[tracing]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTracing {
    pub otlp_endpoint: Option<String>,
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub trust_incoming: Option<String>,
    pub batch_size: Option<usize>,
    pub queue_size: Option<usize>,
    pub export_interval: Option<String>,
    pub export_timeout: Option<String>,
    /// Extra headers on every export (a vendor's API key, say); never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Whose `traceparent` and `tracestate` the proxy continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustIncoming {
    /// Every request starts a new trace (the edge facing the internet).
    Never,
    /// Only requests from `server.trusted_hops` continue their trace (the default).
    TrustedHops,
    /// Every request's valid `traceparent` is continued.
    Always,
}

/// Where spans are sent: an OTLP/HTTP (protobuf) traces endpoint.
#[derive(Debug, Clone)]
pub struct OtlpEndpoint {
    /// The whole URL, for the request's target and the log.
    pub uri: Uri,
    pub tls: bool,
    /// Host name or address to connect to (and the TLS server name).
    pub host: String,
    pub port: u16,
}

/// Tracing's settings.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    pub endpoint: OtlpEndpoint,
    /// Fraction of new traces sampled (a parent's decision is kept).
    pub sample_ratio: f64,
    pub service_name: String,
    pub trust_incoming: TrustIncoming,
    /// Spans per export request (a request's server span and its children are never split).
    pub batch_size: usize,
    /// Traced requests waiting for export (each with its server span and children); past it,
    /// their spans are dropped and counted.
    pub queue_size: usize,
    /// Longest a span waits before a partly filled batch is sent.
    pub export_interval: Duration,
    /// Longest one export may take (connect, send, answer).
    pub export_timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn build_tracing(t: Option<&FileTracing>) -> Result<Option<TracingConfig>, FieldError> {
    let Some(t) = t else {
        return Ok(None);
    };
    let raw = t.otlp_endpoint.as_deref().ok_or_else(|| {
        FieldError::new(
            "tracing.otlp_endpoint",
            "",
            "required: the OTLP/HTTP traces URL, e.g. \"http://127.0.0.1:4318/v1/traces\"",
        )
    })?;
    let endpoint = endpoint(raw)?;
    let sample_ratio = in_range(
        "tracing.sample_ratio",
        t.sample_ratio.unwrap_or(1.0),
        0.0,
        1.0,
    )?;
    let service_name = t.service_name.clone().unwrap_or_else(|| "cellgate".into());
    if service_name.is_empty() || service_name.len() > 128 {
        return Err(FieldError::new(
            "tracing.service_name",
            &service_name,
            "must be 1 to 128 characters",
        ));
    }
    let trust_incoming = match t.trust_incoming.as_deref().unwrap_or("trusted_hops") {
        "never" => TrustIncoming::Never,
        "trusted_hops" => TrustIncoming::TrustedHops,
        "always" => TrustIncoming::Always,
        other => {
            return Err(FieldError::new(
                "tracing.trust_incoming",
                other,
                "must be \"never\", \"trusted_hops\" or \"always\"",
            ));
        }
    };
    let batch_size = in_range("tracing.batch_size", t.batch_size.unwrap_or(512), 1, 10_000)?;
    let queue_size = t.queue_size.unwrap_or(4096.max(batch_size));
    if queue_size < batch_size || queue_size > 1_000_000 {
        return Err(FieldError::new(
            "tracing.queue_size",
            queue_size,
            format!("must be between tracing.batch_size ({batch_size}) and 1000000"),
        ));
    }
    let export_interval = dur(
        "tracing.export_interval",
        t.export_interval.as_ref(),
        Duration::from_secs(2),
    )?;
    let export_timeout = dur(
        "tracing.export_timeout",
        t.export_timeout.as_ref(),
        Duration::from_secs(10),
    )?;
    for (key, d) in [
        ("tracing.export_interval", export_interval),
        ("tracing.export_timeout", export_timeout),
    ] {
        if d < Duration::from_millis(10) || d > Duration::from_secs(300) {
            return Err(FieldError::new(
                key,
                humantime::format_duration(d),
                "must be between 10ms and 5m",
            ));
        }
    }
    let mut headers = Vec::with_capacity(t.headers.len());
    for (name, value) in &t.headers {
        let key = format!("tracing.headers.{name}");
        let n = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| FieldError::new(&key, name, "not a valid header name"))?;
        // The value may be a secret: the error names the key, never the value.
        let v = HeaderValue::from_str(value)
            .map_err(|_| FieldError::new(&key, "(hidden)", "not a valid header value"))?;
        headers.push((n, v));
    }
    Ok(Some(TracingConfig {
        endpoint,
        sample_ratio,
        service_name,
        trust_incoming,
        batch_size,
        queue_size,
        export_interval,
        export_timeout,
        headers,
    }))
}

fn endpoint(raw: &str) -> Result<OtlpEndpoint, FieldError> {
    let key = "tracing.otlp_endpoint";
    let bad = |why: &str| FieldError::new(key, raw, why);
    let uri: Uri = raw
        .parse()
        .map_err(|_| bad("not a URL; use e.g. \"http://127.0.0.1:4318/v1/traces\""))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if uri.path() == "/" || uri.path().is_empty() {
        return Err(bad(
            "give the traces path too (OTLP/HTTP's is /v1/traces), e.g. \"http://collector:4318/v1/traces\"",
        ));
    }
    if uri.query().is_some() {
        return Err(bad("no query string"));
    }
    Ok(OtlpEndpoint {
        uri,
        tls,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(endpoint: &str) -> FileTracing {
        FileTracing {
            otlp_endpoint: Some(endpoint.into()),
            ..FileTracing::default()
        }
    }

    #[test]
    fn defaults_and_endpoint() {
        let c = build_tracing(Some(&file("http://127.0.0.1:4318/v1/traces")))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.endpoint.host.as_str(), c.endpoint.port),
            ("127.0.0.1", 4318)
        );
        assert!(!c.endpoint.tls);
        assert_eq!(c.trust_incoming, TrustIncoming::TrustedHops);
        assert!((c.sample_ratio - 1.0).abs() < f64::EPSILON);
        assert_eq!((c.batch_size, c.queue_size), (512, 4096));
        let c = build_tracing(Some(&file("https://otel.example.com/v1/traces")))
            .unwrap()
            .unwrap();
        assert_eq!((c.endpoint.port, c.endpoint.tls), (443, true));
        assert!(build_tracing(None).unwrap().is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (f, key) in [
            (file("127.0.0.1:4318"), "tracing.otlp_endpoint"),
            (file("ftp://h/v1/traces"), "tracing.otlp_endpoint"),
            (file("http://h:4318"), "tracing.otlp_endpoint"),
            (FileTracing::default(), "tracing.otlp_endpoint"),
            (
                FileTracing {
                    sample_ratio: Some(1.5),
                    ..file("http://h/v1/traces")
                },
                "tracing.sample_ratio",
            ),
            (
                FileTracing {
                    trust_incoming: Some("sometimes".into()),
                    ..file("http://h/v1/traces")
                },
                "tracing.trust_incoming",
            ),
            (
                FileTracing {
                    batch_size: Some(100),
                    queue_size: Some(10),
                    ..file("http://h/v1/traces")
                },
                "tracing.queue_size",
            ),
            (
                FileTracing {
                    export_timeout: Some("1ms".into()),
                    ..file("http://h/v1/traces")
                },
                "tracing.export_timeout",
            ),
        ] {
            let e = build_tracing(Some(&f)).unwrap_err();
            assert_eq!(e.key, key, "{e:?}");
        }
        let secret = FileTracing {
            headers: [("x-api-key".to_owned(), "sec\nret".to_owned())].into(),
            ..file("http://h/v1/traces")
        };
        let e = build_tracing(Some(&secret)).unwrap_err();
        assert!(!format!("{e:?}").contains("sec"), "{e:?}");
    }
}
