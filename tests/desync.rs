//! The desync corpus (`tests/desync/corpus.txt`) as tests. Every case is checked against the
//! classifier as the proxy runs it (the stream tracker over the case's bytes, whole, split at
//! every point, and with a second request behind it), then replayed over TCP against a proxy in
//! each mode of `server.desync_mitigation`: the answer (the cell's 200, or the proxy's own
//! 400/414/431 in JSON), whether the connection closes, whether the request reached the cell,
//! and the counters. A request smuggled behind each case that is closed after or refused must
//! never be answered nor reach the cell; after an ambiguous request, the upstream connection
//! is not reused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "desync/corpus.rs"]
mod corpus;
#[path = "desync/wire.rs"]
mod wire;

use std::sync::Arc;
use std::time::Duration;

use cellgate::desync::tracker::{self, Followed, Stop};
use cellgate::desync::{Mode, Reason, head};
use common::cells::{eventually, urls, within};
use common::limits::{metrics, sum};
use common::upstream::Upstream;
use common::{Harness, base_config, registry};
use corpus::{Case, Corpus, MODES};
use wire::{After, Conn, lossy};

const HOST: &str = "acme.app.test";
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: acme.app.test\r\n\r\n";
const NEXT: &str = "GET /next HTTP/1.1\r\nHost: acme.app.test\r\n\r\n";
const DESYNC_TOTAL: &str = "cellgate_desync_total";
const REJECTED_TOTAL: &str = "cellgate_requests_rejected_total";
const UPSTREAM_ERRORS_TOTAL: &str = "cellgate_upstream_errors_total";

fn mode(name: &str) -> Mode {
    Mode::parse(name).unwrap_or_else(|| panic!("no mode {name}"))
}

fn limits(c: &Corpus) -> head::Limits {
    head::Limits {
        max_head: c.limits.max_header_bytes,
        max_headers: c.limits.max_headers,
        max_uri: c.limits.max_uri_bytes,
    }
}

/// The reason a label names.
fn reason(label: &str) -> Reason {
    Reason::ALL
        .into_iter()
        .find(|r| r.label() == label)
        .unwrap_or_else(|| panic!("no reason is labelled {label}"))
}

/// Feeds `chunks` in turn to a fresh tracker, buffered as the guard buffers them.
fn track(mode: Mode, limits: head::Limits, chunks: &[&[u8]]) -> Followed {
    tracker::follow(mode, limits, chunks.iter().copied())
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// One case in one mode against the tracker.
fn classify(case: &Case, mode_name: &str, limits: head::Limits) -> Result<(), String> {
    let (v, m, bytes) = (case.verdict(), mode(mode_name), &case.bytes[..]);
    let action = v.action(mode_name);
    let bad_chunk = v.reason.as_deref() == Some("bad_chunk");
    let whole = track(m, limits, &[bytes]);
    match &v.reason {
        None => check(whole.decisions.is_empty(), || {
            format!("compliant, but decided {:?}", whole.decisions)
        })?,
        Some(want) => {
            let [d] = whole.decisions[..] else {
                return Err(format!("want one decision, got {:?}", whole.decisions));
            };
            let got = (d.reason.label(), d.reason.class().label(), d.action.label());
            check(got == (want.as_str(), v.class.as_str(), action), || {
                format!("want {want} {} {action}, got {got:?}", v.class)
            })?;
        }
    }
    let len = bytes.len();
    let stopped = match (action, &v.reason) {
        ("refuse", Some(_)) if bad_chunk => {
            whole.stop == Some(Stop::Break(Reason::BadChunk)) && whole.passed < len
        }
        ("refuse", Some(r)) => whole.stop == Some(Stop::Refuse(reason(r))) && whole.passed < len,
        // Closing: the body was followed to its end, and nothing after it will be read.
        ("close", _) => whole.stop.is_none() && whole.passed == len && !whole.at_head,
        // In monitor a broken chunked body turns the tracker off: hyper's decoder decides.
        _ => whole.stop.is_none() && whole.passed == len && (whole.at_head || bad_chunk),
    };
    check(stopped, || {
        format!("{action}, but the tracker ended as {whole:?}")
    })?;
    for i in 1..len {
        let split = track(m, limits, &[&bytes[..i], &bytes[i..]]);
        check(split == whole, || {
            format!("split at byte {i}: {split:?}, whole: {whole:?}")
        })?;
    }
    let mut more = bytes.to_vec();
    more.extend_from_slice(SMUGGLED.as_bytes());
    let run = track(m, limits, &[&more]);
    let contained = match action {
        "close" => run.stop == Some(Stop::Cut) && run.passed == len,
        "refuse" => run.passed < len,
        // Forwarded: the second request is a compliant head of its own.
        _ => run.stop.is_none() && run.decisions == whole.decisions,
    };
    check(contained, || {
        format!("{action}, but with a request behind it the tracker ended as {run:?}")
    })
}

#[test]
fn every_case_gets_its_verdict_from_the_classifier() {
    let corpus = corpus::load(HOST);
    let limits = limits(&corpus);
    let mut failures = Vec::new();
    for case in &corpus.cases {
        for m in MODES {
            if let Err(e) = classify(case, m, limits) {
                failures.push(format!("{} [{m}]: {e}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures over {} cases:\n{}",
        failures.len(),
        corpus.cases.len(),
        failures.join("\n")
    );
}

/// Every reason the classifier can give has a case (a new reason needs one), and every known
/// disagreement with the spec is listed (they are reported, never silent).
#[test]
fn every_reason_has_a_case() {
    let corpus = corpus::load(HOST);
    for r in Reason::ALL {
        assert!(
            corpus
                .cases
                .iter()
                .any(|c| c.expect.reason.as_deref() == Some(r.label())),
            "no case expects {}",
            r.label()
        );
    }
    for c in corpus.cases.iter().filter(|c| c.known.is_some()) {
        eprintln!(
            "known disagreement: {}: spec {:?}, code {:?}",
            c.name, c.expect, c.known
        );
    }
}

/// A proxy in `mode` (one worker) in front of one upstream holding tenant `acme`, with the
/// corpus's limits. Underscored names are allowed: that rule is the hygiene stage's (see
/// tests/ingress.rs), and here only the desync guard's decisions are replayed.
async fn proxy(mode: &str, l: corpus::Limits) -> (Harness, Arc<Upstream>) {
    let up = Upstream::start("a", "a-1").await;
    let server = format!(
        "desync_mitigation = \"{mode}\"\nheaders_with_underscores = \"allow\"\n\
         max_header_bytes = {}\nmax_headers = {}\nmax_uri_bytes = {}\n",
        l.max_header_bytes, l.max_headers, l.max_uri_bytes
    );
    let config = base_config("")
        .replace("workers = 2", "workers = 1")
        .replace(
            "shutdown_grace = \"5s\"",
            &format!("shutdown_grace = \"5s\"\n{server}"),
        );
    let cells = vec![("a".to_owned(), urls(&[&up]))];
    let text = registry(&cells, &[("acme", "a", "ACTIVE")]);
    (Harness::start_raw(&config, &text, Vec::new()).await, up)
}

/// The status a refusal for `reason` carries (from the spec: the limits get their own).
fn refusal_status(reason: &str) -> u16 {
    match reason {
        "header_too_large" | "too_many_headers" => 431,
        "uri_too_long" => 414,
        _ => 400,
    }
}

/// The JSON error body of an answer the proxy wrote: its code, and the request id that
/// `x-request-id` carries.
fn error_body(a: &wire::Answer, code: &str) -> Result<(), String> {
    let id = a.header("x-request-id").unwrap_or_default();
    check(!id.is_empty(), || {
        format!("no x-request-id: {:?}", a.headers)
    })?;
    let body: serde_json::Value = serde_json::from_slice(&a.body)
        .map_err(|e| format!("not JSON ({e}): {}", lossy(&a.body)))?;
    check(body["error"] == code && body["request_id"] == id, || {
        format!("want error {code} and request_id {id}: {body}")
    })
}

/// Checks a refusal written by the proxy: status, `connection: close`, and (but to HEAD) the
/// JSON body naming the code and request id.
fn refusal(a: &wire::Answer, label: &str, head: bool) -> Result<(), String> {
    let want = refusal_status(label);
    check(a.status == want, || {
        format!("want {want}, got {}: {}", a.status, lossy(&a.body))
    })?;
    check(a.closes(), || {
        format!("no connection: close: {:?}", a.headers)
    })?;
    if head {
        return check(
            a.body.is_empty() && a.header("x-request-id").is_some(),
            || format!("a refusal to HEAD: {a:?}"),
        );
    }
    error_body(a, reason(label).code())
}

/// The answer to a request whose chunked body broke mid-way.
fn broken_body(a: &wire::Answer) -> Result<(), String> {
    let (status, code) = (400, "invalid_framing");
    check(a.status == status, || {
        format!("a broken body got {}: {}", a.status, lossy(&a.body))
    })?;
    error_body(a, code)
}

/// The cell's 200: its echo (no body for HEAD).
fn from_cell(a: &wire::Answer, head: bool) -> Result<(), String> {
    let echo = serde_json::from_slice::<serde_json::Value>(&a.body).ok();
    let echoed = echo.is_some_and(|e| e["target"] == "a-1");
    check(
        a.status == 200 && (echoed || (head && a.body.is_empty())),
        || format!("want the cell's 200, got {}: {}", a.status, lossy(&a.body)),
    )
}

/// One case in one mode, over a new connection to the proxy.
async fn replay(h: &Harness, up: &Upstream, case: &Case, mode: &str) -> Result<(), String> {
    let v = case.verdict();
    let action = v.action(mode);
    let bad_chunk = v.reason.as_deref() == Some("bad_chunk");
    let head = case.method() == b"HEAD";
    let bodiless = head;
    let (before, seen) = (metrics(h).await, up.requests());
    let mut c = Conn::open(h.addr).await;
    c.send(&case.bytes).await;
    let a = c
        .answer(bodiless)
        .await?
        .ok_or_else(|| format!("{action}: closed without an answer"))?;
    let cell = |want: u64| {
        let got = up.requests() - seen;
        check(got == want, || {
            format!("the cell saw {got} requests, want {want}")
        })
    };
    // Whether the connection goes on.
    let mut open = false;
    match action {
        // A broken body is the client's fault, never the cell's: 400 whether the guard broke
        // it or (monitoring) hyper's decoder refused it.
        "forward" | "refuse" if bad_chunk && a.status != 200 => broken_body(&a)?,
        "forward" => {
            from_cell(&a, head)?;
            // A request forwarded in monitor despite its findings may still close its
            // connection (RFC 9112 6.1 wants that after Content-Length with
            // Transfer-Encoding); a compliant or acceptable one keeps it open.
            let may_close = !matches!(v.class.as_str(), "compliant" | "acceptable");
            check(may_close || !a.closes(), || {
                format!("forwarded, but closed: {a:?}")
            })?;
            open = !a.closes();
            if open {
                c.send(NEXT.as_bytes()).await;
                let next = c.answer(false).await?;
                check(next.is_some_and(|n| n.status == 200), || {
                    "the next request on the connection was not answered".to_owned()
                })?;
            }
            cell(1 + u64::from(open))?;
        }
        "close" => {
            from_cell(&a, head)?;
            check(a.closes(), || format!("want close, got {:?}", a.headers))?;
            cell(1)?;
        }
        _ => {
            refusal(&a, v.reason.as_deref().unwrap_or_default(), head)?;
            cell(0)?;
        }
    }
    if !open {
        let after = c.after().await;
        check(after == After::Closed, || {
            format!("{action}: the connection was not closed: {after:?}")
        })?;
    }
    let now = metrics(h).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| sum(&now, name, labels) - sum(&before, name, labels);
    // Nothing here is the cell's fault, a broken body included.
    let errors = delta(UPSTREAM_ERRORS_TOTAL, &[]);
    check(errors == 0.0, || {
        format!("{UPSTREAM_ERRORS_TOTAL} moved by {errors}")
    })?;
    let Some(r) = &v.reason else {
        return check(delta(DESYNC_TOTAL, &[]) == 0.0, || {
            "a compliant request was counted".to_owned()
        });
    };
    let labels = [
        ("class", v.class.as_str()),
        ("reason", r),
        ("action", action),
    ];
    let moved = delta(DESYNC_TOTAL, &labels);
    check(moved == 1.0, || {
        format!("{DESYNC_TOTAL}{labels:?} moved by {moved}")
    })?;
    // A refusal is counted; so is a broken body hyper's decoder refused while monitoring.
    let rejected = if action == "refuse" || (bad_chunk && a.status != 200) {
        1.0
    } else {
        0.0
    };
    let moved = delta(REJECTED_TOTAL, &[("reason", r)]);
    check(moved == rejected, || {
        format!("{REJECTED_TOTAL}{{reason={r}}} moved by {moved}, want {rejected}")
    })
}

/// One case with a complete second request behind it: only the case's own answer comes back,
/// the connection closes, and the second request never reaches the cell.
async fn smuggle(h: &Harness, up: &Upstream, case: &Case) -> Result<(), String> {
    let smuggled = || up.paths().iter().filter(|p| *p == "/smuggled").count();
    let before = smuggled();
    let mut bytes = case.bytes.clone();
    bytes.extend_from_slice(SMUGGLED.as_bytes());
    let mut c = Conn::open(h.addr).await;
    c.send(&bytes).await;
    let all = c.rest().await?;
    let answers = all
        .windows(9)
        .filter(|w| w.starts_with(b"HTTP/1.1 "))
        .count();
    check(answers == 1, || {
        format!("{answers} answers came back: {}", lossy(&all))
    })?;
    check(smuggled() == before, || {
        "the smuggled request reached the cell".to_owned()
    })
}

async fn replay_mode(mode: &'static str) {
    within(async {
        let corpus = corpus::load(HOST);
        let (h, up) = proxy(mode, corpus.limits).await;
        let mut failures = Vec::new();
        for case in &corpus.cases {
            if let Err(e) = replay(&h, &up, case, mode).await {
                failures.push(format!("{}: {e}", case.name));
            }
        }
        let guarded = corpus
            .cases
            .iter()
            .filter(|c| c.verdict().action(mode) != "forward");
        let mut smuggled = 0;
        for case in guarded {
            smuggled += 1;
            if let Err(e) = smuggle(&h, &up, case).await {
                failures.push(format!("{} + /smuggled: {e}", case.name));
            }
        }
        assert!(smuggled > 0, "no case in {mode} is closed or refused");
        assert!(
            failures.is_empty(),
            "{mode}: {} failures over {} cases:\n{}",
            failures.len(),
            corpus.cases.len(),
            failures.join("\n")
        );
        h.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn replay_in_monitor_mode() {
    replay_mode("monitor").await;
}

#[tokio::test]
async fn replay_in_defensive_mode() {
    replay_mode("defensive").await;
}

#[tokio::test]
async fn replay_in_strictest_mode() {
    replay_mode("strictest").await;
}

/// Sends `bytes` on a new connection and reads one answer.
async fn exchange(h: &Harness, bytes: &[u8]) -> wire::Answer {
    let mut c = Conn::open(h.addr).await;
    c.send(bytes).await;
    c.answer(false).await.unwrap().expect("no answer")
}

#[tokio::test]
async fn after_an_ambiguous_request_the_upstream_connection_is_not_reused() {
    within(async {
        let corpus = corpus::load(HOST);
        let (h, up) = proxy("defensive", corpus.limits).await;
        let get = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        assert_eq!(exchange(&h, get.as_bytes()).await.status, 200);
        assert_eq!(up.accepted(), 1);
        // The control: a compliant request's upstream connection goes back to the pool.
        assert_eq!(exchange(&h, get.as_bytes()).await.status, 200);
        assert_eq!(
            up.accepted(),
            1,
            "a compliant request did not reuse the connection"
        );
        let ambiguous = corpus
            .cases
            .iter()
            .find(|c| c.name == "cl-then-te")
            .expect("the corpus has cl-then-te");
        let a = exchange(&h, &ambiguous.bytes).await;
        assert!(a.status == 200 && a.closes(), "{a:?}");
        eventually(
            Duration::from_secs(2),
            "the upstream connection closes",
            || async { up.open_connections() == 0 },
        )
        .await;
        assert_eq!(exchange(&h, get.as_bytes()).await.status, 200);
        assert_eq!(
            up.accepted(),
            2,
            "the next request did not open a new connection"
        );
        h.shutdown().await;
    })
    .await;
}
