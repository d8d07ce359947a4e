//! The fleet scenario's report for phases 1-5: admitted rates over the windows, the breaker and
//! node-count times from the 50 ms scrapes (each as a range: the last scrape sent before it could
//! show, to the first answer that showed it), every status, the nodes' own counters, the checks.

use std::time::Duration;

use super::counters::{NodeMetrics, PhaseCpu};
use super::load::{Gauges, Hit};
use super::{Args, BREAKER_CLOSED_WITHIN, BREAKER_OPEN_WITHIN, HEARTBEAT, RATE_TOLERANCE, SETTLE};
use crate::common::verdict;

/// What the timeline saw; times are since the load's origin.
pub struct Timeline {
    /// `noisy`'s rate sent to each loaded node.
    pub offered: Vec<f64>,
    /// Before the kill, the outage, the recovery, node-4.
    pub phase_cpu: Vec<PhaseCpu>,
    pub noisy: Vec<Hit>,
    pub quiet: Vec<Hit>,
    /// Per node (node-4 last), every scrape.
    pub gauges: Vec<Vec<Gauges>>,
    pub metrics: Vec<NodeMetrics>,
    /// Per loaded node, % of a core over the load.
    pub cpu: Vec<f64>,
    pub warm: Duration,
    pub killed: Duration,
    pub restarted: Duration,
    pub redis_up: Duration,
    pub spawned: Duration,
    pub ready4: Duration,
    pub len: Duration,
}

fn s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn admitted(hits: &[Hit], from: Duration, to: Duration, node: Option<usize>) -> usize {
    hits.iter()
        .filter(|h| h.at >= from && h.at < to && node.is_none_or(|n| h.node == n))
        .filter(|h| h.status == 200)
        .count()
}

fn rate(hits: &[Hit], from: Duration, to: Duration, node: Option<usize>) -> f64 {
    admitted(hits, from, to, node) as f64 / (to.saturating_sub(from)).as_secs_f64().max(1e-9)
}

fn dev(x: f64, of: f64) -> f64 {
    if of == 0.0 { 0.0 } else { x / of - 1.0 }
}

/// `x` within the tolerance of `of` (exactly 0 when `of` is).
fn near(x: f64, of: f64) -> bool {
    if of == 0.0 {
        x == 0.0
    } else {
        dev(x, of).abs() <= RATE_TOLERANCE
    }
}

/// When node `g` first showed `ok` after `event`: the range from the last scrape sent before
/// (it could not show it yet) to the answer that first showed it; `None` if never.
fn seen_after(
    g: &[Gauges],
    event: Duration,
    ok: impl Fn(&Gauges) -> bool,
) -> Option<(Duration, Duration)> {
    let i = g.iter().position(|x| x.sent >= event && ok(x))?;
    let lo = if i > 0 {
        g[i - 1].sent.saturating_sub(event)
    } else {
        Duration::ZERO
    };
    Some((lo, g[i].got - event))
}

fn range(r: Option<(Duration, Duration)>) -> String {
    r.map_or("never".to_owned(), |(lo, hi)| {
        format!(
            "{:.0}-{:.0} ms",
            lo.as_secs_f64() * 1e3,
            hi.as_secs_f64() * 1e3
        )
    })
}

/// Statuses of `hits` sent in [from, to): (200, 429, other, no answer).
fn tally(hits: &[Hit], from: Duration, to: Duration) -> [usize; 4] {
    let mut t = [0; 4];
    for h in hits.iter().filter(|h| h.at >= from && h.at < to) {
        t[match h.status {
            200 => 0,
            429 => 1,
            0 => 3,
            _ => 2,
        }] += 1;
    }
    t
}

/// Prints phases 1-5 and their checks; true when every check passes.
pub fn timeline(a: &Args, t: Timeline) -> bool {
    let r = a.rate;
    let share = r / 3.0;
    let loaded = 3;
    let names = |i: usize| format!("node-{}", i + 1);
    let mut checks: Vec<(String, bool)> = Vec::new();
    println!(
        "phase 1 warm-up: every node counted 3 live nodes, breaker closed, {} after start-up",
        s(t.warm)
    );

    // Phase 2: accuracy.
    let acc = (SETTLE, SETTLE + a.accuracy);
    let acc_rate = rate(&t.noisy, acc.0, acc.1, None);
    let per: Vec<String> = (0..loaded)
        .map(|i| {
            format!(
                "{} {:.1}/s",
                names(i),
                rate(&t.noisy, acc.0, acc.1, Some(i))
            )
        })
        .collect();
    let [ok200, n429, other, none] = tally(&t.noisy, acc.0, acc.1);
    println!(
        "phase 2 accuracy [{}, {}): {}: {ok200} admitted = {acc_rate:.1}/s fleet-wide ({}), 429 {n429}, \
         other {other}, no answer {none}\n  from the start to the kill: {}",
        s(acc.0),
        s(acc.1),
        super::world::NOISY,
        per.join(", "),
        t.phase_cpu[0]
    );
    let ok = dev(acc_rate, r).abs() <= RATE_TOLERANCE;
    checks.push((
        format!(
            "noisy's fleet-wide admitted rate within {:.0}% of {r}/s over the accuracy window: \
             {acc_rate:.1}/s ({:+.1}%)",
            RATE_TOLERANCE * 100.0,
            dev(acc_rate, r) * 100.0
        ),
        ok,
    ));

    // Phase 3: Redis killed.
    let opened: Vec<_> = (0..loaded)
        .map(|i| seen_after(&t.gauges[i], t.killed, |g| g.breaker == 1.0))
        .collect();
    let reclosed_in_outage: Vec<usize> = (0..loaded)
        .map(|i| {
            let from = opened[i].map_or(t.restarted, |(_, hi)| t.killed + hi);
            t.gauges[i]
                .iter()
                .filter(|g| g.sent > from && g.got < t.restarted && g.breaker == 0.0)
                .count()
        })
        .collect();
    let out = (t.killed + BREAKER_OPEN_WITHIN, t.restarted);
    let out_rates: Vec<f64> = (0..loaded)
        .map(|i| rate(&t.noisy, out.0, out.1, Some(i)))
        .collect();
    let out_total = rate(&t.noisy, out.0, out.1, None);
    // Each node's share, or what it is sent when that is less (a skewed --split).
    let expect: Vec<f64> = t.offered.iter().map(|o| o.min(share)).collect();
    let expect_total: f64 = expect.iter().sum();
    let [o200, o429, oother, onone] = tally(&t.noisy, t.killed, t.restarted);
    let [q200, q429, qother, qnone] = tally(&t.quiet, t.killed, t.restarted);
    println!(
        "phase 3 outage: redis-server SIGKILLed at {}; breaker open (1) after: {}; scrapes showing \
         it closed again before the restart: {}",
        s(t.killed),
        (0..loaded)
            .map(|i| format!("{} {}", names(i), range(opened[i])))
            .collect::<Vec<_>>()
            .join(", "),
        reclosed_in_outage
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("/")
    );
    println!(
        "  admitted on the fallback [{}, {}): {}; fleet {out_total:.1}/s ({:+.1}% of \
         {expect_total:.1}/s); answers while Redis was down: {} 200 {o200}, 429 {o429}, other \
         {oother}, no answer {onone}; quiet 200 {q200}, 429 {q429}, other {qother}, no answer \
         {qnone}\n  {}",
        s(out.0),
        s(out.1),
        (0..loaded)
            .map(|i| format!(
                "{} {:.1}/s ({:+.1}% of {:.1})",
                names(i),
                out_rates[i],
                dev(out_rates[i], expect[i]) * 100.0,
                expect[i]
            ))
            .collect::<Vec<_>>()
            .join(", "),
        dev(out_total, expect_total) * 100.0,
        super::world::NOISY,
        t.phase_cpu[1]
    );
    let ok = opened
        .iter()
        .all(|o| o.is_some_and(|(_, hi)| hi <= BREAKER_OPEN_WITHIN));
    checks.push((
        format!(
            "each node's breaker open within {} of the kill: {}",
            s(BREAKER_OPEN_WITHIN),
            opened
                .iter()
                .map(|o| range(*o))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ok,
    ));
    let ok =
        out_rates.iter().zip(&expect).all(|(x, e)| near(*x, *e)) && near(out_total, expect_total);
    checks.push((
        format!(
            "on the fallback each node admits noisy within {:.0}% of its share ({}), the fleet \
             within {:.0}% of {expect_total:.1}/s: {} / {out_total:.1}/s",
            RATE_TOLERANCE * 100.0,
            expect
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            RATE_TOLERANCE * 100.0,
            out_rates
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ok,
    ));

    // Phase 4: Redis back.
    let closed: Vec<_> = (0..loaded)
        .map(|i| seen_after(&t.gauges[i], t.restarted, |g| g.breaker == 0.0))
        .collect();
    let all_closed = closed
        .iter()
        .map(|c| c.map(|(_, hi)| t.restarted + hi))
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
    let rec_from = all_closed.unwrap_or(t.restarted + BREAKER_CLOSED_WITHIN);
    let rec = (rec_from, t.spawned);
    let rec_rate = rate(&t.noisy, rec.0, rec.1, None);
    let counted: Vec<String> = (0..loaded)
        .map(|i| {
            let seen: Vec<f64> = t.gauges[i]
                .iter()
                .filter(|g| g.sent >= t.restarted && g.got < t.spawned)
                .map(|g| g.nodes)
                .collect();
            let lo = seen.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = seen.iter().copied().fold(0.0, f64::max);
            format!("{lo}..{hi}")
        })
        .collect();
    println!(
        "phase 4 recovery: redis-server restarted on the same port at {} (accepting after {:.0} ms); \
         breaker closed (0) after: {}; nodes counted after the restart: {}",
        s(t.restarted),
        t.redis_up.as_secs_f64() * 1e3,
        (0..loaded)
            .map(|i| format!("{} {}", names(i), range(closed[i])))
            .collect::<Vec<_>>()
            .join(", "),
        counted.join(", ")
    );
    // After a node's breaker closed, scrapes showing it open again (a Redis round trip failed).
    let reopened: Vec<String> = (0..loaded)
        .map(|i| {
            let from = closed[i].map_or(t.len, |(_, hi)| t.restarted + hi);
            let n = t.gauges[i]
                .iter()
                .filter(|g| g.sent > from && g.breaker != 0.0)
                .count();
            n.to_string()
        })
        .collect();
    println!(
        "  admitted [{}, {}) (from every breaker closed to node-4): {} = {rec_rate:.1}/s fleet-wide \
         ({}); scrapes showing a breaker not closed after it had closed, to the end: {}\n  {}",
        s(rec.0),
        s(rec.1),
        admitted(&t.noisy, rec.0, rec.1, None),
        (0..loaded)
            .map(|i| format!(
                "{} {:.1}/s",
                names(i),
                rate(&t.noisy, rec.0, rec.1, Some(i))
            ))
            .collect::<Vec<_>>()
            .join(", "),
        reopened.join("/"),
        t.phase_cpu[2]
    );
    let ok = closed
        .iter()
        .all(|c| c.is_some_and(|(_, hi)| hi <= BREAKER_CLOSED_WITHIN));
    checks.push((
        format!(
            "each node's breaker closed within {} of the restart: {}",
            s(BREAKER_CLOSED_WITHIN),
            closed
                .iter()
                .map(|c| range(*c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ok,
    ));
    let ok = dev(rec_rate, r).abs() <= RATE_TOLERANCE;
    checks.push((
        format!(
            "noisy's fleet-wide admitted rate within {:.0}% of {r}/s after the recovery: \
             {rec_rate:.1}/s ({:+.1}%) over {}",
            RATE_TOLERANCE * 100.0,
            dev(rec_rate, r) * 100.0,
            s(rec.1.saturating_sub(rec.0))
        ),
        ok,
    ));

    // Phase 5: node-4.
    let four: Vec<_> = t
        .gauges
        .iter()
        .map(|g| seen_after(g, t.spawned, |x| x.nodes == 4.0))
        .collect();
    let all4 = four
        .iter()
        .map(|c| c.map(|(_, hi)| t.spawned + hi))
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
    let n4_from = all4.unwrap_or(t.spawned);
    let n4_rate = rate(&t.noisy, n4_from, t.len, None);
    println!(
        "phase 5 node-4: started at {} (ready after {:.0} ms); cellgate_fleet_nodes = 4 after: {}; \
         noisy admitted [{}, {}) with 4 nodes (node-4 idle): {n4_rate:.1}/s ({})\n  {} \
         (other: node-4 and the rest)",
        s(t.spawned),
        t.ready4.as_secs_f64() * 1e3,
        (0..t.gauges.len())
            .map(|i| format!("{} {}", names(i), range(four[i])))
            .collect::<Vec<_>>()
            .join(", "),
        s(n4_from),
        s(t.len),
        (0..loaded)
            .map(|i| format!(
                "{} {:.1}/s",
                names(i),
                rate(&t.noisy, n4_from, t.len, Some(i))
            ))
            .collect::<Vec<_>>()
            .join(", "),
        t.phase_cpu[3]
    );
    let ok = four
        .iter()
        .all(|c| c.is_some_and(|(_, hi)| hi <= HEARTBEAT * 2));
    checks.push((
        format!(
            "every node counts 4 nodes within 2 heartbeats ({}) of node-4's start: {}",
            s(HEARTBEAT * 2),
            four.iter()
                .map(|c| range(*c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ok,
    ));

    // The whole run.
    let secs = t.len.as_secs_f64().ceil() as usize;
    let mut per_sec = vec![0usize; secs];
    for h in t.noisy.iter().filter(|h| h.status == 200) {
        if let Some(b) = per_sec.get_mut(h.at.as_secs() as usize) {
            *b += 1;
        }
    }
    println!(
        "noisy admitted each second, fleet-wide (kill {:.1} s, restart {:.1} s, node-4 {:.1} s): {}",
        t.killed.as_secs_f64(),
        t.restarted.as_secs_f64(),
        t.spawned.as_secs_f64(),
        per_sec
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut refused_match = true;
    for (i, m) in t.metrics.iter().enumerate() {
        let sent429 = t
            .noisy
            .iter()
            .chain(&t.quiet)
            .filter(|h| h.node == i && h.status == 429)
            .count();
        refused_match &= sent429 as f64 == m.rejections;
        println!(
            "{}: {}; 429 answered {sent429}, cellgate_ratelimit_rejections_total {:.0}, \
             cellgate_fleet_refused_total {:.0}; {}",
            names(i),
            t.cpu.get(i).map_or("no load".to_owned(), |c| format!(
                "cpu {c:.1}% of a core over the load"
            )),
            m.rejections.abs(),
            m.fleet_refused.abs(),
            m.sync_line()
        );
    }
    let [a200, a429, aother, anone] = tally(&t.noisy, Duration::ZERO, t.len);
    let ok = aother == 0 && anone == 0;
    checks.push((
        format!(
            "noisy answered only 200 or 429, no transport error (whole run): 200 {a200}, 429 \
             {a429}, other {aother}, no answer {anone}"
        ),
        ok,
    ));
    let [b200, b429, bother, bnone] = tally(&t.quiet, Duration::ZERO, t.len);
    let ok = b429 == 0 && bother == 0 && bnone == 0;
    checks.push((
        format!(
            "quiet never refused or failed (whole run): 200 {b200}, 429 {b429}, other {bother}, \
             no answer {bnone}"
        ),
        ok,
    ));
    checks.push((
        "each node's cellgate_ratelimit_rejections_total equals the 429s it answered".to_owned(),
        refused_match,
    ));
    let mut pass = true;
    for (c, ok) in checks {
        pass &= ok;
        println!("check {c} -> {}", verdict(ok));
    }
    pass
}
