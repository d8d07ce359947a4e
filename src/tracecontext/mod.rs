//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) as the edge reads and writes it:
//! `traceparent` parsed without allocating, the sampling decision taken before any span exists
//! (parent-based, a ratio for new traces), and the `traceparent` a cell receives, formatted into
//! a fixed buffer.
//!
//! A leaf: plain values in, plain values out. Whether a client's `traceparent` is taken at all
//! (`tracing.trust_incoming`) is the caller's to decide; this module only reads one it is given.
//! [`children`] collects a traced request's child spans from the stages that spend its time.

pub mod children;

use std::fmt;

use http::HeaderValue;

/// A trace id (16 bytes, never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span id (8 bytes, never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len() * 2];
    hex_out(bytes, out);
    f.write_str(std::str::from_utf8(out).unwrap_or_default())
}

/// What a valid incoming `traceparent` says: the trace, the caller's span, its sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// Reads a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`, lower-case hex). Version `00`
/// must be exactly 55 bytes; a later version may carry more after a `-` (the spec's forward
/// compatibility); version `ff`, all-zero ids and upper-case hex are refused.
#[must_use]
pub fn parse_traceparent(v: &HeaderValue) -> Option<Parent> {
    let b = v.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = hex_byte(b[0], b[1])?;
    if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    hex_into(&b[3..35], &mut trace)?;
    hex_into(&b[36..52], &mut span)?;
    let flags = hex_byte(b[53], b[54])?;
    if trace == [0; 16] || span == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id: TraceId(trace),
        span_id: SpanId(span),
        sampled: flags & 1 == 1,
    })
}

/// Whether a request is traced: a parent's decision is kept (parent-based sampling); a new
/// trace is sampled with probability `ratio` (0.0 to 1.0). `draw` is a uniform value in
/// [0, 1), given by the caller so the decision is testable.
#[must_use]
pub fn sampled(parent: Option<&Parent>, ratio: f64, draw: f64) -> bool {
    match parent {
        Some(p) => p.sampled,
        None => draw < ratio,
    }
}

/// A fresh, non-zero trace id.
#[must_use]
pub fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return TraceId(id);
        }
    }
}

/// A fresh, non-zero span id.
#[must_use]
pub fn new_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return SpanId(id);
        }
    }
}

/// The `traceparent` a cell receives: version 00, the trace, the proxy's span as its parent.
#[must_use]
pub fn traceparent(trace: TraceId, span: SpanId, sampled: bool) -> HeaderValue {
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    hex_out(&trace.0, &mut out[3..35]);
    out[35] = b'-';
    hex_out(&span.0, &mut out[36..52]);
    out[52] = b'-';
    out[53] = b'0';
    out[54] = if sampled { b'1' } else { b'0' };
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_out(src: &[u8], dst: &mut [u8]) {
    for (i, b) in src.iter().enumerate() {
        dst[2 * i] = HEX[usize::from(b >> 4)];
        dst[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// One lower-case hex digit.
const fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some((nibble(hi)? << 4) | nibble(lo)?)
}

fn hex_into(src: &[u8], dst: &mut [u8]) -> Option<()> {
    for (i, slot) in dst.iter_mut().enumerate() {
        *slot = hex_byte(src[2 * i], src[2 * i + 1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_reads_and_writes_back() {
        let p = parse_traceparent(&HeaderValue::from_static(GOOD)).unwrap();
        assert!(p.sampled);
        assert_eq!(traceparent(p.trace_id, p.span_id, true), GOOD);
        let unsampled = GOOD.replace("-01", "-00");
        let p = parse_traceparent(&HeaderValue::from_str(&unsampled).unwrap()).unwrap();
        assert!(!p.sampled);
        // Other flag bits are ignored; only "sampled" is read.
        let flags = GOOD.replace("-01", "-03");
        assert!(
            parse_traceparent(&HeaderValue::from_str(&flags).unwrap())
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(
                parse_traceparent(&HeaderValue::from_str(bad).unwrap()),
                None,
                "{bad}"
            );
        }
        // A later version may append fields after a dash.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later";
        assert!(parse_traceparent(&HeaderValue::from_static(future)).is_some());
    }

    #[test]
    fn a_parents_decision_is_kept_and_new_traces_follow_the_ratio() {
        let p = parse_traceparent(&HeaderValue::from_static(GOOD)).unwrap();
        assert!(sampled(Some(&p), 0.0, 0.99));
        let off = Parent {
            sampled: false,
            ..p
        };
        assert!(!sampled(Some(&off), 1.0, 0.0));
        assert!(sampled(None, 0.25, 0.2) && !sampled(None, 0.25, 0.3));
        assert!(!sampled(None, 0.0, 0.0) && sampled(None, 1.0, 0.999_999));
        let n = 100_000;
        let hits = (0..n)
            .filter(|_| sampled(None, 0.01, fastrand::f64()))
            .count();
        // 1% of 100,000: 1,000 expected, standard deviation about 31.
        assert!((800..1200).contains(&hits), "{hits}");
    }

    #[test]
    fn ids_display_as_lower_case_hex() {
        let p = parse_traceparent(&HeaderValue::from_static(GOOD)).unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn fresh_ids_are_non_zero_and_round_trip() {
        for _ in 0..1000 {
            let (t, s) = (new_trace_id(), new_span_id());
            assert!(t.0 != [0; 16] && s.0 != [0; 8]);
            let v = traceparent(t, s, false);
            let p = parse_traceparent(&v).unwrap();
            assert_eq!((p.trace_id, p.span_id, p.sampled), (t, s, false));
        }
    }
}
