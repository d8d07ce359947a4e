//! A raw HTTP/2 client for hostile-client tests: frames written byte by byte (RFC 9113) with a
//! minimal HPACK encoder (static-table indexes and literals without indexing, RFC 7541), so a
//! test can send what no well-behaved client library would: streams past the limit, a stream
//! reset right after it opens, a header block that never ends.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The settings of a SETTINGS frame, as (id, value) pairs.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }
}

/// One frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | u8::try_from(v).unwrap());
        return;
    }
    out.push(first | u8::try_from(max).unwrap());
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).unwrap() | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).unwrap());
}

/// A literal field without indexing, with a new name (RFC 7541 §6.2.2).
pub fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    integer(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    integer(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// The header block of `GET /` for `authority`, over http.
pub fn get_block(authority: &str, path: &str) -> Vec<u8> {
    // :method GET (2), :scheme http (6) from the static table.
    let mut out = vec![0x82, 0x86];
    // :path (name index 4) and :authority (name index 1) as literals without indexing.
    integer(&mut out, 0, 4, 4);
    integer(&mut out, 0, 7, path.len());
    out.extend_from_slice(path.as_bytes());
    integer(&mut out, 0, 4, 1);
    integer(&mut out, 0, 7, authority.len());
    out.extend_from_slice(authority.as_bytes());
    out
}

/// A raw connection: preface and settings exchanged.
pub struct Conn {
    pub stream: TcpStream,
    /// The server's first SETTINGS frame.
    pub server_settings: Vec<(u16, u32)>,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.unwrap();
        let mut c = Self {
            stream,
            server_settings: Vec::new(),
            buf: Vec::new(),
        };
        loop {
            let f = c.next(Duration::from_secs(3)).await.unwrap();
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                c.server_settings = f.settings();
                break;
            }
        }
        // Acknowledged settings are in force from here.
        c.send(&frame(SETTINGS, ACK, 0, &[])).await;
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// The next frame, or `None` when the server closed or `limit` passed.
    pub async fn next(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Frames until the server closes the connection or `limit` passes.
    pub async fn drain(&mut self, limit: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(f) = self
            .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            out.push(f);
        }
        out
    }
}
