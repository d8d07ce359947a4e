//! Who the client is: the socket's peer, unless a configured trusted hop (an NLB, an ALB, a
//! CDN) in front says otherwise, by the PROXY protocol at the start of the connection or by
//! `X-Forwarded-For` on each request.
//!
//! Nothing a client sends is believed unless the connection comes from a `server.trusted_hops`
//! address: from anyone else a PROXY header is never read (its bytes are an ordinary, and
//! malformed, request) and `X-Forwarded-For` is replaced. From a trusted hop, a listener with
//! `proxy_protocol = true` (and the admin listener with `admin.proxy_protocol`) requires the
//! header (v1 text or v2 binary, as an AWS NLB sends it; a v2 `LOCAL` command, the NLB's health
//! check, keeps the socket address), and with `server.trust_x_forwarded_for` the client is the
//! right-most `X-Forwarded-For` address that is not itself a trusted hop (so a client cannot
//! pick its address by prepending one). The parsers are plain functions over bytes, fuzzed and
//! property-tested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::HeaderMap;
use ipnet::IpNet;
use tokio::net::TcpStream;

use crate::headers::X_FORWARDED_FOR;

/// The v2 signature (RFC-less, from HAProxy's PROXY protocol spec §2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (spec §2.1).
const V1_MAX: usize = 107;
/// The most address bytes a v2 header may carry before we stop reading it (TLVs included).
const V2_MAX_LEN: usize = 1024;

/// Why a PROXY protocol header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header from a trusted hop")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header not complete in time")]
    Timeout,
    #[error("reading the PROXY protocol header: {0}")]
    Io(String),
}

/// A parsed header: the client's address (`None`: the hop speaks for itself, `LOCAL` or
/// `UNKNOWN`), and how many bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub source: Option<SocketAddr>,
    pub len: usize,
}

/// Parses a PROXY protocol header at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_proxy_header(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    use ProxyHeaderError::Malformed;
    if buf.len() < V2_SIGNATURE.len() {
        let n = buf.len();
        if V2_SIGNATURE.starts_with(buf) || b"PROXY ".starts_with(&buf[..n.min(6)]) {
            return Ok(None);
        }
        return Err(ProxyHeaderError::Missing);
    }
    if buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf);
    }
    if !buf.starts_with(b"PROXY ") {
        return Err(ProxyHeaderError::Missing);
    }
    let Some(end) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Malformed("v1 line longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    if end == 0 || buf[end - 1] != b'\r' {
        return Err(Malformed("v1 line not ended by CRLF"));
    }
    let line = std::str::from_utf8(&buf[6..end - 1]).map_err(|_| Malformed("v1 not ASCII"))?;
    let mut parts = line.split(' ');
    let source = match parts.next() {
        Some("UNKNOWN") => None,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let (Some(src), Some(_dst), Some(sport), Some(_dport), None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err(Malformed("v1 needs exactly four fields after the protocol"));
            };
            let ip: IpAddr = src.parse().map_err(|_| Malformed("v1 source address"))?;
            if ip.is_ipv4() != (proto == "TCP4") {
                return Err(Malformed("v1 address family disagrees with the protocol"));
            }
            if sport.len() > 1 && sport.starts_with('0') {
                return Err(Malformed("v1 source port has a leading zero"));
            }
            let port: u16 = sport.parse().map_err(|_| Malformed("v1 source port"))?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(Malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Some(ProxyHeader {
        source,
        len: end + 1,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    use ProxyHeaderError::Malformed;
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Malformed("v2 version is not 2"));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX_LEN {
        return Err(Malformed("v2 header longer than 1024 bytes"));
    }
    let Some(body) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let source = match ver_cmd & 0x0f {
        // LOCAL: the hop's own connection (an NLB health check); addresses are ignored.
        0x0 => None,
        0x1 => match fam {
            // TCP over IPv4: src(4) dst(4) sport(2) dport(2).
            0x11 => {
                let a = body.get(..12).ok_or(Malformed("v2 IPv4 block too short"))?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            // TCP over IPv6: src(16) dst(16) sport(2) dport(2).
            0x21 => {
                let a = body.get(..36).ok_or(Malformed("v2 IPv6 block too short"))?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[..16]);
                let ip = Ipv6Addr::from(octets);
                Some(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([a[32], a[33]]),
                ))
            }
            // UNSPEC or a family a TCP listener cannot see (UDP, unix): the hop's address.
            0x00 => None,
            _ => return Err(Malformed("v2 family is not TCP over IPv4 or IPv6")),
        },
        _ => return Err(Malformed("v2 command is not LOCAL or PROXY")),
    };
    Ok(Some(ProxyHeader {
        source,
        len: 16 + len,
    }))
}

/// Reads a PROXY protocol header off `stream`, taking exactly its bytes (the request after it
/// stays in the socket for hyper). The client's address, or `None` to keep the socket's.
pub async fn read_proxy_header(
    stream: &TcpStream,
    limit: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let io = |e: std::io::Error| ProxyHeaderError::Io(e.to_string());
    let read = async {
        let mut buf = [0u8; 16 + V2_MAX_LEN];
        loop {
            stream.readable().await.map_err(io)?;
            let n = match stream.peek(&mut buf).await {
                Ok(0) => return Err(ProxyHeaderError::Io("closed before the header".into())),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(io(e)),
            };
            if let Some(h) = parse_proxy_header(&buf[..n])? {
                // Consume exactly the header; the peek showed it is all there.
                let mut taken = 0;
                while taken < h.len {
                    stream.readable().await.map_err(io)?;
                    match stream.try_read(&mut buf[taken..h.len]) {
                        Ok(0) => return Err(ProxyHeaderError::Io("closed in the header".into())),
                        Ok(k) => taken += k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(io(e)),
                    }
                }
                return Ok(h.source);
            }
            // Part of a header: wait for more bytes (peek leaves them queued).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(ProxyHeaderError::Timeout))
}

/// Whether `ip` is one of the trusted hops.
#[must_use]
pub fn trusted(hops: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    hops.iter().any(|n| n.contains(&ip))
}

/// An IPv4-mapped IPv6 address as IPv4, so `10.0.0.0/8` matches `::ffff:10.1.2.3`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client behind a trusted hop, from `X-Forwarded-For`: walking from the right (the entry
/// the nearest hop added), the first address that is not itself a trusted hop. `None` when the
/// header is absent or unreadable (the hop's own address stands).
#[must_use]
pub fn forwarded_client(headers: &HeaderMap, hops: &[IpNet]) -> Option<IpAddr> {
    let mut last = None;
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let text = value.to_str().ok()?;
        for item in text.rsplit(',') {
            let ip = parse_forwarded_ip(item.trim())?;
            if !trusted(hops, ip) {
                return Some(canonical(ip));
            }
            last = Some(canonical(ip));
        }
    }
    // Every entry is a trusted hop: the left-most is the closest thing to a client.
    last
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]:port` or `v4:port`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

#[cfg(test)]
mod tests;
