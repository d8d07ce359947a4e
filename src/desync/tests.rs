//! Unit tests of the classifier, the chunked follower and the stream tracker (the corpus of
//! raw requests replayed against a running proxy is `tests/desync.rs`).
#![allow(clippy::unwrap_used, clippy::panic)]

use super::chunked::{Chunked, Progress};
use super::head::{Framing, Limits, Scan, classify};
use super::tracker::{Stop, Tracker};
use super::{Action, Class, Decision, Mode, Reason};

const LIMITS: Limits = Limits {
    max_head: 1024,
    max_headers: 8,
    max_uri: 64,
};

fn head(s: &str) -> Scan {
    classify(s.as_bytes(), &LIMITS)
}

fn worst(s: &str) -> Option<Reason> {
    match head(s) {
        Scan::Complete(h) => h.worst,
        Scan::Refused(r) => Some(r),
        Scan::Incomplete => panic!("incomplete: {s:?}"),
    }
}

#[test]
fn compliant_heads_pass_with_their_framing() {
    let get = "GET /a?b=c HTTP/1.1\r\nHost: acme.app.test\r\nAccept: */*\r\n\r\n";
    let Scan::Complete(h) = head(get) else {
        panic!()
    };
    assert_eq!(
        (h.len, h.worst, h.framing),
        (get.len(), None, Framing::None)
    );
    let post = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n";
    assert!(
        matches!(head(post), Scan::Complete(h) if h.framing == Framing::Length(12) && h.worst.is_none())
    );
    let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n";
    assert!(
        matches!(head(chunked), Scan::Complete(h) if h.framing == Framing::Chunked && h.worst.is_none())
    );
    let ws = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    assert!(matches!(head(ws), Scan::Complete(h) if h.upgrade));
    let connect = "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n";
    assert!(matches!(head(connect), Scan::Complete(h) if h.upgrade && h.worst.is_none()));
    let absolute = "GET http://ACME.app.test/x HTTP/1.1\r\nHost: acme.app.test\r\n\r\n";
    assert_eq!(worst(absolute), None);
}

#[test]
fn each_finding_has_its_reason() {
    use Reason as R;
    let cases: &[(&str, R)] = &[
        ("GET / HTTP/1.1\nHost: a\n\n", R::BareLf),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: caf\u{e9}\r\n\r\n",
            R::NonAsciiValue,
        ),
        (
            "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
            R::NonAsciiTarget,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            R::ZeroLengthOnGet,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            R::LengthAndChunked,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
            R::DuplicateLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer---Encoding: chunked\r\n\r\n",
            R::FramingLookalike,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 4\r\n\r\n",
            R::FramingLookalike,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContentLength: 4\r\n\r\n",
            R::FramingLookalike,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            R::UnexpectedBody,
        ),
        (
            "HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            R::UnexpectedBody,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            R::TransferEncoding,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            R::TransferEncoding,
        ),
        ("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", R::BadMethod),
        ("GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", R::BadTarget),
        ("GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n", R::BadTarget),
        ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", R::BadVersion),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", R::BadVersion),
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", R::BadRequestLine),
        ("GET /\r\n\r\n", R::BadRequestLine),
        ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", R::BadRequestLine),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: 1\r\n\r\n",
            R::BadHeaderName,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encod\u{131}ng: chunked\r\n\r\n",
            R::BadHeaderName,
        ),
        ("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", R::BadHeaderName),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            R::SpaceBeforeColon,
        ),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", R::MissingColon),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
            R::ObsFold,
        ),
        (
            "GET / HTTP/1.1\r\n\tTransfer-Encoding: chunked\r\nHost: a\r\n\r\n",
            R::ObsFold,
        ),
        ("GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", R::BareCr),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            R::BadHeaderValue,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
            R::BadHeaderValue,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n",
            R::BadContentLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n",
            R::BadContentLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            R::BadContentLength,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            R::DifferentLengths,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            R::NotChunked,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            R::NotChunked,
        ),
        (
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            R::ChunkedHttp10,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            R::SeveralHosts,
        ),
        ("GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", R::HostMismatch),
    ];
    for (raw, want) in cases {
        assert_eq!(worst(raw), Some(*want), "{raw:?}");
    }
}

#[test]
fn limits_are_the_proxys_own() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(64));
    assert_eq!(worst(&long_target), Some(Reason::UriTooLong));
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "X: 1\r\n".repeat(8));
    assert_eq!(worst(&many), Some(Reason::TooManyHeaders));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(1024)
    );
    assert_eq!(worst(&big), Some(Reason::HeadTooLarge));
    // Incomplete and already over the limit: refused without waiting for the rest.
    let open = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(1100));
    assert_eq!(head(&open), Scan::Refused(Reason::HeadTooLarge));
}

#[test]
fn a_head_is_incomplete_until_its_empty_line_unless_already_refused() {
    let full = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    for cut in 0..full.len() {
        assert_eq!(head(&full[..cut]), Scan::Incomplete, "{cut}");
    }
    // A NUL is refused whatever follows.
    assert_eq!(
        head("GET / HTTP/1.1\r\nX: \x00"),
        Scan::Refused(Reason::BadHeaderValue)
    );
    assert_eq!(head("GET / HTTP/1.1\r\nHost: a\r"), Scan::Incomplete);
}

#[test]
fn the_mode_table_is_albs() {
    use Action::{Forward, ForwardClose as Close, Refuse};
    let want = |class| match class {
        Class::Compliant => [Forward, Forward, Forward],
        Class::Acceptable => [Forward, Forward, Refuse],
        Class::Ambiguous => [Forward, Close, Refuse],
        Class::Severe => [Forward, Refuse, Refuse],
    };
    for r in Reason::ALL {
        let got = [Mode::Monitor, Mode::Defensive, Mode::Strictest].map(|m| m.action(r));
        let expected = if r.always_refused() {
            [Refuse; 3]
        } else {
            want(r.class())
        };
        assert_eq!(got, expected, "{r:?}");
        assert!(!r.label().is_empty() && !r.code().is_empty());
    }
    // Only the two severe reasons a parser can still read are forwarded when monitoring.
    let monitored: Vec<_> = Reason::ALL
        .into_iter()
        .filter(|r| r.class() == Class::Severe && !r.always_refused())
        .collect();
    assert_eq!(monitored, [Reason::TransferEncoding, Reason::BadChunk]);
}

fn chunked(body: &[u8]) -> Progress {
    Chunked::new(256).feed(body)
}

#[test]
fn chunked_bodies_end_where_they_end_and_bad_framing_is_found() {
    let body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\nGET";
    assert_eq!(chunked(body), Progress::Done(body.len() - 3));
    // The same body a byte at a time.
    let mut c = Chunked::new(256);
    let mut done = None;
    for (i, b) in body.iter().enumerate() {
        if let Progress::Done(n) = c.feed(std::slice::from_ref(b)) {
            done = Some(i + n);
            break;
        }
    }
    assert_eq!(done, Some(body.len() - 3));
    for bad in [
        &b"0x10\r\n"[..],
        b"+5\r\nhello\r\n",
        b"5 5\r\nhello\r\n",
        b"11111111111111111\r\n",
        b"-1\r\n",
        b"\r\n",
        b"5;a\nb\r\nhello\r\n",
        b"5;a\x01\r\nhello\r\n",
        b"5\nhello\r\n",
        b"5\r\nhelloXX",
        b"0\r\nX: 1\n\r\n",
        b"0\r\n X: 1\r\n\r\n",
    ] {
        assert!(
            matches!(chunked(bad), Progress::Bad(_)),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let line = format!("5;{}\r\n", "a".repeat(super::chunked::MAX_LINE));
    assert!(matches!(chunked(line.as_bytes()), Progress::Bad(_)));
    let trailers = format!("0\r\nX: {}\r\n\r\n", "a".repeat(300));
    assert!(matches!(chunked(trailers.as_bytes()), Progress::Bad(_)));
}

/// Follows `data` in reads of `size` bytes: the decisions, the bytes passed, the stop.
fn follow(mode: Mode, data: &[u8], size: usize) -> (Vec<Decision>, usize, Option<Stop>) {
    let f = super::tracker::follow(mode, LIMITS, data.chunks(size));
    (f.decisions, f.passed, f.stop)
}

#[test]
fn the_tracker_finds_every_head_however_the_bytes_are_split() {
    let stream = b"\r\nPOST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n";
    let refused_at = stream.len() - b"GET /c HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n".len();
    for size in [1, 2, 3, 7, 16, 64, stream.len()] {
        let (decisions, passed, stop) = follow(Mode::Defensive, stream, size);
        assert_eq!(passed, refused_at, "split {size}");
        assert_eq!(stop, Some(Stop::Refuse(Reason::ObsFold)), "split {size}");
        assert_eq!(decisions.len(), 1);
        assert_eq!(decisions[0].seq, 2, "the third request");
    }
}

#[test]
fn an_ambiguous_request_closes_and_nothing_after_it_passes() {
    let stream = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nbodyGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let first = stream.len() - b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n".len();
    let (d, passed, stop) = follow(Mode::Defensive, stream, stream.len());
    assert_eq!((passed, stop), (first, Some(Stop::Cut)));
    assert_eq!(d[0].action, Action::ForwardClose);
    assert_eq!(d[0].reason, Reason::DuplicateLength);
    // Monitoring forwards both and counts the first; strictest refuses the first.
    let (d, passed, stop) = follow(Mode::Monitor, stream, stream.len());
    assert_eq!((passed, stop, d.len()), (stream.len(), None, 1));
    let (_, passed, stop) = follow(Mode::Strictest, stream, stream.len());
    assert_eq!(
        (passed, stop),
        (0, Some(Stop::Refuse(Reason::DuplicateLength)))
    );
}

#[test]
fn upgrades_hold_what_follows_until_the_answer() {
    let stream = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let head_len = stream.len() - 7;
    let mut t = Tracker::new(Mode::Defensive, LIMITS);
    let step = t.feed(stream, &mut |_| {});
    assert_eq!((step.pass, step.stop), (head_len, Some(Stop::Hold)));
    t.resume(true);
    assert_eq!(t.feed(&stream[head_len..], &mut |_| {}).stop, None);
    // Not upgraded: the held bytes are the next head, and these are refused.
    let mut t = Tracker::new(Mode::Defensive, LIMITS);
    t.feed(stream, &mut |_| {});
    t.resume(false);
    assert!(matches!(
        t.feed(&stream[head_len..], &mut |_| {}).stop,
        Some(Stop::Refuse(_))
    ));
}

#[test]
fn a_broken_chunk_breaks_the_request_unless_monitoring() {
    let stream =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
    let (d, _, stop) = follow(Mode::Defensive, stream, stream.len());
    assert_eq!(stop, Some(Stop::Break(Reason::BadChunk)));
    assert_eq!((d[0].seq, d[0].action), (0, Action::Refuse));
    let (d, passed, stop) = follow(Mode::Monitor, stream, stream.len());
    assert_eq!(
        (passed, stop, d[0].action),
        (stream.len(), None, Action::Forward)
    );
}

#[test]
fn every_reason_is_documented() {
    let doc = include_str!("../../docs/desync.md");
    for r in Reason::ALL {
        let row = format!("| `{}` | {}", r.label(), r.class().label());
        assert!(doc.contains(&row), "docs/desync.md has no row {row:?}");
    }
}
