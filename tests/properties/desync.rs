//! The desync classifier over heads built from hostile pieces (`desync::head::classify`,
//! `desync::tracker::Tracker`):
//!
//! - it never lets through a head hyper would refuse (hyper would answer that one itself, with
//!   a bare 400): every head it passes, httparse and hyper's framing rules read to the same
//!   end; whatever they refuse, it refuses;
//! - the decisions and the bytes passed do not depend on how the stream is split into reads.

use cellgate::desync::Mode;
use cellgate::desync::head::{Limits, Scan, classify};
use cellgate::desync::tracker::{self, Followed};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const LIMITS: Limits = Limits {
    max_head: 64 * 1024,
    max_headers: 100,
    max_uri: 64 * 1024,
};

fn piece(options: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        8 => select(options).prop_map(|s| s.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 0..4),
    ]
}

/// A request head from pieces: mostly well-formed, each piece sometimes hostile.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let eol = piece(&["\r\n", "\r\n", "\r\n", "\n", "\r", " \r\n"]);
    let line = (
        piece(&[
            "GET", "POST", "HEAD", "OPTIONS", "TRACE", "CONNECT", "G@T", "", "get",
        ]),
        piece(&[" ", " ", "  ", "\t"]),
        piece(&[
            "/",
            "/a?b=c",
            "/a#f",
            "/caf\u{e9}",
            "/\x01",
            "/a<b",
            "*",
            "http://acme/x",
            "http://acme:8080",
            "acme:443",
            "/%zz",
            "/\"{}",
            "/a b",
        ]),
        piece(&[" ", " ", "  "]),
        piece(&[
            "HTTP/1.1",
            "HTTP/1.1",
            "HTTP/1.0",
            "HTTP/1.2",
            "HTTP/2.0",
            "HTTP/1.1 ",
            "http/1.1",
            "",
        ]),
        eol.clone(),
    );
    let field = (
        piece(&[
            "Host",
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "X-A",
            "X_A",
            "Transfer---Encoding",
            "X A",
            " X",
            "X\x00",
            "Tr\u{e1}nsfer",
            "",
            "Upgrade",
        ]),
        piece(&[":", ": ", ": ", " :", ":\t", ""]),
        piece(&[
            "acme",
            "chunked",
            "Chunked",
            "gzip, chunked",
            "chunked, gzip",
            "4",
            "0",
            "4, 4",
            "+4",
            " 1 ",
            "a\x00b",
            "a\x7fb",
            "caf\u{e9}",
            "a\rb",
            "",
            "x\tb",
            "websocket",
        ]),
        eol.clone(),
    );
    (line, vec(field, 0..8), eol).prop_map(|(l, fields, end)| {
        let mut out = [l.0, l.1, l.2, l.3, l.4, l.5].concat();
        for (name, colon, value, eol) in fields {
            out.extend([name, colon, value, eol].concat());
        }
        out.extend(end);
        out
    })
}

/// How hyper's server reads a head: httparse (hyper's configuration), then hyper's own
/// checks of the method, target and framing. `Ok(None)`: incomplete.
fn hyper_reads(data: &[u8]) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("httparse: {e}")),
    };
    http::Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|e| e.to_string())?;
    let path = req.path.unwrap_or_default();
    if path.len() >= usize::from(u16::MAX) {
        return Err("uri too long".into());
    }
    http::Uri::try_from(path).map_err(|e| e.to_string())?;
    let http11 = req.version == Some(1);
    let (mut te, mut te_chunked, mut cl) = (false, false, None::<u64>);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err("te on 1.0".into());
            }
            te = true;
            let last = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.rsplit(',').next())
                .map(str::trim);
            te_chunked = last.is_some_and(|l| l.eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") && !te {
            let v = std::str::from_utf8(h.value).map_err(|e| e.to_string())?;
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err("content-length".into());
            }
            let v: u64 = v.parse().map_err(|_| "content-length overflow")?;
            if cl.is_some_and(|c| c != v) {
                return Err("differing content-length".into());
            }
            cl = Some(v);
        }
    }
    if te && !te_chunked {
        return Err("te not chunked".into());
    }
    Ok(Some(n))
}

/// Follows `data` in reads of the given sizes (cycled), as the guard buffers them.
fn follow(data: &[u8], sizes: &[usize]) -> Followed {
    let mut rest = data;
    let mut reads = Vec::new();
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, after) = rest.split_at(n.clamp(1, rest.len()));
        reads.push(read);
        rest = after;
    }
    tracker::follow(Mode::Defensive, LIMITS, reads)
}

proptest! {
    #![proptest_config(crate::cases(3000))]

    #[test]
    fn no_head_hyper_refuses_gets_through(data in head()) {
        let ours = classify(&data, &LIMITS);
        let hypers = hyper_reads(&data);
        let shown = String::from_utf8_lossy(&data);
        match (ours, &hypers) {
            (Scan::Refused(_), _) | (Scan::Incomplete, Ok(None) | Err(_)) => {}
            (Scan::Complete(h), Ok(Some(n))) => {
                prop_assert_eq!(h.len, *n, "{:?}", shown);
                prop_assert!(h.worst.is_none_or(|r| !r.always_refused()));
            }
            (ours, hypers) => {
                prop_assert!(false, "{shown:?}: classifier {ours:?}, hyper {hypers:?}");
            }
        }
    }

    #[test]
    fn decisions_do_not_depend_on_how_reads_split_the_stream(
        heads in vec(head(), 1..4),
        bodies in vec(vec(any::<u8>(), 0..12), 4),
        sizes in vec(1usize..40, 1..6),
    ) {
        let mut stream = Vec::new();
        for (h, b) in heads.iter().zip(&bodies) {
            stream.extend_from_slice(h);
            stream.extend_from_slice(b);
        }
        let whole = follow(&stream, &[stream.len()]);
        let split = follow(&stream, &sizes);
        prop_assert_eq!(whole, split, "{:?}", String::from_utf8_lossy(&stream));
    }
}
