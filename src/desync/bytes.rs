//! Byte tables and the word-at-a-time scan the head classifier reads with: token bytes (method,
//! header names), the bytes of a path and a query as the `http` crate takes them, and the
//! search for the next byte that matters in a header value (a control, DEL, non-ASCII).

pub(super) const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Bytes of an origin-form path (as the `http` crate takes them): 1 valid, 2 `?`, 3 `#`,
/// 4 non-ASCII (valid if the target is UTF-8), 0 invalid.
pub(super) const PATH: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            b'?' => 2,
            b'#' => 3,
            0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E => 1,
            b'"' | b'{' | b'}' => 1,
            0x80..=0xFF => 4,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Bytes after a `#`: whatever a URI may hold (the parser drops them).
pub(super) const FRAGMENT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            0x21..=0x7E | 0x80..=0xFF => 1,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// Bytes of a query: as [`PATH`], and `?` and the rest of ASCII's punctuation.
pub(super) const QUERY: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            b'#' => 3,
            0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E => 1,
            0x80..=0xFF => 4,
            _ => 0,
        };
        i += 1;
    }
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `w` that is below 0x20, DEL or non-ASCII (and possibly of bytes after
/// such a byte; the lowest flagged byte is always a true one).
#[inline]
const fn specials(w: u64) -> u64 {
    let ctl = w.wrapping_sub(LO * 0x20) & !w;
    let x = w ^ (LO * 0x7F);
    let del = x.wrapping_sub(LO) & !x;
    (ctl | del | w) & HI
}

/// The index of the first byte at or after `i` that is not a token byte (eight at a time).
#[inline(always)]
pub(super) fn token_end(data: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = data.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let all = w.iter().fold(true, |ok, &b| ok & TOKEN[usize::from(b)]);
        if !all {
            break;
        }
        i += 8;
    }
    while let Some(&b) = data.get(i) {
        if !TOKEN[usize::from(b)] {
            break;
        }
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` that is a control, DEL or non-ASCII.
#[inline(always)]
pub(super) fn next_special(data: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = data.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let s = specials(u64::from_le_bytes(w));
        if s != 0 {
            return i + (s.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = data.get(i) {
        if !(0x20..0x7F).contains(&b) {
            return i;
        }
        i += 1;
    }
    i
}
