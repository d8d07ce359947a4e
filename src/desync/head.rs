//! The head classifier: one pass over a request head's raw bytes (request line, header lines,
//! the empty line) that finds where it ends, how its body is framed, and the worst thing about
//! it ([`Reason`]).
//!
//! It reads bytes the way RFC 9112 writes them and reports each departure; it accepts no head
//! that hyper's parser (httparse, then hyper's framing rules) would refuse, so hyper never
//! answers a head itself (a property test holds the two together). Header values, the bulk of
//! a head, are scanned eight bytes at a time for the bytes that matter (CR, LF, controls, DEL,
//! non-ASCII); names are checked against the token table. A head that is refused in every mode
//! is reported as soon as the offending byte is seen, complete or not.

use super::Reason;
use super::bytes::{FRAGMENT, PATH, QUERY, next_special, token_end};

/// The longest request target hyper and the `http` crate take, whatever `max_uri_bytes` says.
pub const MAX_TARGET: usize = 65_534;

/// The limits a head is held to (`server.max_header_bytes`, `max_headers`, `max_uri_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head: usize,
    pub max_headers: usize,
    pub max_uri: usize,
}

/// How the body that follows a head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A complete head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes from the request line through the empty line.
    pub len: usize,
    /// The worst finding (`None`: compliant).
    pub worst: Option<Reason>,
    pub framing: Framing,
    /// The connection may change protocol after this request (`Upgrade` on HTTP/1.1, CONNECT).
    pub upgrade: bool,
}

/// What a look at the start of a buffer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The head is not all here, and nothing so far is refused in every mode.
    Incomplete,
    Complete(Head),
    /// Refused in every mode, whatever follows (the head may be incomplete).
    Refused(Reason),
}

/// What the header lines said, gathered for the checks that need the whole head.
#[derive(Default)]
struct Fields<'a> {
    count: usize,
    lengths: u32,
    length: Option<u64>,
    bad_length: bool,
    differing: bool,
    /// Transfer-Encoding: fields seen, whether the last one ends in `chunked`, and whether
    /// any coding besides one `chunked` appeared.
    te_fields: u32,
    te_final_chunked: bool,
    te_other: bool,
    hosts: u32,
    host: &'a [u8],
    upgrade: bool,
}

/// Keeps the worst finding; `Err` for one refused in every mode.
fn note(worst: &mut Option<Reason>, r: Reason) -> Result<(), Reason> {
    if r.always_refused() {
        return Err(r);
    }
    if worst.is_none_or(|w| r.class() > w.class()) {
        *worst = Some(r);
    }
    Ok(())
}

/// Classifies the head at the start of `data` (leading empty lines already skipped).
#[must_use]
pub fn classify(data: &[u8], limits: &Limits) -> Scan {
    let mut worst = None;
    match scan(data, limits, &mut worst) {
        Ok(Some(head)) => Scan::Complete(head),
        Ok(None) if data.len() > limits.max_head => Scan::Refused(Reason::HeadTooLarge),
        Ok(None) => Scan::Incomplete,
        Err(r) => Scan::Refused(r),
    }
}

const HTTP11: u64 = u64::from_le_bytes(*b"HTTP/1.1");
const HTTP10: u64 = u64::from_le_bytes(*b"HTTP/1.0");

/// `Ok(None)`: incomplete so far.
#[inline(always)]
fn scan(data: &[u8], limits: &Limits, worst: &mut Option<Reason>) -> Result<Option<Head>, Reason> {
    // method SP
    let m = token_end(data, 0);
    let Some(&sep) = data.get(m) else {
        return Ok(None);
    };
    match sep {
        b' ' if m > 0 => {}
        // A token, then the wrong separator (a tab, a second space, a line end).
        b'\t' | b'\r' | b'\n' if m > 0 => return Err(Reason::BadRequestLine),
        _ => return Err(Reason::BadMethod),
    }
    let method = &data[..m];
    // request-target SP
    let t0 = m + 1;
    let (t1, authority) = target(data, t0, worst)?;
    let Some(t1) = t1 else { return Ok(None) };
    if t1 - t0 > limits.max_uri {
        return Err(Reason::UriTooLong);
    }
    // HTTP-version CRLF
    let v0 = t1 + 1;
    let Some(version) = data.get(v0..v0 + 8) else {
        return if b"HTTP/1.1".starts_with(&data[v0..]) || b"HTTP/1.0".starts_with(&data[v0..]) {
            Ok(None)
        } else {
            Err(Reason::BadVersion)
        };
    };
    let http10 = match u64::from_le_bytes(version.try_into().unwrap_or_default()) {
        HTTP11 => false,
        HTTP10 => true,
        _ => return Err(Reason::BadVersion),
    };
    let Some(mut p) = line_end(data, v0 + 8, worst, Reason::BadVersion)? else {
        return Ok(None);
    };
    // header lines, then the empty line
    let mut f = Fields::default();
    loop {
        if p > limits.max_head {
            return Err(Reason::HeadTooLarge);
        }
        let Some(&b) = data.get(p) else {
            return Ok(None);
        };
        if b == b'\r' || b == b'\n' {
            let Some(end) = line_end(data, p, worst, Reason::BareCr)? else {
                return Ok(None);
            };
            if end > limits.max_head {
                return Err(Reason::HeadTooLarge);
            }
            let head = finish(&f, method, http10, authority, end, worst)?;
            return Ok(Some(head));
        }
        if b == b' ' || b == b'\t' {
            return Err(Reason::ObsFold);
        }
        let n = token_end(data, p) - p;
        let Some(&c) = data.get(p + n) else {
            return Ok(None);
        };
        let name = &data[p..p + n];
        match c {
            b':' if n > 0 => {}
            b' ' | b'\t' if n > 0 => return Err(Reason::SpaceBeforeColon),
            b'\r' | b'\n' => return Err(Reason::MissingColon),
            _ => return Err(Reason::BadHeaderName),
        }
        // The value, OWS included (spaces are not special): trimmed only where it is read.
        let v = p + n + 1;
        let mut i = v;
        let mut non_ascii = false;
        let ve = loop {
            i = next_special(data, i);
            match data.get(i) {
                None => return Ok(None),
                Some(b'\t') => i += 1,
                Some(0x80..=0xFF) => {
                    non_ascii = true;
                    i += 1;
                }
                Some(b'\r' | b'\n') => break i,
                Some(_) => return Err(Reason::BadHeaderValue),
            }
        };
        let next = if data.get(ve + 1) == Some(&b'\n') && data[ve] == b'\r' {
            ve + 2
        } else {
            let Some(next) = line_end(data, ve, worst, Reason::BareCr)? else {
                return Ok(None);
            };
            next
        };
        f.count += 1;
        if f.count > limits.max_headers {
            return Err(Reason::TooManyHeaders);
        }
        if non_ascii || may_matter(name[0]) {
            field(&mut f, name, trim(&data[v..ve]), non_ascii, worst)?;
        }
        p = next;
    }
}

/// The line end at `i` (CRLF, or a bare LF noted as acceptable): the index after it, `None`
/// when the buffer ends first, `Err(bad)` for anything else (a bare CR is always `BareCr`).
fn line_end(
    data: &[u8],
    i: usize,
    worst: &mut Option<Reason>,
    bad: Reason,
) -> Result<Option<usize>, Reason> {
    match data.get(i) {
        None => Ok(None),
        Some(b'\n') => {
            note(worst, Reason::BareLf)?;
            Ok(Some(i + 1))
        }
        Some(b'\r') => match data.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(i + 2)),
            Some(_) => Err(Reason::BareCr),
        },
        Some(_) => Err(bad),
    }
}

/// The request target starting at `t0`, checked as hyper and the `http` crate will read it:
/// the index of the space after it (`None`: incomplete), and the authority of an absolute-form
/// (or CONNECT's authority-form) target. An origin-form target is read in one pass.
#[inline(always)]
fn target<'a>(
    data: &'a [u8],
    t0: usize,
    worst: &mut Option<Reason>,
) -> Result<(Option<usize>, Option<&'a [u8]>), Reason> {
    match data.get(t0) {
        None => return Ok((None, None)),
        Some(b'/') => {}
        Some(_) => return other_target(data, t0, worst),
    }
    let (mut table, mut high, mut i) = (&PATH, false, t0);
    while let Some(&b) = data.get(i) {
        match table[usize::from(b)] {
            1 => {}
            2 => table = &QUERY,
            // The fragment is cut off by the parser; what follows still needs URI bytes.
            3 => table = &FRAGMENT,
            4 => high = true,
            _ => break,
        }
        i += 1;
    }
    let Some(&end) = data.get(i) else {
        return Ok((None, None));
    };
    match end {
        b' ' => {}
        b'\r' | b'\n' => return Err(Reason::BadRequestLine),
        _ => return Err(Reason::BadTarget),
    }
    if high {
        if std::str::from_utf8(&data[t0..i]).is_err() {
            return Err(Reason::BadTarget);
        }
        note(worst, Reason::NonAsciiTarget)?;
    }
    Ok((Some(i), None))
}

/// A target that is not origin-form: `*`, absolute-form, authority-form. Rare, so the `http`
/// crate's own parser decides.
#[cold]
fn other_target<'a>(
    data: &'a [u8],
    t0: usize,
    worst: &mut Option<Reason>,
) -> Result<(Option<usize>, Option<&'a [u8]>), Reason> {
    let Some(len) = data[t0..].iter().position(|&b| b <= b' ' || b == 0x7F) else {
        return Ok((None, None));
    };
    let t1 = t0 + len;
    match data[t1] {
        b' ' if len > 0 => {}
        b' ' | b'\r' | b'\n' => return Err(Reason::BadRequestLine),
        _ => return Err(Reason::BadTarget),
    }
    let target = &data[t0..t1];
    if target == b"*" {
        return Ok((Some(t1), None));
    }
    let uri = http::Uri::try_from(target).map_err(|_| Reason::BadTarget)?;
    let Some(a) = uri.authority() else {
        return Err(Reason::BadTarget);
    };
    let a = a.as_str().as_bytes();
    // The authority's bytes within the target.
    let at = target
        .windows(a.len())
        .position(|w| w == a)
        .ok_or(Reason::BadTarget)?;
    if !target.is_ascii() {
        note(worst, Reason::NonAsciiTarget)?;
    }
    Ok((Some(t1), Some(&target[at..at + a.len()])))
}

/// Whether a field whose name starts with `first` may need a look: a name that matters starts
/// with `c`, `h`, `t` or `u` (`Content-Length`, `Host`, `Transfer-Encoding`, `Upgrade`), and a
/// framing lookalike with one of those or a non-letter. Most names (`Accept…`, `X-…`) need none.
#[inline]
const fn may_matter(first: u8) -> bool {
    let l = first | 0x20;
    !l.is_ascii_lowercase() || matches!(l, b'c' | b'h' | b't' | b'u')
}

/// Records one header field (its value without the OWS around it).
#[inline(always)]
fn field<'a>(
    f: &mut Fields<'a>,
    name: &[u8],
    value: &'a [u8],
    non_ascii: bool,
    worst: &mut Option<Reason>,
) -> Result<(), Reason> {
    match name.len() {
        4 if lower_is(name, b"host") => {
            f.hosts += 1;
            f.host = value;
        }
        7 if lower_is(name, b"upgrade") => f.upgrade = true,
        14 if lower_is(name, b"content-length") => {
            f.lengths += 1;
            match digits(value) {
                None => f.bad_length = true,
                Some(n) if f.length.is_some_and(|l| l != n) => f.differing = true,
                Some(n) => f.length = Some(n),
            }
        }
        17 if lower_is(name, b"transfer-encoding") => {
            f.te_fields += 1;
            let mut codings = value.split(|&b| b == b',');
            let last = codings.next_back().map(trim).unwrap_or_default();
            f.te_final_chunked = last.eq_ignore_ascii_case(b"chunked");
            f.te_other |= f.te_fields > 1 || codings.next().is_some();
        }
        13.. if lookalike(name) => note(worst, Reason::FramingLookalike)?,
        _ => {}
    }
    if non_ascii {
        note(worst, Reason::NonAsciiValue)?;
    }
    Ok(())
}

/// The checks that need every field: framing, hosts.
#[inline(always)]
fn finish(
    f: &Fields<'_>,
    method: &[u8],
    http10: bool,
    authority: Option<&[u8]>,
    len: usize,
    worst: &mut Option<Reason>,
) -> Result<Head, Reason> {
    let bodiless = || {
        matches!(
            method,
            [b'G', b'E', b'T']
                | [b'H', b'E', b'A', b'D']
                | b"OPTIONS"
                | [b'T', b'R', b'A', b'C', b'E']
        )
    };
    let framing = if f.te_fields == 0 && f.lengths == 0 {
        Framing::None
    } else if f.te_fields > 0 {
        if http10 {
            return Err(Reason::ChunkedHttp10);
        }
        if !f.te_final_chunked {
            return Err(Reason::NotChunked);
        }
        if f.te_other {
            note(worst, Reason::TransferEncoding)?;
        }
        if f.lengths > 0 {
            note(worst, Reason::LengthAndChunked)?;
        }
        Framing::Chunked
    } else if f.lengths > 0 {
        if f.bad_length {
            return Err(Reason::BadContentLength);
        }
        if f.differing {
            return Err(Reason::DifferentLengths);
        }
        if f.lengths > 1 {
            note(worst, Reason::DuplicateLength)?;
        }
        let n = f.length.unwrap_or(0);
        if n == 0 && bodiless() {
            note(worst, Reason::ZeroLengthOnGet)?;
        }
        Framing::Length(n)
    } else {
        Framing::None
    };
    if framing != Framing::None && framing != Framing::Length(0) && bodiless() {
        note(worst, Reason::UnexpectedBody)?;
    }
    if f.hosts > 1 {
        return Err(Reason::SeveralHosts);
    }
    if let Some(a) = authority
        && f.hosts == 1
        && !a.eq_ignore_ascii_case(f.host)
    {
        return Err(Reason::HostMismatch);
    }
    Ok(Head {
        len,
        worst: *worst,
        framing,
        upgrade: (f.upgrade && !http10) || (method.len() == 7 && method == b"CONNECT"),
    })
}

/// Whether a token `name` is `lower` (lower-case ASCII letters and `-`) in any case. Setting
/// bit 5 lower-cases a letter, and a token byte that is not a letter never becomes one.
#[inline]
fn lower_is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b)
}

#[inline(always)]
fn trim(b: &[u8]) -> &[u8] {
    // The usual value: one space after the colon, nothing after the value.
    let b = b.strip_prefix(b" ").unwrap_or(b);
    if !matches!(b.first(), Some(b' ' | b'\t')) && !matches!(b.last(), Some(b' ' | b'\t')) {
        return b;
    }
    let s = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}

/// A decimal `Content-Length` as hyper reads it: digits only, no sign, no list, fits in u64.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A name that is not `Content-Length` or `Transfer-Encoding` but reads as one once its
/// non-letters are dropped and its case folded (`Content_Length`, `Transfer--Encoding`,
/// `ContentLength`): some servers normalise names that way.
fn lookalike(name: &[u8]) -> bool {
    const TARGETS: [&[u8]; 2] = [b"contentlength", b"transferencoding"];
    TARGETS.iter().any(|t| {
        let mut letters = name.iter().filter(|b| b.is_ascii_alphabetic());
        t.iter()
            .all(|c| letters.next().is_some_and(|b| b.to_ascii_lowercase() == *c))
            && letters.next().is_none()
    })
}
