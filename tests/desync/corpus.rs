//! The corpus file (`tests/desync/corpus.txt`, whose header documents the format) read into
//! cases: raw request bytes and the verdict each mode gives them.

use std::fmt::Write as _;

/// The three modes of `server.desync_mitigation`, in the order the corpus lists them.
pub const MODES: [&str; 3] = ["monitor", "defensive", "strictest"];

/// The verdict on one request: its class, its reason label (`None`: compliant) and the action
/// in each mode (`forward`, `close` or `refuse`, in [`MODES`] order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub class: String,
    pub reason: Option<String>,
    pub actions: [String; 3],
}

impl Verdict {
    /// The action in `mode`.
    pub fn action(&self, mode: &str) -> &str {
        let i = MODES
            .iter()
            .position(|m| *m == mode)
            .unwrap_or_else(|| panic!("no mode {mode}"));
        &self.actions[i]
    }
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The request bytes, placeholders expanded.
    pub bytes: Vec<u8>,
    /// The spec's verdict.
    pub expect: Verdict,
    /// The code's verdict where it disagrees with the spec (recorded, reported).
    pub known: Option<Verdict>,
}

impl Case {
    /// What the code is held to: the known disagreement if there is one, else the spec.
    pub fn verdict(&self) -> &Verdict {
        self.known.as_ref().unwrap_or(&self.expect)
    }

    /// The request's method (the bytes up to the first space, past leading empty lines).
    pub fn method(&self) -> &[u8] {
        let start = self
            .bytes
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .unwrap_or(0);
        let rest = &self.bytes[start..];
        &rest[..rest.iter().position(|&b| b == b' ').unwrap_or(rest.len())]
    }
}

/// The proxy's limits every case is judged under (`server.max_header_bytes`, `max_headers`,
/// `max_uri_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Corpus {
    pub limits: Limits,
    pub cases: Vec<Case>,
}

const CLASSES: [&str; 4] = ["compliant", "acceptable", "ambiguous", "severe"];
const ACTIONS: [&str; 3] = ["forward", "close", "refuse"];

/// Reads the corpus; `host` replaces `{host}`. Panics naming the line on any error.
pub fn load(host: &str) -> Corpus {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/desync/corpus.txt");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(&text, host).unwrap_or_else(|e| panic!("{path}:{e}"))
}

/// A case being read: what it has so far.
struct Open {
    name: String,
    line: usize,
    bytes: Vec<u8>,
    expect: Option<(String, Option<String>)>,
    actions: Option<[String; 3]>,
    known: Option<Verdict>,
}

impl Open {
    fn close(self) -> Result<Case, String> {
        let at = format!("{} (case {})", self.line, self.name);
        let (class, reason) = self.expect.ok_or(format!("{at}: no `expect` line"))?;
        let actions = self.actions.ok_or(format!("{at}: no `action` line"))?;
        if self.bytes.is_empty() {
            return Err(format!("{at}: no `>` lines"));
        }
        Ok(Case {
            name: self.name,
            bytes: self.bytes,
            expect: Verdict {
                class,
                reason,
                actions,
            },
            known: self.known,
        })
    }
}

fn parse(text: &str, host: &str) -> Result<Corpus, String> {
    let mut limits = None;
    let mut cases: Vec<Case> = Vec::new();
    let mut open: Option<Open> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |m: &str| format!("{n}: {m}: {line:?}");
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(raw) = line.strip_prefix("> ") {
            let case = open.as_mut().ok_or_else(|| err("bytes outside a case"))?;
            if raw.ends_with([' ', '\t']) {
                return Err(err("trailing whitespace (write \\x20 or \\t)"));
            }
            unescape(raw, host, &mut case.bytes).map_err(|e| err(&e))?;
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let args: Vec<&str> = rest.split_whitespace().collect();
        match word {
            "limits" => {
                let v: Result<Vec<usize>, _> = args.iter().map(|a| a.parse()).collect();
                let Ok([max_header_bytes, max_headers, max_uri_bytes]) = v.as_deref() else {
                    return Err(err("limits takes three numbers"));
                };
                limits = Some(Limits {
                    max_header_bytes: *max_header_bytes,
                    max_headers: *max_headers,
                    max_uri_bytes: *max_uri_bytes,
                });
            }
            "case" => {
                let [name] = args[..] else {
                    return Err(err("case takes one name"));
                };
                if let Some(done) = open.take() {
                    cases.push(done.close()?);
                }
                if cases.iter().any(|c| c.name == name) {
                    return Err(err("a second case of this name"));
                }
                open = Some(Open {
                    name: name.to_owned(),
                    line: n,
                    bytes: Vec::new(),
                    expect: None,
                    actions: None,
                    known: None,
                });
            }
            "expect" | "action" | "known" => {
                let case = open.as_mut().ok_or_else(|| err("outside a case"))?;
                match word {
                    "expect" => case.expect = Some(finding(&args).map_err(|e| err(&e))?),
                    "action" => case.actions = Some(actions(&args).map_err(|e| err(&e))?),
                    _ => {
                        let split = args.iter().position(|a| a.contains('=')).unwrap_or(0);
                        let (class, reason) = finding(&args[..split]).map_err(|e| err(&e))?;
                        let actions = actions(&args[split..]).map_err(|e| err(&e))?;
                        case.known = Some(Verdict {
                            class,
                            reason,
                            actions,
                        });
                    }
                }
            }
            _ => return Err(err("unknown directive")),
        }
    }
    if let Some(done) = open.take() {
        cases.push(done.close()?);
    }
    let limits = limits.ok_or("0: no `limits` line")?;
    Ok(Corpus { limits, cases })
}

/// `<class> [<reason>]`: a reason for every class but compliant.
fn finding(args: &[&str]) -> Result<(String, Option<String>), String> {
    match args {
        ["compliant"] => Ok(("compliant".to_owned(), None)),
        [class, reason] if CLASSES[1..].contains(class) => {
            Ok(((*class).to_owned(), Some((*reason).to_owned())))
        }
        _ => Err("want `compliant` or `<class> <reason>`".to_owned()),
    }
}

/// `monitor=<a> defensive=<a> strictest=<a>`, in that order.
fn actions(args: &[&str]) -> Result<[String; 3], String> {
    let [m, d, s] = args else {
        return Err("want monitor=, defensive= and strictest=".to_owned());
    };
    let mut out: [String; 3] = Default::default();
    for (i, (arg, mode)) in [m, d, s].iter().zip(MODES).enumerate() {
        let a = arg
            .strip_prefix(mode)
            .and_then(|r| r.strip_prefix('='))
            .filter(|a| ACTIONS.contains(a))
            .ok_or(format!("want {mode}=forward|close|refuse, got {arg}"))?;
        out[i] = a.to_owned();
    }
    Ok(out)
}

/// Appends the bytes `raw` stands for to `out`.
fn unescape(raw: &str, host: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let (byte, len) = match b.get(i + 1) {
                    Some(b'r') => (b'\r', 2),
                    Some(b'n') => (b'\n', 2),
                    Some(b't') => (b'\t', 2),
                    Some(b'0') => (0, 2),
                    Some(b'\\') => (b'\\', 2),
                    Some(b'x') => {
                        let hex = raw.get(i + 2..i + 4).ok_or("\\x needs two hex digits")?;
                        let v = u8::from_str_radix(hex, 16).map_err(|_| format!("\\x{hex}"))?;
                        (v, 4)
                    }
                    _ => return Err(format!("unknown escape at byte {i}")),
                };
                out.push(byte);
                i += len;
            }
            b'{' => {
                let end = raw[i..].find('}').ok_or("an unclosed {")? + i;
                placeholder(&raw[i + 1..end], host, out)?;
                i = end + 1;
            }
            0x20..=0x7E => {
                out.push(b[i]);
                i += 1;
            }
            _ => return Err(format!("byte {i} must be escaped")),
        }
    }
    Ok(())
}

fn placeholder(p: &str, host: &str, out: &mut Vec<u8>) -> Result<(), String> {
    if p == "host" {
        out.extend_from_slice(host.as_bytes());
        return Ok(());
    }
    let (what, n) = p.split_once('*').ok_or(format!("unknown {{{p}}}"))?;
    let n: usize = n.parse().map_err(|_| format!("a count in {{{p}}}"))?;
    match what {
        "a" => out.resize(out.len() + n, b'a'),
        "fields" => {
            let mut s = String::new();
            for i in 1..=n {
                let _ = write!(s, "X-Fill-{i}: {i}\r\n");
            }
            out.extend_from_slice(s.as_bytes());
        }
        _ => return Err(format!("unknown {{{p}}}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format rules hold: escapes, placeholders, and the errors a reader would want.
    #[test]
    fn the_format_reads_as_documented() {
        let text = "limits 8192 16 512\ncase a\nexpect ambiguous x_y\n\
                    action monitor=forward defensive=close strictest=refuse\n\
                    > GET /{a*3} HTTP/1.1\\r\\n\n> Host: {host}\\x20\\t\\0\\\\\\r\\n\n\
                    > {fields*2}\\n\n";
        let c = parse(text, "h.test").unwrap();
        assert_eq!(c.limits.max_uri_bytes, 512);
        let case = &c.cases[0];
        assert_eq!(
            case.bytes,
            b"GET /aaa HTTP/1.1\r\nHost: h.test \t\0\\\r\nX-Fill-1: 1\r\nX-Fill-2: 2\r\n\n"
        );
        assert_eq!(case.expect.reason.as_deref(), Some("x_y"));
        assert_eq!(case.verdict().action("defensive"), "close");
        assert_eq!(case.method(), b"GET");
        for bad in [
            "limits 1 2 3\ncase a\nexpect compliant\n> GET \n",
            "limits 1 2 3\ncase a\nexpect compliant\n> G\tT\n",
            "limits 1 2 3\ncase a\nexpect compliant\n> \\q\n",
            "limits 1 2 3\ncase a\nexpect compliant\n> {nope}\n",
            "limits 1 2 3\ncase a\nexpect severe\n",
            "limits 1 2 3\ncase a\nexpect compliant\naction monitor=forward\n> x\n",
            "limits 1 2 3\ncase a\nexpect compliant\n\
             action monitor=forward defensive=drop strictest=refuse\n> x\n",
            "case a\nexpect compliant\naction monitor=forward defensive=forward \
             strictest=forward\n> x\n",
        ] {
            assert!(parse(bad, "h").is_err(), "{bad:?} was accepted");
        }
    }
}
