//! A raw HTTP/1 client for the replay: writes bytes as they are, reads answers one at a time
//! (status, headers, a body framed by length, chunks or close), and tells whether the proxy
//! closed the connection after them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one read may wait before the peer counts as silent.
const QUIET: Duration = Duration::from_secs(3);

/// One answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `Connection` lists `close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// What followed an answer on the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// The proxy closed it (end of stream or a reset), nothing more said.
    Closed,
    /// Still open and silent.
    Open,
    /// More bytes came: a second answer the client never asked for.
    More(Vec<u8>),
}

/// A client connection and the bytes read but not yet used.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Self {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes `bytes`; a proxy that has already answered and closed may reset the rest, which
    /// is not an error here (the answer is what counts).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).await;
    }

    /// Reads more bytes into the buffer; `false` at the end of the stream (or a reset), or
    /// when nothing came within [`QUIET`] (`Err`).
    async fn fill(&mut self) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(QUIET, self.s.read(&mut chunk)).await {
            Err(_) => Err(format!("nothing within {QUIET:?}")),
            Ok(Ok(0) | Err(_)) => {
                self.eof = true;
                Ok(false)
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// Takes a line (without its CRLF) from the buffer, reading as needed.
    async fn line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill().await? {
                return Err(format!("closed inside a line: {:?}", lossy(&self.buf)));
            }
        }
    }

    async fn take(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(format!(
                    "closed {} bytes into a {n}-byte body",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one answer; `None` when the connection closed before its first byte.
    /// `bodiless`: the answer is to a HEAD request.
    pub async fn answer(&mut self, bodiless: bool) -> Result<Option<Answer>, String> {
        while self.buf.is_empty() {
            if !self.fill().await? {
                return Ok(None);
            }
        }
        let status_line = self.line().await?;
        let status = lossy(&status_line)
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not a status line: {:?}", lossy(&status_line)))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let text = lossy(&line);
            let (n, v) = text
                .split_once(':')
                .ok_or_else(|| format!("not a header: {text:?}"))?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if bodiless || status == 204 || status == 304 {
            return Ok(Some(answer));
        }
        if answer
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size = lossy(&self.line().await?).into_owned();
                let size = size.split(';').next().unwrap_or("").trim();
                let n = usize::from_str_radix(size, 16).map_err(|_| format!("chunk {size:?}"))?;
                if n == 0 {
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let data = self.take(n).await?;
                answer.body.extend_from_slice(&data);
                self.line().await?;
            }
        } else if let Some(len) = answer.header("content-length") {
            let n = len.parse().map_err(|_| format!("content-length {len:?}"))?;
            answer.body = self.take(n).await?;
        } else {
            while self.fill().await? {}
            answer.body = std::mem::take(&mut self.buf);
        }
        Ok(Some(answer))
    }

    /// What follows on the connection: waits up to [`QUIET`] for the proxy to close it.
    pub async fn after(&mut self) -> After {
        loop {
            match self.fill().await {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return After::Closed,
                Ok(false) => return After::More(std::mem::take(&mut self.buf)),
                Err(_) if self.buf.is_empty() => return After::Open,
                Err(_) => return After::More(std::mem::take(&mut self.buf)),
            }
        }
    }

    /// Everything until the proxy closes the connection (`Err` if it stays open).
    pub async fn rest(&mut self) -> Result<Vec<u8>, String> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }
}

pub fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}
