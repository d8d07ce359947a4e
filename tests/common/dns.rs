//! A tiny authoritative DNS server for the discovery tests: UDP on `127.0.0.1:0`, answering `A`
//! queries from a map the test changes at run time, with a chosen TTL. It can be told to fail
//! (SERVFAIL, or no answer at all) and counts the queries it saw.
//!
//! The few bytes of the wire format (RFC 1035 §4.1) are written by hand: a header, the question
//! copied from the query, and one `A` record per address pointing back at the question's name.
//! `AAAA` (and any other type) for a known name gets an empty NOERROR answer; an unknown name
//! gets NXDOMAIN.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const TYPE_A: u16 = 1;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Answer = 0,
    ServFail = 1,
    /// Reads queries and never answers (the resolver times out).
    Silent = 2,
}

#[derive(Debug, Default)]
struct State {
    records: Mutex<HashMap<String, Vec<Ipv4Addr>>>,
    ttl: AtomicU32,
    mode: AtomicU8,
    queries: AtomicU64,
    a_queries: AtomicU64,
}

#[derive(Debug)]
pub struct DnsServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Starts answering with records of TTL `ttl_secs`.
    pub async fn start(ttl_secs: u32) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let state = Arc::new(State::default());
        state.ttl.store(ttl_secs, Ordering::SeqCst);
        let task = tokio::spawn(serve(socket, Arc::clone(&state)));
        Self { addr, state, task }
    }

    /// The `A` records of `name` from now on (an empty list: a known name without addresses).
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        self.state
            .records
            .lock()
            .unwrap()
            .insert(normalize(name), ips.to_vec());
    }

    /// The TTL of the records answered from now on.
    pub fn set_ttl(&self, secs: u32) {
        self.state.ttl.store(secs, Ordering::SeqCst);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Queries received (any type, answered or not).
    #[must_use]
    pub fn queries(&self) -> u64 {
        self.state.queries.load(Ordering::SeqCst)
    }

    /// `A` queries received.
    #[must_use]
    pub fn a_queries(&self) -> u64 {
        self.state.a_queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve(socket: UdpSocket, state: Arc<State>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        state.queries.fetch_add(1, Ordering::SeqCst);
        let Some(q) = Question::parse(&buf[..n]) else {
            continue;
        };
        if q.qtype == TYPE_A {
            state.a_queries.fetch_add(1, Ordering::SeqCst);
        }
        let reply = match state.mode.load(Ordering::SeqCst) {
            m if m == Mode::Silent as u8 => continue,
            m if m == Mode::ServFail as u8 => q.reply(&buf[..n], RCODE_SERVFAIL, &[], 0),
            _ => {
                let records = state.records.lock().unwrap().get(&q.name).cloned();
                let ttl = state.ttl.load(Ordering::SeqCst);
                match records {
                    None => q.reply(&buf[..n], RCODE_NXDOMAIN, &[], 0),
                    Some(ips) if q.qtype == TYPE_A => q.reply(&buf[..n], 0, &ips, ttl),
                    Some(_) => q.reply(&buf[..n], 0, &[], 0),
                }
            }
        };
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// The first question of a query: its name (lower case, no trailing dot), type, and where the
/// question section ends.
struct Question {
    name: String,
    qtype: u16,
    end: usize,
}

impl Question {
    fn parse(msg: &[u8]) -> Option<Self> {
        if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
            return None;
        }
        let mut labels = Vec::new();
        let mut i = 12;
        loop {
            let len = usize::from(*msg.get(i)?);
            i += 1;
            if len == 0 {
                break;
            }
            // Compression pointers never appear in a query's first name.
            if len > 63 {
                return None;
            }
            labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).to_ascii_lowercase());
            i += len;
        }
        let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
        msg.get(i + 3)?;
        Some(Self {
            name: labels.join("."),
            qtype,
            end: i + 4,
        })
    }

    /// The answer to `query`: same id and question, authoritative, `rcode`, one `A` record per
    /// address (name as a pointer to the question's, offset 12).
    fn reply(&self, query: &[u8], rcode: u16, ips: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
        let flags_in = u16::from_be_bytes([query[2], query[3]]);
        // QR, the query's opcode and RD, AA, and the rcode.
        let flags = 0x8000 | (flags_in & 0x7800) | 0x0400 | (flags_in & 0x0100) | rcode;
        let mut out = Vec::with_capacity(self.end + ips.len() * 16);
        out.extend_from_slice(&query[0..2]);
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&u16::try_from(ips.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&query[12..self.end]);
        for ip in ips {
            out.extend_from_slice(&[0xC0, 12]);
            out.extend_from_slice(&TYPE_A.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        out
    }
}
