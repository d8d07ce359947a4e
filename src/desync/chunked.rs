//! The chunked body follower: walks a `Transfer-Encoding: chunked` body as it streams past,
//! byte by byte over the framing and in bulk over the data, to find where the body (and so
//! the next request) ends, and to refuse a malformed chunk size, extension, chunk end or
//! trailer section before hyper's decoder reads it.
//!
//! As strict as hyper's decoder (CRLF after every line, at most 16 hex digits), and stricter
//! where a lenient server downstream could read the line differently: no control bytes or
//! bare LF in an extension, a size line of at most [`MAX_LINE`] bytes, trailers within the
//! head limit.

/// Longest chunk-size line (size, whitespace, extensions) accepted.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a chunk-size line: `digits` hex digits read so far.
    Size {
        digits: u8,
    },
    /// Whitespace after the size.
    SizeWs,
    /// A chunk extension, up to its CR.
    Ext,
    /// The LF of a size line.
    SizeLf,
    /// Chunk data.
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line starts, or the final CRLF.
    TrailerStart,
    /// Inside a trailer line, up to its CR.
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunked {
    state: State,
    size: u64,
    /// Bytes of the current size line, and of the trailer section.
    line: usize,
    trailers: usize,
    max_trailers: usize,
}

/// What one slice of body bytes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All consumed; the body goes on.
    More,
    /// The body ended after this many bytes of the slice.
    Done(usize),
    /// The byte at this offset breaks the framing.
    Bad(usize),
}

impl Chunked {
    /// A body about to start; its trailer section may take `max_trailers` bytes.
    #[must_use]
    pub const fn new(max_trailers: usize) -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
            trailers: 0,
            max_trailers,
        }
    }

    /// Follows the body through `data`.
    pub fn feed(&mut self, data: &[u8]) -> Progress {
        let mut i = 0;
        while i < data.len() {
            if self.state == State::Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = data[i];
            match self.step(b) {
                Some(State::Done) => {
                    self.state = State::Done;
                    return Progress::Done(i + 1);
                }
                Some(s) => self.state = s,
                None => return Progress::Bad(i),
            }
            i += 1;
        }
        Progress::More
    }

    /// The state after byte `b`, or `None` when `b` breaks the framing.
    fn step(&mut self, b: u8) -> Option<State> {
        use State as S;
        if matches!(self.state, S::Size { .. } | S::SizeWs | S::Ext | S::SizeLf) {
            self.line += 1;
            if self.line > MAX_LINE {
                return None;
            }
        }
        if matches!(
            self.state,
            S::TrailerStart | S::Trailer | S::TrailerLf | S::EndLf
        ) {
            self.trailers += 1;
            if self.trailers > self.max_trailers {
                return None;
            }
        }
        Some(match (self.state, b) {
            (S::Size { digits }, b) if b.is_ascii_hexdigit() => {
                if digits >= 16 {
                    return None;
                }
                let d = (b as char).to_digit(16).unwrap_or(0);
                self.size = (self.size << 4) | u64::from(d);
                S::Size { digits: digits + 1 }
            }
            (S::Size { digits: 0 }, _) => return None,
            (S::Size { .. } | S::SizeWs, b' ' | b'\t') => S::SizeWs,
            (S::Size { .. } | S::SizeWs, b';') => S::Ext,
            (S::Size { .. } | S::SizeWs | S::Ext, b'\r') => S::SizeLf,
            (S::Ext, b'\t' | 0x20..=0x7E) => S::Ext,
            (S::SizeLf, b'\n') => {
                self.line = 0;
                if self.size == 0 {
                    S::TrailerStart
                } else {
                    S::Data
                }
            }
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => S::Size { digits: 0 },
            (S::TrailerStart, b'\r') => S::EndLf,
            (S::TrailerStart, b)
                if b != b' ' && b != b'\t' && b != b'\n' && !b.is_ascii_control() =>
            {
                S::Trailer
            }
            (S::Trailer, b'\r') => S::TrailerLf,
            (S::Trailer, b) if b == b'\t' || !b.is_ascii_control() => S::Trailer,
            (S::TrailerLf, b'\n') => S::TrailerStart,
            (S::EndLf, b'\n') => S::Done,
            _ => return None,
        })
    }
}
