//! gRPC calls at the edge: recognising one, and its deadline.
//!
//! A call is an HTTP/2 request whose `content-type` is `application/grpc` or
//! `application/grpc+…` (gRPC needs HTTP/2, so an HTTP/1 request costs one version compare).
//! Its refusals are written in gRPC's terms ([`super::refuse`]). Its `grpc-timeout` (the
//! client's deadline: up to 8 digits and a unit, `H M S m u n`) bounds the whole exchange, head
//! and body, never beyond the proxy's own `upstream.total_timeout`; the cell is told what is
//! left of it when the request leaves, so it never believes it has longer than the proxy will
//! wait. A malformed `grpc-timeout` is ignored and forwarded as it came, as Envoy does.
//!
//! A routed call's answer is watched as it streams back ([`Call`]): its `grpc-status` (in the
//! head of a trailers-only answer, else in the trailers) goes to the access log and to
//! `cellgate_grpc_responses_total`, and its message framing is followed, so a call whose
//! tenant moves to another cell ends between two messages with `UNAVAILABLE` (a status gRPC
//! clients retry), never in the middle of one.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use tokio::time::Instant;

use crate::headers::{GRPC_MESSAGE, GRPC_STATUS};
use crate::metrics::CellMetrics;

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// A routed call's answer as it streams back.
#[derive(Debug)]
pub struct Call {
    cell: Arc<CellMetrics>,
    status: Option<u16>,
    /// Bytes of the current message's 5-byte prefix seen (0: between messages).
    prefix: u8,
    len: [u8; 4],
    /// Bytes of the current message left after its prefix.
    left: u64,
    /// Its tenant left the cell: end at the next message boundary.
    pub moved: bool,
}

impl Call {
    /// Watches the answer whose head is `head` (a trailers-only answer has its status there).
    #[must_use]
    pub fn new(cell: Arc<CellMetrics>, head: &HeaderMap) -> Self {
        Self {
            cell,
            status: status_of(head),
            prefix: 0,
            len: [0; 4],
            left: 0,
            moved: false,
        }
    }

    /// Follows the message framing over one chunk of the body.
    pub fn data(&mut self, mut d: &[u8]) {
        while !d.is_empty() {
            if self.prefix < 5 {
                if self.prefix > 0 {
                    self.len[usize::from(self.prefix) - 1] = d[0];
                }
                self.prefix += 1;
                d = &d[1..];
                if self.prefix == 5 {
                    self.left = u64::from(u32::from_be_bytes(self.len));
                    if self.left == 0 {
                        self.prefix = 0;
                    }
                }
            } else {
                let n = d
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.left -= n as u64;
                d = &d[n..];
                if self.left == 0 {
                    self.prefix = 0;
                }
            }
        }
    }

    /// Between two messages (or before the first).
    #[must_use]
    pub const fn at_boundary(&self) -> bool {
        self.prefix == 0
    }

    /// The answer's trailers.
    pub fn trailers(&mut self, t: &HeaderMap) {
        if let Some(s) = status_of(t) {
            self.status = Some(s);
        }
    }

    /// Ends the call for its moved tenant: the trailers to send, `UNAVAILABLE`.
    pub fn end_moved(&mut self) -> HeaderMap {
        self.status = Some(14);
        let mut t = HeaderMap::with_capacity(2);
        t.insert(GRPC_STATUS, HeaderValue::from_static("14"));
        t.insert(
            GRPC_MESSAGE,
            HeaderValue::from_static("tenant_moved: the tenant moved to another cell; retry"),
        );
        t
    }

    /// Counts the call by its status (none: it was cut) and returns that status.
    pub fn finish(self) -> Option<u16> {
        self.cell.grpc_answered(self.status);
        self.status
    }
}

fn status_of(h: &HeaderMap) -> Option<u16> {
    h.get(GRPC_STATUS)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.parse().ok())
}

/// Whether the request is a gRPC call.
#[must_use]
pub fn is_grpc(parts: &Parts) -> bool {
    parts.version == http::Version::HTTP_2
        && parts.headers.get(CONTENT_TYPE).is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(b"application/grpc") && matches!(v.get(16), None | Some(b'+' | b';'))
        })
}

/// A `grpc-timeout` value as a duration (`None`: malformed).
#[must_use]
pub fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `d` as a `grpc-timeout` value: milliseconds, rounded up (at least 1), or whole seconds past
/// what 8 digits of milliseconds hold.
#[must_use]
pub fn format_timeout(d: Duration) -> HeaderValue {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    let text = if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    };
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("1m"))
}

/// The call's deadline: `deadline` (the proxy's own), or the client's `grpc-timeout` from
/// `arrived` when sooner; a valid `grpc-timeout` is rewritten to what is left at `sent`.
pub fn bound(
    headers: &mut HeaderMap,
    arrived: Instant,
    sent: Instant,
    deadline: Instant,
) -> Instant {
    let Some(timeout) = headers
        .get(&GRPC_TIMEOUT)
        .and_then(|v| parse_timeout(v.as_bytes()))
    else {
        return deadline;
    };
    let deadline = deadline.min(arrived + timeout);
    headers.insert(
        GRPC_TIMEOUT,
        format_timeout(deadline.saturating_duration_since(sent)),
    );
    deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_follow_message_framing_and_status() {
        let m = crate::metrics::Metrics::new();
        let mut c = Call::new(m.cell("a"), &HeaderMap::new());
        assert!(c.at_boundary());
        // One message of 3 bytes split across chunks, then an empty one, then half a prefix.
        c.data(&[0, 0, 0]);
        assert!(!c.at_boundary());
        c.data(&[0, 3, b'a']);
        assert!(!c.at_boundary());
        c.data(&[b'b', b'c', 0, 0, 0, 0, 0]);
        assert!(c.at_boundary());
        c.data(&[1, 0]);
        assert!(!c.at_boundary());
        let mut t = HeaderMap::new();
        t.insert(GRPC_STATUS, HeaderValue::from_static("5"));
        c.trailers(&t);
        assert_eq!(c.finish(), Some(5));
        let mut head = HeaderMap::new();
        head.insert(GRPC_STATUS, HeaderValue::from_static("16"));
        assert_eq!(Call::new(m.cell("a"), &head).finish(), Some(16));
    }

    #[test]
    fn timeouts_parse_as_the_grpc_spec_writes_them() {
        let ok = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("30S", Duration::from_secs(30)),
            ("250m", Duration::from_millis(250)),
            ("99999999u", Duration::from_micros(99_999_999)),
            ("5n", Duration::from_nanos(5)),
        ];
        for (text, d) in ok {
            assert_eq!(parse_timeout(text.as_bytes()), Some(d), "{text}");
        }
        for bad in [
            "",
            "m",
            "1",
            "123456789m",
            "-1S",
            "1.5S",
            "10s",
            "1 S",
            "1SS",
        ] {
            assert_eq!(parse_timeout(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_cell_is_told_what_is_left_never_more_than_the_proxy_waits() {
        let t0 = Instant::now();
        let sent = t0 + Duration::from_millis(40);
        let ours = t0 + Duration::from_secs(10);
        let mut h = HeaderMap::new();
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("250m"));
        assert_eq!(
            bound(&mut h, t0, sent, ours),
            t0 + Duration::from_millis(250)
        );
        assert_eq!(h[&GRPC_TIMEOUT], "210m");
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("1H"));
        assert_eq!(bound(&mut h, t0, sent, ours), ours, "ours is sooner");
        assert_eq!(h[&GRPC_TIMEOUT], "9960m");
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("soon"));
        assert_eq!(bound(&mut h, t0, sent, ours), ours);
        assert_eq!(
            h[&GRPC_TIMEOUT], "soon",
            "malformed: ignored, forwarded as it came"
        );
        let mut none = HeaderMap::new();
        assert_eq!(bound(&mut none, t0, sent, ours), ours);
        assert!(none.is_empty());
        assert_eq!(format_timeout(Duration::from_nanos(1)), "1m");
        assert_eq!(format_timeout(Duration::from_secs(200_000)), "200000S");
    }
}
